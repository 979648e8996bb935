// Alibaba Cloud RPC signature V1 (`SignatureMethod=HMAC-SHA1`,
// `SignatureVersion=1.0`), used only for STS `AssumeRole`, byte for byte as
// aliyun/credentials-go providers/ram_role_arn.go builds it:
//   CanonicalizedQuery = sorted "enc(k)=enc(v)" of query + form-body params (no Signature), '&'-joined
//   StringToSign       = METHOD "&" enc("/") "&" enc(CanonicalizedQuery)
//   Signature          = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))
// where enc is RFC 3986 percent-encoding.
// Spec: https://www.alibabacloud.com/help/en/sdk/product-overview/rpc-mechanism
// No state, no thread affinity.
#pragma once

#include "tokens/signature_v3.hpp"

#include <string>
#include <string_view>

namespace acp::tokens {

/// Sorted, RFC 3986-encoded `k=v` pairs joined with '&' (also the form-body encoding).
[[nodiscard]] std::string v1_canonicalized_query(const string_pairs& params);

[[nodiscard]] std::string v1_string_to_sign(std::string_view method, const string_pairs& params);

/// base64(HMAC-SHA1(secret + "&", v1_string_to_sign(method, params))).
[[nodiscard]] std::string sign_v1(std::string_view method, const string_pairs& params,
                                  std::string_view access_key_secret);

}  // namespace acp::tokens
