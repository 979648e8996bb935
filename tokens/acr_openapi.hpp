// ACR OpenAPI client: temporary registry passwords and instance domains,
// every call signed with ACS3-HMAC-SHA256 (facts §1.2–1.4, §1.6).
//
//   Enterprise  POST <cr>/?InstanceId=cri-..  x-acs-action: GetAuthorizationToken  x-acs-version: 2018-12-01
//               → {"IsSuccess":true,"TempUsername","AuthorizationToken","ExpireTime":<epoch ms>,...}
//   Personal    GET  <cr>/tokens              x-acs-action: GetAuthorizationToken  x-acs-version: 2016-06-07
//               → {"data":{"tempUserName","authorizationToken","expireDate":<epoch ms>},"requestId"}
//   Endpoints   POST <cr>/?InstanceId=..&ModuleName=Registry  x-acs-action: ListInstanceEndpoint (2018-12-01)
//               → {"IsSuccess":true,"Endpoints":[{"EndpointType","Enable","Domains":[{"Domain","Type"}]}]}
// Success needs IsSuccess == true, not just HTTP 200. The password may contain ':'.
// With an STS credential, x-acs-accesskey-id and x-acs-security-token are sent (and signed).
//
// Thread affinity: the control thread only (blocking http_client calls).
#pragma once

#include "tokens/alibaba_clock.hpp"
#include "tokens/alibaba_credential.hpp"
#include "tokens/alibaba_error.hpp"
#include "tokens/alibaba_http_client.hpp"
#include "tokens/alibaba_metrics.hpp"
#include "tokens/signature_v3.hpp"

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace acp::tokens {

struct acr_temporary_password {
    std::string username;
    config::secret password;
    time_point expires_at{};
    std::string request_id;
};

struct instance_domain {
    std::string domain;         // lower-case
    std::string type;           // "SYSTEM" | "USER"
    std::string endpoint_type;  // "internet" | "vpc"
};

class acr_openapi {
public:
    acr_openapi(http_client& http, const clock_source& clock, std::chrono::milliseconds timeout,
                alibaba_metrics* metrics = nullptr, std::function<std::string()> nonce = {});

    api_result<acr_temporary_password> get_authorization_token(const std::string& endpoint,
                                                               const std::string& instance_id,
                                                               const cloud_credential& cred);
    api_result<acr_temporary_password> get_personal_authorization_token(const std::string& endpoint,
                                                                        const cloud_credential& cred);
    /// Domains of every *enabled* internet and vpc endpoint, SYSTEM and USER.
    api_result<std::vector<instance_domain>> list_instance_endpoint(const std::string& endpoint,
                                                                    const std::string& instance_id,
                                                                    const cloud_credential& cred);

private:
    api_result<std::string> call(const std::string& api, alibaba_api metric, const std::string& method,
                                 const std::string& endpoint, const std::string& path, const std::string& version,
                                 const string_pairs& query, const cloud_credential& cred, long& status);
    void record(alibaba_api metric, bool ok);

    http_client& http_;
    const clock_source& clock_;
    std::chrono::milliseconds timeout_;
    alibaba_metrics* metrics_;
    std::function<std::string()> nonce_;
    std::chrono::milliseconds latency_{0};
};

/// Builds the signed request (exposed for tests): headers host, x-acs-action,
/// x-acs-version, x-acs-date, x-acs-signature-nonce, x-acs-content-sha256,
/// [x-acs-accesskey-id, x-acs-security-token], accept, Authorization.
http_request build_acs3_request(const std::string& method, const std::string& endpoint, const std::string& path,
                                const std::string& action, const std::string& version, const string_pairs& query,
                                const cloud_credential& cred, time_point now, const std::string& nonce);

// Pure parsers of one answer (any HTTP status), exposed for tests. `secrets`
// are scrubbed from any server message that is kept.
api_result<acr_temporary_password> parse_ee_token_response(long status, std::string_view body,
                                                           const std::vector<std::string_view>& secrets = {});
api_result<acr_temporary_password> parse_personal_token_response(long status, std::string_view body,
                                                                 const std::vector<std::string_view>& secrets = {});
api_result<std::vector<instance_domain>> parse_instance_endpoints(long status, std::string_view body,
                                                                  const std::vector<std::string_view>& secrets = {});

}  // namespace acp::tokens
