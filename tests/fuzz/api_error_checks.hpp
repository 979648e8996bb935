// What every Alibaba control-path parser promises about its errors, checked by
// the sts_response, imds_response, acr_openapi_response and alibaba_error
// targets: the operator-facing text is one bounded line that never shows a
// secret the caller signed with, however the server echoed it.
#pragma once

#include "tests/fuzz/fuzz_support.hpp"
#include "tokens/alibaba_error.hpp"

#include <cstddef>
#include <string_view>
#include <vector>

namespace acp::fuzz {

/// describe() of an error built only from a bounded server answer stays under this.
inline constexpr std::size_t max_described_error = 2048;

/// `secrets`: what the caller signed with (IMDS calls sign nothing: none).
inline void check_api_error(const tokens::api_error& e, const std::vector<std::string_view>& secrets = fuzz_secrets()) {
    for (const auto& text : {e.describe(), tokens::describe_instance_failure("cri-fuzz", "cn-hangzhou", "fuzz", e)}) {
        require(text.size() <= max_described_error + 1024);
        require(!has_control(text));
        for (const auto secret : secrets) {
            require(!reveals(text, secret));
        }
    }
    require(e.describe().size() <= max_described_error);
    (void)e.credential_rejected();
    (void)tokens::ram_permission_hint(e.api, e.code, e.http_status);
}

}  // namespace acp::fuzz
