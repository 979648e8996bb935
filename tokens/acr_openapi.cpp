#include "tokens/acr_openapi.hpp"

#include "routing/distribution_path.hpp"
#include "tokens/signing_primitives.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

namespace acp::tokens {

namespace {

constexpr std::string_view user_agent = "acr-credential-proxy";

const nlohmann::json* find_key(const nlohmann::json& j, std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
        const auto it = j.find(k);
        if (it != j.end()) {
            return &*it;
        }
    }
    return nullptr;
}

std::string string_of(const nlohmann::json& j, std::initializer_list<const char*> keys) {
    const auto* v = find_key(j, keys);
    return v != nullptr && v->is_string() ? v->get<std::string>() : std::string();
}

std::optional<std::int64_t> int_of(const nlohmann::json& j, std::initializer_list<const char*> keys) {
    const auto* v = find_key(j, keys);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (v->is_number_integer()) {
        return v->get<std::int64_t>();
    }
    if (v->is_number_float()) {
        // Converting a double outside int64's range is undefined: refuse it.
        const auto d = v->get<double>();
        if (!(d > -9.2e18 && d < 9.2e18)) {
            return std::nullopt;
        }
        return static_cast<std::int64_t>(d);
    }
    if (v->is_string()) {
        try {
            return std::stoll(v->get<std::string>());
        } catch (const std::exception&) {
            return std::nullopt;
        }
    }
    return std::nullopt;
}

// An expiry in epoch milliseconds that the clock can hold (nanosecond
// system_clock: up to year 2262); past it from_epoch_ms would overflow.
std::optional<std::int64_t> expiry_ms(std::optional<std::int64_t> ms) {
    constexpr auto max_ms = std::chrono::duration_cast<std::chrono::milliseconds>(wall_clock::duration::max()).count();
    if (!ms || *ms <= 0 || *ms > max_ms) {
        return std::nullopt;
    }
    return ms;
}

bool is_success(const nlohmann::json& j) {
    const auto* v = find_key(j, {"IsSuccess", "isSuccess"});
    return v != nullptr && ((v->is_boolean() && v->get<bool>()) || (v->is_string() && v->get<std::string>() == "true"));
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

/// The service's error fields from an RPC (Code/Message/RequestId) or ROA (code/message/requestId) body.
api_error service_error(const std::string& api, long status, const nlohmann::json& j,
                        const std::vector<std::string_view>& secrets) {
    api_error err;
    err.api = api;
    err.http_status = status;
    if (!j.is_object()) {
        err.code = "InvalidResponse";
        err.message = "the answer is not a JSON object";
        return err;
    }
    err.code = scrub(string_of(j, {"Code", "code", "errorCode"}), secrets);
    err.message = scrub(string_of(j, {"Message", "message", "errorMessage"}), secrets);
    err.request_id = scrub(string_of(j, {"RequestId", "requestId"}), secrets);
    if (err.code.empty() || (status == 200 && lower(err.code) == "success")) {
        err.code = status == 200 ? "IsSuccessFalse" : "HTTP" + std::to_string(status);
    }
    return err;
}

nlohmann::json parse_object(std::string_view body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    return j.is_discarded() ? nlohmann::json() : j;
}

std::string endpoint_root(std::string endpoint) {
    while (!endpoint.empty() && endpoint.back() == '/') {
        endpoint.pop_back();
    }
    return endpoint;
}

}  // namespace

http_request build_acs3_request(const std::string& method, const std::string& endpoint, const std::string& path,
                                const std::string& action, const std::string& version, const string_pairs& query,
                                const cloud_credential& cred, time_point now, const std::string& nonce) {
    v3_request v3;
    v3.method = method;
    v3.path = path;
    v3.query = query;
    const std::string url_base = endpoint_root(endpoint);
    v3.headers = {
        {"host", url_host_header(url_base)}, {"x-acs-action", action},
        {"x-acs-version", version},          {"x-acs-date", iso8601_utc(now)},
        {"x-acs-signature-nonce", nonce},    {"x-acs-content-sha256", sha256_hex(v3.body)},
    };
    if (cred.is_sts()) {
        v3.headers.emplace_back("x-acs-accesskey-id", cred.access_key_id);
        v3.headers.emplace_back("x-acs-security-token", cred.security_token.reveal());
    }
    const auto sig = sign_v3(v3, cred.access_key_id, cred.access_key_secret.reveal());

    http_request req;
    req.method = method;
    req.url = url_base + path;
    const auto q = v3_canonical_query(query);
    if (!q.empty()) {
        req.url += "?" + q;
    }
    req.headers = v3.headers;
    req.headers.emplace_back("accept", "application/json");
    req.headers.emplace_back("user-agent", std::string(user_agent));
    req.headers.emplace_back("Authorization", sig.authorization);
    req.body = v3.body;
    return req;
}

api_result<acr_temporary_password> parse_ee_token_response(long status, std::string_view body,
                                                           const std::vector<std::string_view>& secrets) {
    const std::string api = "GetAuthorizationToken";
    const auto j = parse_object(body);
    if (status != 200 || !j.is_object() || !is_success(j)) {
        return service_error(api, status, j, secrets);
    }
    acr_temporary_password p;
    p.username = string_of(j, {"TempUsername"});
    p.password = config::secret(string_of(j, {"AuthorizationToken"}));
    p.request_id = scrub(string_of(j, {"RequestId"}), secrets);
    const auto expire = expiry_ms(int_of(j, {"ExpireTime"}));
    if (p.username.empty() || p.password.empty() || !expire) {
        return api_error{api,    "InvalidResponse", "TempUsername, AuthorizationToken or ExpireTime missing",
                         status, p.request_id,      {}};
    }
    p.expires_at = from_epoch_ms(*expire);  // milliseconds since the epoch
    return p;
}

api_result<acr_temporary_password> parse_personal_token_response(long status, std::string_view body,
                                                                 const std::vector<std::string_view>& secrets) {
    const std::string api = "GetAuthorizationToken";
    const auto j = parse_object(body);
    const auto* data = j.is_object() ? find_key(j, {"data", "Data"}) : nullptr;
    if (status != 200 || data == nullptr || !data->is_object()) {
        auto err = service_error(api, status, j, secrets);
        if (status == 200 && err.code == "IsSuccessFalse") {
            err.code = "InvalidResponse";
            err.message = "no data object in the answer";
        }
        return err;
    }
    acr_temporary_password p;
    p.username = string_of(*data, {"tempUserName", "TempUserName"});
    p.password = config::secret(string_of(*data, {"authorizationToken", "AuthorizationToken"}));
    p.request_id = scrub(string_of(j, {"requestId", "RequestId"}), secrets);
    const auto expire = expiry_ms(int_of(*data, {"expireDate", "ExpireDate"}));
    if (p.username.empty() || p.password.empty() || !expire) {
        return api_error{api,    "InvalidResponse", "tempUserName, authorizationToken or expireDate missing",
                         status, p.request_id,      {}};
    }
    p.expires_at = from_epoch_ms(*expire);
    return p;
}

api_result<std::vector<instance_domain>> parse_instance_endpoints(long status, std::string_view body,
                                                                  const std::vector<std::string_view>& secrets) {
    const std::string api = "ListInstanceEndpoint";
    const auto j = parse_object(body);
    if (status != 200 || !j.is_object() || !is_success(j)) {
        return service_error(api, status, j, secrets);
    }
    std::vector<instance_domain> out;
    const auto* endpoints = find_key(j, {"Endpoints"});
    if (endpoints == nullptr || !endpoints->is_array()) {
        return out;
    }
    for (const auto& ep : *endpoints) {
        if (!ep.is_object()) {
            continue;
        }
        const auto* enable = find_key(ep, {"Enable"});
        if (enable == nullptr || !enable->is_boolean() || !enable->get<bool>()) {
            continue;
        }
        const auto type = string_of(ep, {"EndpointType"});
        if (type != "internet" && type != "vpc") {
            continue;
        }
        const auto* domains = find_key(ep, {"Domains"});
        if (domains == nullptr || !domains->is_array()) {
            continue;
        }
        for (const auto& d : *domains) {
            if (!d.is_object()) {
                continue;
            }
            auto domain = lower(string_of(d, {"Domain"}));
            // It becomes a route and a hosts.toml directory: a registry host or nothing.
            if (domain.empty() || !routing::is_valid_host(domain)) {
                continue;
            }
            const bool dup = std::any_of(out.begin(), out.end(), [&](const auto& x) { return x.domain == domain; });
            if (!dup) {
                out.push_back({std::move(domain), string_of(d, {"Type"}), type});
            }
        }
    }
    return out;
}

acr_openapi::acr_openapi(http_client& http, const clock_source& clock, std::chrono::milliseconds timeout,
                         alibaba_metrics* metrics, std::function<std::string()> nonce)
    : http_(http), clock_(clock), timeout_(timeout), metrics_(metrics), nonce_(std::move(nonce)) {
    if (!nonce_) {
        nonce_ = [] {
            return random_nonce();
        };
    }
}

api_result<std::string> acr_openapi::call(const std::string& api, alibaba_api metric, const std::string& method,
                                          const std::string& endpoint, const std::string& path,
                                          const std::string& version, const string_pairs& query,
                                          const cloud_credential& cred, long& status) {
    auto req = build_acs3_request(method, endpoint, path, api, version, query, cred, clock_.now(), nonce_());
    req.timeout = timeout_;
    req.connect_timeout = std::min(timeout_, std::chrono::milliseconds(5000));
    const auto start = std::chrono::steady_clock::now();
    auto out = http_.perform(req);
    const auto latency =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    if (!out.response) {
        if (metrics_ != nullptr) {
            metrics_->api[static_cast<std::size_t>(metric)].record(false, latency);
        }
        return api_error{api, "Transport", out.error, 0, {}, url_origin(req.url)};
    }
    latency_ = latency;  // recorded by the caller once the answer is parsed
    status = out.response->status;
    return std::move(out.response->body);
}

void acr_openapi::record(alibaba_api metric, bool ok) {
    if (metrics_ != nullptr) {
        metrics_->api[static_cast<std::size_t>(metric)].record(ok, latency_);
    }
}

api_result<acr_temporary_password> acr_openapi::get_authorization_token(const std::string& endpoint,
                                                                        const std::string& instance_id,
                                                                        const cloud_credential& cred) {
    constexpr auto metric = alibaba_api::acr_get_authorization_token;
    long status = 0;
    auto body = call("GetAuthorizationToken", metric, "POST", endpoint, "/", "2018-12-01",
                     {{"InstanceId", instance_id}}, cred, status);
    if (!body) {
        return body.error();
    }
    auto r =
        parse_ee_token_response(status, body.value(), {cred.access_key_secret.reveal(), cred.security_token.reveal()});
    record(metric, r.ok());
    if (!r) {
        auto err = r.error();
        err.endpoint = url_origin(endpoint);
        return err;
    }
    return r;
}

api_result<acr_temporary_password> acr_openapi::get_personal_authorization_token(const std::string& endpoint,
                                                                                 const cloud_credential& cred) {
    constexpr auto metric = alibaba_api::acr_get_authorization_token_personal;
    long status = 0;
    auto body = call("GetAuthorizationToken", metric, "GET", endpoint, "/tokens", "2016-06-07", {}, cred, status);
    if (!body) {
        return body.error();
    }
    auto r = parse_personal_token_response(status, body.value(),
                                           {cred.access_key_secret.reveal(), cred.security_token.reveal()});
    record(metric, r.ok());
    if (!r) {
        auto err = r.error();
        err.endpoint = url_origin(endpoint);
        return err;
    }
    return r;
}

api_result<std::vector<instance_domain>> acr_openapi::list_instance_endpoint(const std::string& endpoint,
                                                                             const std::string& instance_id,
                                                                             const cloud_credential& cred) {
    constexpr auto metric = alibaba_api::acr_list_instance_endpoint;
    long status = 0;
    auto body = call("ListInstanceEndpoint", metric, "POST", endpoint, "/", "2018-12-01",
                     {{"InstanceId", instance_id}, {"ModuleName", "Registry"}}, cred, status);
    if (!body) {
        return body.error();
    }
    auto r =
        parse_instance_endpoints(status, body.value(), {cred.access_key_secret.reveal(), cred.security_token.reveal()});
    record(metric, r.ok());
    if (!r) {
        auto err = r.error();
        err.endpoint = url_origin(endpoint);
        return err;
    }
    return r;
}

}  // namespace acp::tokens
