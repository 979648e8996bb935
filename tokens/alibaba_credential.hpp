// An Alibaba Cloud credential used to sign control-path calls (a long-term
// AccessKey, or an STS triple from IMDS / AssumeRole / AssumeRoleWithOIDC).
//
// Owns: data only. Secrets are `config::secret` (no stream operator).
// Immutable once built; shared read-only.
#pragma once

#include "config/config.hpp"
#include "tokens/alibaba_clock.hpp"

#include <optional>
#include <string>

namespace acp::tokens {

struct cloud_credential {
    std::string access_key_id;  // not secret on its own, but still kept out of logs
    config::secret access_key_secret;
    config::secret security_token;         // empty for a long-term AccessKey
    std::optional<time_point> expiration;  // nullopt: does not expire
    time_point obtained_at{};
    std::string source;  // "environment", "ecs_ram_role/<role>", "rrsa/<role arn>", "assume_role/<arn> via <source>"

    [[nodiscard]] bool is_sts() const { return !security_token.empty(); }
    /// Usable at `now` for at least `margin` more.
    [[nodiscard]] bool valid_for(time_point now, wall_clock::duration margin) const {
        return !expiration || *expiration - now > margin;
    }
};

}  // namespace acp::tokens
