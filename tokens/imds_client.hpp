// ECS instance metadata (IMDS) client: region, RAM role name and the role's
// STS credentials, IMDSv2 first (works in hardened, token-only mode).
//
//   PUT  /latest/api/token   X-aliyun-ecs-metadata-token-ttl-seconds: <ttl>   → token (cached for 80 % of ttl)
//   GET  /latest/meta-data/region-id
//   GET  /latest/meta-data/ram/security-credentials/          → role name
//   GET  /latest/meta-data/ram/security-credentials/<role>    → {"Code":"Success","AccessKeyId",...}
//   every GET carries X-aliyun-ecs-metadata-token when a token was obtained.
// If the token PUT fails the client falls back to IMDSv1 unless
// `imdsv1_disabled` (credentials-go semantics). Spec:
// https://www.alibabacloud.com/help/en/ecs/user-guide/view-instance-metadata/
//
// Thread affinity: the control thread only (blocking http_client calls).
#pragma once

#include "tokens/alibaba_clock.hpp"
#include "tokens/alibaba_credential.hpp"
#include "tokens/alibaba_error.hpp"
#include "tokens/alibaba_http_client.hpp"
#include "tokens/alibaba_metrics.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace acp::tokens {

struct imds_options {
    std::string endpoint = "http://100.100.100.200";
    std::string role_name;         // empty: discovered (and re-discovered after a 404)
    bool imdsv1_disabled = false;  // hardened: a token is required
    bool imdsv2_disabled = false;  // never ask for a token (ALIBABA_CLOUD_IMDSV2_DISABLED)
    std::chrono::seconds token_ttl{21600};
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds timeout{3000};
};

class imds_client {
public:
    imds_client(http_client& http, const clock_source& clock, imds_options opts, alibaba_metrics* metrics = nullptr);

    api_result<std::string> region_id();
    api_result<std::string> role_name();
    api_result<cloud_credential> role_credentials();

    /// Whether the last metadata read used an IMDSv2 token (for tests and `doctor`).
    [[nodiscard]] bool used_token() const { return used_token_; }

private:
    api_result<std::string> get(const std::string& path, const std::string& what);
    std::optional<api_error> refresh_token();

    http_client& http_;
    const clock_source& clock_;
    imds_options opts_;
    alibaba_metrics* metrics_;
    std::string discovered_role_;
    std::optional<config::secret> token_;
    time_point token_refresh_at_{};
    std::optional<api_error> last_token_error_;
    bool used_token_ = false;
};

/// Pure parsers of one IMDS answer (a 200 body), exposed for tests and fuzzing.
/// The role listing: its first line, trimmed ("NoRole" when empty).
api_result<std::string> parse_imds_role_name(std::string_view body, const std::string& endpoint);
/// The role's credentials JSON ({"Code":"Success","AccessKeyId",...}); the
/// caller sets obtained_at and source. `endpoint` goes into errors.
api_result<cloud_credential> parse_imds_credentials(std::string_view body, const std::string& endpoint);

}  // namespace acp::tokens
