// Alibaba Cloud request signature V3, `ACS3-HMAC-SHA256` (used for every ACR
// OpenAPI call, RPC `/` and ROA `/tokens` alike).
//
// Owns: the pure canonicalisation and signing steps, spelled as in
// darabonba-openapi-util GetAuthorization:
//   CanonicalRequest = METHOD \n CanonicalURI \n CanonicalQueryString \n
//                      CanonicalHeaders \n SignedHeaders \n hex(SHA256(body))
//   StringToSign     = "ACS3-HMAC-SHA256" \n hex(SHA256(CanonicalRequest))
//   Signature        = hex(HMAC-SHA256(AccessKeySecret, StringToSign))   (raw secret, no '&')
// Spec: https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature
// No state, no thread affinity.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace acp::tokens {

using string_pairs = std::vector<std::pair<std::string, std::string>>;

struct v3_request {
    std::string method = "POST";
    std::string path = "/";  // already URI-encoded; "" means "/"
    string_pairs query;      // raw (unencoded) names and values
    string_pairs headers;    // any case; host, content-type and x-acs-* are signed
    std::string body;
};

struct v3_signature {
    std::string canonical_request;
    std::string string_to_sign;
    std::string signed_headers;  // "host;x-acs-action;..."
    std::string signature;       // lower-case hex
    std::string authorization;   // the Authorization header value
};

inline constexpr std::string_view acs3_algorithm = "ACS3-HMAC-SHA256";

/// `name=value` pairs sorted by raw name (byte order), both sides RFC 3986-encoded, '&'-joined.
[[nodiscard]] std::string v3_canonical_query(const string_pairs& query);

/// Signs `req` as it will be sent. The caller must already have put the
/// x-acs-* headers (including x-acs-content-sha256) and host into `req.headers`.
[[nodiscard]] v3_signature sign_v3(const v3_request& req, std::string_view access_key_id,
                                   std::string_view access_key_secret);

}  // namespace acp::tokens
