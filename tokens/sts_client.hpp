// STS client: `AssumeRole` (signed, V1 HMAC-SHA1) and `AssumeRoleWithOIDC`
// (anonymous), request shapes as aliyun/credentials-go builds them:
//
//   POST <sts>/?Version=2015-04-01&Action=AssumeRole&Format=JSON&Timestamp=..&SignatureMethod=HMAC-SHA1
//        &SignatureVersion=1.0&SignatureNonce=..&AccessKeyId=..[&SecurityToken=..]&Signature=..
//        body (form): RoleArn, RoleSessionName, DurationSeconds[, Policy][, ExternalId]
//   POST <sts>/?Version=2015-04-01&Action=AssumeRoleWithOIDC&Format=JSON&Timestamp=..
//        body (form): RoleArn, OIDCProviderArn, OIDCToken, RoleSessionName, DurationSeconds[, Policy]
//   → {"RequestId":..,"Credentials":{"AccessKeyId","AccessKeySecret","SecurityToken","Expiration"}}
// Spec: https://www.alibabacloud.com/help/en/ram/developer-reference/api-sts-2015-04-01-assumerole
//
// Thread affinity: the control thread only (blocking http_client calls).
#pragma once

#include "config/loader.hpp"
#include "tokens/alibaba_clock.hpp"
#include "tokens/alibaba_credential.hpp"
#include "tokens/alibaba_error.hpp"
#include "tokens/alibaba_http_client.hpp"
#include "tokens/alibaba_metrics.hpp"

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace acp::tokens {

struct assume_role_params {
    std::string role_arn;
    std::string role_session_name;
    std::chrono::seconds duration{3600};  // STS refuses < 900
    std::string policy;                   // optional
    std::string external_id;              // optional
};

/// assumeRoleARN of an ACR instance (cross-account), as STS AssumeRole
/// parameters on top of the instance's identity; nullopt when it has none.
[[nodiscard]] std::optional<assume_role_params> instance_assume_role(const config::acr_instance& inst,
                                                                     const config::environment& env);

struct oidc_params {
    std::string role_arn;
    std::string oidc_provider_arn;
    config::secret oidc_token;  // the raw projected token, read fresh by the caller
    std::string role_session_name;
    std::chrono::seconds duration{3600};
    std::string policy;  // optional
};

class sts_client {
public:
    /// `nonce` defaults to random_nonce(); tests may pin it.
    sts_client(http_client& http, const clock_source& clock, std::chrono::milliseconds timeout,
               alibaba_metrics* metrics = nullptr, std::function<std::string()> nonce = {});

    api_result<cloud_credential> assume_role(const std::string& endpoint, const cloud_credential& source,
                                             const assume_role_params& params);
    api_result<cloud_credential> assume_role_with_oidc(const std::string& endpoint, const oidc_params& params);

private:
    api_result<cloud_credential> exchange(const std::string& action, http_request req,
                                          const std::vector<std::string_view>& secrets, alibaba_api api);

    http_client& http_;
    const clock_source& clock_;
    std::chrono::milliseconds timeout_;
    alibaba_metrics* metrics_;
    std::function<std::string()> nonce_;
};

/// Parses an STS answer (any status) into a credential or an api_error
/// carrying the service's Code / Message / RequestId. Exposed for tests.
api_result<cloud_credential> parse_sts_response(const std::string& action, long status, std::string_view body,
                                                const std::vector<std::string_view>& secrets);

}  // namespace acp::tokens
