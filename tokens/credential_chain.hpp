// The Alibaba Cloud credential chain: which identity signs the ACR OpenAPI
// calls, cached and refreshed before it expires.
//
// Chain (first *configured* source wins, the order of Alibaba's SDKs, facts §2.1):
//   1. environment AccessKey (ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET[/_SECURITY_TOKEN] and
//      the legacy names), then AccessKey files named in config (re-read on every use);
//   2. RRSA: ALIBABA_CLOUD_ROLE_ARN + _OIDC_PROVIDER_ARN + _OIDC_TOKEN_FILE → STS
//      AssumeRoleWithOIDC, the token file re-read on every call;
//   3. ECS RAM role through IMDS (unless disabled in config or by
//      ALIBABA_CLOUD_ECS_METADATA_DISABLED=true; role from config, ALIBABA_CLOUD_ECS_METADATA or discovery).
// A configured source that fails is reported, never silently skipped for the
// next one: a proxy must not quietly switch identities.
// Per ACR instance: `rrsa_role_arn` replaces the base with RRSA for that role;
// `assume_role_arn` adds a signed STS AssumeRole on top (facts §2.5).
//
// Thread affinity: providers are used by the one control thread only. They
// block (http_client). `identity()` is immutable and may be read anywhere.
#pragma once

#include "config/config.hpp"
#include "config/loader.hpp"
#include "tokens/alibaba_credential.hpp"
#include "tokens/alibaba_endpoints.hpp"
#include "tokens/alibaba_error.hpp"
#include "tokens/alibaba_metrics.hpp"
#include "tokens/imds_client.hpp"
#include "tokens/sts_client.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace acp::tokens {

class credential_provider {
public:
    credential_provider() = default;
    credential_provider(const credential_provider&) = delete;
    credential_provider& operator=(const credential_provider&) = delete;
    credential_provider(credential_provider&&) = delete;
    credential_provider& operator=(credential_provider&&) = delete;
    virtual ~credential_provider() = default;

    /// A credential still valid for `min_validity`, cached or freshly fetched.
    /// When the source cannot do better (IMDS rotates on its own schedule, STS
    /// caps the duration), a shorter-lived but still valid credential is returned.
    virtual api_result<cloud_credential> get(wall_clock::duration min_validity) = 0;

    /// Forget the cached credential (the service rejected it); the next get() fetches.
    virtual void invalidate() {}

    /// What this identity is, for messages ("ECS RAM role (instance metadata)"). No secrets.
    [[nodiscard]] const std::string& identity() const { return identity_; }

protected:
    std::string identity_;
};

/// What providers share; owned by the caller and outliving the providers.
struct provider_context {
    http_client& http;
    const clock_source& clock;
    const config::config& cfg;
    config::environment env;
    alibaba_metrics* metrics = nullptr;
    std::function<std::string()> sts_endpoint;  // resolved lazily (may need the node's region)
    std::function<std::string()> nonce;         // empty: random
};

/// A fixed credential (environment AccessKey, or a test's).
std::shared_ptr<credential_provider> make_static_provider(cloud_credential c, std::string identity);

/// AccessKey files (id, secret, optional token), re-read on every get().
std::shared_ptr<credential_provider> make_access_key_file_provider(const provider_context& ctx);

/// RRSA / OIDC for `rrsa`, token file re-read on every STS call.
std::shared_ptr<credential_provider> make_oidc_provider(const provider_context& ctx, rrsa_settings rrsa,
                                                        std::string session_name, std::chrono::seconds duration,
                                                        credential_gauges* gauges = nullptr);

/// ECS RAM role through `imds` (shared with the region lookup).
std::shared_ptr<credential_provider> make_ecs_role_provider(std::shared_ptr<imds_client> imds,
                                                            const clock_source& clock,
                                                            credential_gauges* gauges = nullptr);

/// STS AssumeRole on top of `base`.
std::shared_ptr<credential_provider> make_assume_role_provider(const provider_context& ctx,
                                                               std::shared_ptr<credential_provider> base,
                                                               assume_role_params params,
                                                               credential_gauges* gauges = nullptr);

/// Which base source the chain picks, and why (for `doctor` and logs).
struct chain_choice {
    enum class kind { environment, access_key_files, rrsa, ecs_ram_role, none } source = kind::none;
    std::string detail;  // e.g. the env variable name, the role ARN; never a secret
};

/// Pure: the chain decision from config and environment.
[[nodiscard]] chain_choice choose_base_source(const config::config& cfg, const config::environment& env);

/// Builds the provider for `choice`; `imds` is used for the ECS role.
/// Returns an api_error (api "credential chain") when nothing is configured.
api_result<std::shared_ptr<credential_provider>> make_base_provider(const provider_context& ctx,
                                                                    const chain_choice& choice,
                                                                    std::shared_ptr<imds_client> imds,
                                                                    credential_gauges* gauges = nullptr);

[[nodiscard]] std::string_view to_string(chain_choice::kind k);

}  // namespace acp::tokens
