// libFuzzer target: STS answers (AssumeRole, AssumeRoleWithOIDC) come from the
// network. Any body, under any status, parses without a crash; a credential
// is only ever accepted whole (id, secret, token, expiry) from a 200; an
// error is one bounded line that never shows the signing secrets.
#include "tests/fuzz/api_error_checks.hpp"
#include "tokens/sts_client.hpp"

#include <cstdint>
#include <string>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using acp::fuzz::require;
    const auto body = acp::fuzz::as_text(data, size);
    for (const std::string action : {"AssumeRole", "AssumeRoleWithOIDC"}) {
        for (const long status : {200L, 400L, 403L, 500L}) {
            const auto r = acp::tokens::parse_sts_response(action, status, body, acp::fuzz::fuzz_secrets());
            if (r) {
                const auto& c = r.value();
                require(status == 200);
                require(!c.access_key_id.empty() && !c.access_key_secret.empty() && !c.security_token.empty());
                require(c.expiration.has_value() && c.is_sts());
            } else {
                require(r.error().api == action && r.error().http_status == status && !r.error().code.empty());
                acp::fuzz::check_api_error(r.error());
            }
        }
    }
    return 0;
}
