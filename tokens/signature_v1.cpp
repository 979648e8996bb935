#include "tokens/signature_v1.hpp"

#include "tokens/signing_primitives.hpp"

#include <algorithm>

namespace acp::tokens {

std::string v1_canonicalized_query(const string_pairs& params) {
    // Same canonical form as V3's query: sort by encoded name, encode both sides.
    return v3_canonical_query(params);
}

std::string v1_string_to_sign(std::string_view method, const string_pairs& params) {
    return std::string(method) + "&" + percent_encode("/") + "&" + percent_encode(v1_canonicalized_query(params));
}

std::string sign_v1(std::string_view method, const string_pairs& params, std::string_view access_key_secret) {
    const std::string key = std::string(access_key_secret) + "&";
    return to_base64(hmac_sha1(key, v1_string_to_sign(method, params)));
}

}  // namespace acp::tokens
