// libFuzzer target: ACR OpenAPI answers (GetAuthorizationToken for Enterprise
// and Personal Edition, ListInstanceEndpoint) under any status. A temporary
// password is accepted only whole, from a 200, with an expiry the clock can
// hold; discovered domains are valid registry hosts (they become routes and
// hosts.toml directories); errors are bounded lines without the secrets.
#include "routing/distribution_path.hpp"
#include "tests/fuzz/api_error_checks.hpp"
#include "tokens/acr_openapi.hpp"

#include <chrono>
#include <cstdint>
#include <set>
#include <string>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using acp::fuzz::require;

void check_password(const acp::tokens::api_result<acp::tokens::acr_temporary_password>& r, long status) {
    if (!r) {
        require(r.error().api == "GetAuthorizationToken" && !r.error().code.empty());
        acp::fuzz::check_api_error(r.error());
        return;
    }
    require(status == 200);
    require(!r->username.empty() && !r->password.empty());
    // After the epoch, and held by the clock without overflow (UBSan checks from_epoch_ms).
    require(r->expires_at.time_since_epoch() > acp::tokens::wall_clock::duration::zero());
    (void)acp::tokens::to_epoch_ms(r->expires_at);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto body = acp::fuzz::as_text(data, size);
    const auto& secrets = acp::fuzz::fuzz_secrets();
    for (const long status : {200L, 400L, 403L, 404L, 500L}) {
        check_password(acp::tokens::parse_ee_token_response(status, body, secrets), status);
        check_password(acp::tokens::parse_personal_token_response(status, body, secrets), status);

        const auto eps = acp::tokens::parse_instance_endpoints(status, body, secrets);
        if (!eps) {
            require(eps.error().api == "ListInstanceEndpoint" && !eps.error().code.empty());
            acp::fuzz::check_api_error(eps.error());
            continue;
        }
        require(status == 200);
        std::set<std::string> seen;
        for (const auto& d : eps.value()) {
            require(acp::routing::is_valid_host(d.domain));
            require(d.endpoint_type == "internet" || d.endpoint_type == "vpc");
            require(seen.insert(d.domain).second);
        }
    }
    return 0;
}
