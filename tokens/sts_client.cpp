#include "tokens/sts_client.hpp"

#include "tokens/alibaba_endpoints.hpp"
#include "tokens/signature_v1.hpp"
#include "tokens/signing_primitives.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace acp::tokens {

namespace {

std::string json_string(const nlohmann::json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string form(const string_pairs& params) {
    return v1_canonicalized_query(params);
}

std::string endpoint_root(std::string endpoint) {
    while (!endpoint.empty() && endpoint.back() == '/') {
        endpoint.pop_back();
    }
    return endpoint + "/";
}

}  // namespace

sts_client::sts_client(http_client& http, const clock_source& clock, std::chrono::milliseconds timeout,
                       alibaba_metrics* metrics, std::function<std::string()> nonce)
    : http_(http), clock_(clock), timeout_(timeout), metrics_(metrics), nonce_(std::move(nonce)) {
    if (!nonce_) {
        nonce_ = [] {
            return random_nonce();
        };
    }
}

api_result<cloud_credential> parse_sts_response(const std::string& action, long status, std::string_view body,
                                                const std::vector<std::string_view>& secrets) {
    const auto j = nlohmann::json::parse(body, nullptr, false);
    api_error err;
    err.api = action;
    err.http_status = status;
    if (j.is_discarded() || !j.is_object()) {
        err.code = "InvalidResponse";
        err.message = "the answer is not a JSON object";
        return err;
    }
    err.request_id = scrub(json_string(j, "RequestId"), secrets);
    const auto creds = j.find("Credentials");
    if (status != 200 || creds == j.end() || !creds->is_object()) {
        err.code = scrub(json_string(j, "Code"), secrets);
        err.message = scrub(json_string(j, "Message"), secrets);
        if (err.code.empty()) {
            err.code = status == 200 ? "InvalidResponse" : "HTTP" + std::to_string(status);
        }
        return err;
    }
    cloud_credential c;
    c.access_key_id = json_string(*creds, "AccessKeyId");
    c.access_key_secret = config::secret(json_string(*creds, "AccessKeySecret"));
    c.security_token = config::secret(json_string(*creds, "SecurityToken"));
    c.expiration = parse_iso8601_utc(json_string(*creds, "Expiration"));
    if (c.access_key_id.empty() || c.access_key_secret.empty() || c.security_token.empty() || !c.expiration) {
        err.code = "InvalidResponse";
        err.message = "Credentials lack AccessKeyId, AccessKeySecret, SecurityToken or Expiration";
        return err;
    }
    return c;
}

api_result<cloud_credential> sts_client::exchange(const std::string& action, http_request req,
                                                  const std::vector<std::string_view>& secrets, alibaba_api api) {
    req.method = "POST";
    req.headers.emplace_back("Accept-Encoding", "identity");
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    req.headers.emplace_back("Accept", "application/json");
    req.timeout = timeout_;
    req.connect_timeout = std::min(timeout_, std::chrono::milliseconds(5000));
    const auto start = std::chrono::steady_clock::now();
    auto out = http_.perform(req);
    const auto latency =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    if (!out.response) {
        if (metrics_ != nullptr) {
            metrics_->api[static_cast<std::size_t>(api)].record(false, latency);
        }
        return api_error{action, "Transport", out.error, 0, {}, url_origin(req.url)};
    }
    auto r = parse_sts_response(action, out.response->status, out.response->body, secrets);
    if (metrics_ != nullptr) {
        metrics_->api[static_cast<std::size_t>(api)].record(r.ok(), latency);
    }
    if (!r) {
        auto err = r.error();
        err.endpoint = url_origin(req.url);
        return err;
    }
    r.value().obtained_at = clock_.now();
    return r;
}

api_result<cloud_credential> sts_client::assume_role(const std::string& endpoint, const cloud_credential& source,
                                                     const assume_role_params& params) {
    string_pairs query = {
        {"Version", "2015-04-01"},
        {"Action", "AssumeRole"},
        {"Format", "JSON"},
        {"Timestamp", iso8601_utc(clock_.now())},
        {"SignatureMethod", "HMAC-SHA1"},
        {"SignatureVersion", "1.0"},
        {"SignatureNonce", nonce_()},
        {"AccessKeyId", source.access_key_id},
    };
    if (source.is_sts()) {
        query.emplace_back("SecurityToken", source.security_token.reveal());
    }
    string_pairs body = {{"RoleArn", params.role_arn}};
    if (!params.policy.empty()) {
        body.emplace_back("Policy", params.policy);
    }
    if (!params.external_id.empty()) {
        body.emplace_back("ExternalId", params.external_id);
    }
    body.emplace_back("RoleSessionName", params.role_session_name);
    body.emplace_back("DurationSeconds", std::to_string(params.duration.count()));

    // The signature covers query and body parameters together.
    string_pairs all = query;
    all.insert(all.end(), body.begin(), body.end());
    query.emplace_back("Signature", sign_v1("POST", all, source.access_key_secret.reveal()));

    http_request req;
    req.url = endpoint_root(endpoint) + "?" + form(query);
    req.body = form(body);
    auto r = exchange("AssumeRole", std::move(req), {source.access_key_secret.reveal(), source.security_token.reveal()},
                      alibaba_api::sts_assume_role);
    if (r) {
        r.value().source = "assume_role/" + params.role_arn + " via " + source.source;
    }
    return r;
}

api_result<cloud_credential> sts_client::assume_role_with_oidc(const std::string& endpoint, const oidc_params& params) {
    const string_pairs query = {
        {"Version", "2015-04-01"},
        {"Action", "AssumeRoleWithOIDC"},
        {"Format", "JSON"},
        {"Timestamp", iso8601_utc(clock_.now())},
    };
    string_pairs body = {
        {"RoleArn", params.role_arn},
        {"OIDCProviderArn", params.oidc_provider_arn},
        {"OIDCToken", params.oidc_token.reveal()},
    };
    if (!params.policy.empty()) {
        body.emplace_back("Policy", params.policy);
    }
    body.emplace_back("RoleSessionName", params.role_session_name);
    body.emplace_back("DurationSeconds", std::to_string(params.duration.count()));

    http_request req;
    req.url = endpoint_root(endpoint) + "?" + form(query);
    req.body = form(body);
    auto r = exchange("AssumeRoleWithOIDC", std::move(req), {params.oidc_token.reveal()},
                      alibaba_api::sts_assume_role_with_oidc);
    if (r) {
        r.value().source = "rrsa/" + params.role_arn;
    }
    return r;
}

std::optional<assume_role_params> instance_assume_role(const config::acr_instance& inst,
                                                       const config::environment& env) {
    if (inst.assume_role_arn.empty()) {
        return std::nullopt;
    }
    assume_role_params params;
    params.role_arn = inst.assume_role_arn;
    params.role_session_name = role_session_name(env, inst.role_session_name);
    params.duration = sts_session_duration(inst.expire_duration);
    return params;
}

}  // namespace acp::tokens
