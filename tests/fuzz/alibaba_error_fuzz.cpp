// libFuzzer target: server text that ends up in our errors (Alibaba error
// bodies' Message, echoed strings to sign). The input's first line is a
// secret the caller holds (when 4 bytes or longer), the rest the server's
// text; scrub() must leave one bounded line that shows none of the secrets in
// any encoding a gateway echoes (raw, or percent-encoded in either case).
// The same text as a JSON error body goes through every parser's error path.
#include "tests/fuzz/api_error_checks.hpp"
#include "tokens/acr_openapi.hpp"
#include "tokens/sts_client.hpp"

#include <cstdint>
#include <string>
#include <vector>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

// What real secrets look like (AccessKey secrets: letters and digits; STS
// tokens: base64). Others (with '<', '>' or '%') could be rebuilt from the
// "<redacted>" marker or an escape around them, which proves nothing.
bool secret_shaped(std::string_view s) {
    if (s.size() < 8) {
        return false;
    }
    for (const char c : s) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
                        c == '/' || c == '=';
        if (!ok) {
            return false;
        }
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using acp::fuzz::require;
    const auto input = acp::fuzz::as_text(data, size);
    const auto nl = input.find('\n');
    const auto first = input.substr(0, nl);
    const auto text = nl == std::string_view::npos ? std::string_view() : input.substr(nl + 1);

    std::vector<std::string_view> secrets = acp::fuzz::fuzz_secrets();
    if (first.size() >= 4) {
        secrets.push_back(first);
    }
    const auto out = acp::tokens::scrub(text, secrets);
    require(out.size() <= 403);
    require(!acp::fuzz::has_control(out));
    for (const auto s : secrets) {
        if (secret_shaped(s)) {
            require(!acp::fuzz::reveals(out, s));
        }
    }

    // The text as the Message of an error body, through each parser.
    const auto& fixed = acp::fuzz::fuzz_secrets();
    for (const long status : {200L, 400L, 403L}) {
        for (const auto body : {text, input}) {
            if (auto r = acp::tokens::parse_sts_response("AssumeRole", status, body, fixed); !r) {
                acp::fuzz::check_api_error(r.error());
            }
            if (auto r = acp::tokens::parse_ee_token_response(status, body, fixed); !r) {
                acp::fuzz::check_api_error(r.error());
            }
            if (auto r = acp::tokens::parse_personal_token_response(status, body, fixed); !r) {
                acp::fuzz::check_api_error(r.error());
            }
        }
    }
    return 0;
}
