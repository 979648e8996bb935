// libFuzzer target: ECS instance metadata answers (the RAM role listing and
// the role's credentials JSON). The role name goes into the next request's
// URL path, so an accepted one is a plain RAM role name; credentials are
// accepted whole or not at all; errors are bounded single lines (no signing
// secret to look for: IMDS calls are not signed).
#include "tests/fuzz/api_error_checks.hpp"
#include "tokens/imds_client.hpp"

#include <cstdint>
#include <string>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

// RAM role names: 1-64 letters, digits, '.', '-' and '_'.
bool is_ram_role_name(std::string_view s) {
    if (s.empty() || s.size() > 64) {
        return false;
    }
    for (const char c : s) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '-' || c == '_';
        if (!ok) {
            return false;
        }
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using acp::fuzz::require;
    const auto body = acp::fuzz::as_text(data, size);
    const std::string endpoint = "http://100.100.100.200";

    const auto role = acp::tokens::parse_imds_role_name(body, endpoint);
    if (role) {
        require(is_ram_role_name(role.value()));
    } else {
        acp::fuzz::check_api_error(role.error(), {});
    }

    const auto cred = acp::tokens::parse_imds_credentials(body, endpoint);
    if (cred) {
        const auto& c = cred.value();
        require(!c.access_key_id.empty() && !c.access_key_secret.empty() && !c.security_token.empty());
        require(c.expiration.has_value());
    } else {
        require(!cred.error().code.empty() && cred.error().endpoint == endpoint);
        acp::fuzz::check_api_error(cred.error(), {});
    }
    return 0;
}
