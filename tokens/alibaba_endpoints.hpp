// Where the Alibaba credential code reads its environment and which endpoint
// URLs it calls (IMDS, STS, ACR OpenAPI), per the facts file §1.1, §2.1, §2.6.
//
// Owns: pure functions of (config, environment). Precedence for every
// endpoint: a config value that differs from the built-in default wins, then
// the SDK environment variables, then the default; finally
// `config.endpoint_overrides` (host → URL) redirects any resolved host.
// No state, no thread affinity.
#pragma once

#include "config/config.hpp"
#include "config/loader.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace acp::tokens {

/// The AccessKey environment variables, most preferred first (credentials-go
/// names, then the legacy names ack-ram-tool accepts). Each of id / secret /
/// token takes the first non-empty variable of its list.
inline constexpr std::string_view env_access_key_id_names[] = {"ALIBABA_CLOUD_ACCESS_KEY_ID", "ALICLOUD_ACCESS_KEY",
                                                               "ALIBABACLOUD_ACCESS_KEY_ID", "ALICLOUD_ACCESS_KEY_ID"};
inline constexpr std::string_view env_access_key_secret_names[] = {
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALICLOUD_SECRET_KEY", "ALIBABACLOUD_ACCESS_KEY_SECRET",
    "ALICLOUD_ACCESS_KEY_SECRET"};
inline constexpr std::string_view env_security_token_names[] = {
    "ALIBABA_CLOUD_SECURITY_TOKEN", "ALICLOUD_ACCESS_KEY_STS_TOKEN", "ALIBABACLOUD_SECURITY_TOKEN",
    "ALICLOUD_SECURITY_TOKEN"};
inline constexpr std::string_view env_role_session_name_names[] = {"ALIBABA_CLOUD_ROLE_SESSION_NAME",
                                                                   "ALICLOUD_ROLE_SESSION_NAME"};

/// Where the ACK pod-identity webhook mounts the projected RRSA token.
inline constexpr std::string_view default_rrsa_token_file = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token";
inline constexpr std::string_view default_role_session_name = "acr-credential-proxy";

struct env_access_key {
    std::string access_key_id;
    config::secret access_key_secret;
    config::secret security_token;  // empty: a long-term AccessKey
    std::string id_variable;        // which variable held the id (for messages)
};

/// The AccessKey from the environment; nullopt unless both id and secret are set.
[[nodiscard]] std::optional<env_access_key> access_key_from_env(const config::environment& env);

struct rrsa_settings {
    std::string role_arn;
    std::string oidc_provider_arn;
    std::string token_file;
};

/// RRSA from ALIBABA_CLOUD_ROLE_ARN / _OIDC_PROVIDER_ARN / _OIDC_TOKEN_FILE; nullopt unless all three are set.
[[nodiscard]] std::optional<rrsa_settings> rrsa_from_env(const config::environment& env);

/// The add-on's per-instance RRSA role (acrInstances[].rrsaRoleARN): that role
/// with the instance's OIDC provider ARN (else ALIBABA_CLOUD_OIDC_PROVIDER_ARN)
/// and the projected token file (ALIBABA_CLOUD_OIDC_TOKEN_FILE, else the
/// webhook's default path). nullopt when the instance names no role.
[[nodiscard]] std::optional<rrsa_settings> instance_rrsa(const config::acr_instance& inst,
                                                         const config::environment& env);

/// An STS session length from a configured duration: at least 900 s (STS refuses less).
[[nodiscard]] std::chrono::seconds sts_session_duration(config::duration d);

/// First non-empty value of `names`.
[[nodiscard]] std::optional<std::string> first_env(const config::environment& env,
                                                   std::initializer_list<std::string_view> names);
[[nodiscard]] bool env_flag(const config::environment& env, std::string_view name);  // "true" (any case) or "1"

[[nodiscard]] std::string role_session_name(const config::environment& env, std::string_view configured);

/// STS: config.sts_endpoint if not the default; else ALIBABA_CLOUD_STS_ENDPOINT
/// (host or URL; scheme from ALIBABA_CLOUD_STS_HTTP_SCHEME); else
/// sts[-vpc].<region>.aliyuncs.com when ALIBABA_CLOUD_STS_REGION is set (or a
/// VPC endpoint is wanted and `region` is known); else https://sts.aliyuncs.com.
/// VPC: config.use_vpc_endpoints or ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true.
[[nodiscard]] std::string resolve_sts_endpoint(const config::config& cfg, const config::environment& env,
                                               std::string_view region);

/// ACR OpenAPI: config.acr_endpoint with {regionId} expanded; the default
/// template becomes cr-vpc.<region>.aliyuncs.com when use_vpc_endpoints.
[[nodiscard]] std::string resolve_acr_endpoint(const config::config& cfg, std::string_view region);

/// IMDS: config.imds_endpoint if not the default, else ALIBABA_CLOUD_IMDS_ENDPOINT, else http://100.100.100.200.
[[nodiscard]] std::string resolve_imds_endpoint(const config::config& cfg, const config::environment& env);

/// Redirects `url` through config.endpoint_overrides when its host[:port] is listed.
[[nodiscard]] std::string apply_endpoint_override(const config::config& cfg, std::string url);

/// Personal Edition registry domains of a region when none are configured:
/// registry[-vpc|-internal|-intl].<region>.aliyuncs.com.
[[nodiscard]] std::vector<std::string> personal_edition_domains(std::string_view region);

}  // namespace acp::tokens
