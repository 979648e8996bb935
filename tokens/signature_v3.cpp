#include "tokens/signature_v3.hpp"

#include "tokens/signing_primitives.hpp"

#include <algorithm>
#include <cctype>
#include <map>

namespace acp::tokens {

namespace {

std::string to_lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string trim(std::string_view s) {
    const auto not_space = [](unsigned char c) {
        return c != ' ' && c != '\t';
    };
    auto b = std::find_if(s.begin(), s.end(), not_space);
    auto e = std::find_if(s.rbegin(), s.rend(), not_space).base();
    return b < e ? std::string(b, e) : std::string();
}

bool is_signed_header(std::string_view lower_name) {
    return lower_name == "host" || lower_name == "content-type" || lower_name.substr(0, 6) == "x-acs-";
}

}  // namespace

std::string v3_canonical_query(const string_pairs& query) {
    // The SDKs sort by the raw name (Go sort.Strings / url.Values.Encode), then encode.
    string_pairs sorted = query;
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string out;
    for (const auto& [k, v] : sorted) {
        if (!out.empty()) {
            out.push_back('&');
        }
        out += percent_encode(k);
        out.push_back('=');
        out += percent_encode(v);
    }
    return out;
}

v3_signature sign_v3(const v3_request& req, std::string_view access_key_id, std::string_view access_key_secret) {
    // Repeated headers are joined with ',' after sorting their values.
    std::map<std::string, std::vector<std::string>> signed_headers;
    for (const auto& [name, value] : req.headers) {
        auto lower = to_lower(name);
        if (is_signed_header(lower)) {
            signed_headers[lower].push_back(trim(value));
        }
    }
    std::string canonical_headers;
    std::string signed_names;
    for (auto& [name, values] : signed_headers) {
        std::sort(values.begin(), values.end());
        canonical_headers += name;
        canonical_headers.push_back(':');
        for (std::size_t i = 0; i < values.size(); ++i) {
            if (i > 0) {
                canonical_headers.push_back(',');
            }
            canonical_headers += values[i];
        }
        canonical_headers.push_back('\n');
        if (!signed_names.empty()) {
            signed_names.push_back(';');
        }
        signed_names += name;
    }

    v3_signature sig;
    sig.canonical_request = req.method + "\n" + (req.path.empty() ? std::string("/") : req.path) + "\n" +
                            v3_canonical_query(req.query) + "\n" + canonical_headers + "\n" + signed_names + "\n" +
                            sha256_hex(req.body);
    sig.string_to_sign = std::string(acs3_algorithm) + "\n" + sha256_hex(sig.canonical_request);
    sig.signature = hex_lower(hmac_sha256(access_key_secret, sig.string_to_sign));
    sig.signed_headers = signed_names;
    sig.authorization = std::string(acs3_algorithm) + " Credential=" + std::string(access_key_id) +
                        ",SignedHeaders=" + signed_names + ",Signature=" + sig.signature;
    return sig;
}

}  // namespace acp::tokens
