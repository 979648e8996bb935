// libFuzzer target: the realm's JSON answer and realm URLs come from the
// network; parsing must never crash and errors must never echo a token.
#include "tokens/registry_token.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);
    std::string error;
    const auto tok = acp::tokens::parse_token_response(input, error);
    if (tok) {
        if (tok->token.empty() || tok->expires_in.count() <= 0) {
            std::abort();
        }
    } else if (error.empty() || error.size() > 160) {
        std::abort();  // every failure explains itself briefly, without echoing the body
    }
    if (const auto realm = acp::tokens::parse_realm_url(input)) {
        if (realm->host.empty() || realm->target.empty() || realm->target[0] != '/' || realm->port == 0) {
            std::abort();
        }
        (void)acp::tokens::token_request_target(*realm, input, {input});
        (void)acp::tokens::host_matches(input, realm->host, realm->port);
    }
    return 0;
}
