#include "tokens/imds_client.hpp"

#include "config/values.hpp"
#include "tokens/signing_primitives.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace acp::tokens {

namespace {

constexpr const char* token_header = "X-aliyun-ecs-metadata-token";
constexpr const char* token_ttl_header = "X-aliyun-ecs-metadata-token-ttl-seconds";
constexpr std::string_view credentials_path = "/latest/meta-data/ram/security-credentials/";

std::string trim(std::string_view s) {
    const auto not_space = [](unsigned char c) {
        return c != ' ' && c != '\t' && c != '\r' && c != '\n';
    };
    const auto b = std::find_if(s.begin(), s.end(), not_space);
    const auto e = std::find_if(s.rbegin(), s.rend(), not_space).base();
    return b < e ? std::string(b, e) : std::string();
}

bool is_ram_role_name(std::string_view s) {
    return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
               c == '_';
    });
}

std::chrono::milliseconds since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

}  // namespace

api_result<std::string> parse_imds_role_name(std::string_view body, const std::string& endpoint) {
    // The listing is one role name per line; an instance has at most one role.
    auto name = trim(body);
    name = trim(std::string_view(name).substr(0, name.find('\n')));
    if (name.empty()) {
        return api_error{
            "IMDS RAM role name", "NoRole", "no RAM role is attached to this ECS instance", 200, {}, endpoint};
    }
    // It goes into the next request's URL path: a RAM role name or nothing.
    if (!is_ram_role_name(name)) {
        return api_error{"IMDS RAM role name",
                         "InvalidResponse",
                         "the role listing is not a RAM role name (1-64 letters, digits, '.', '-', '_')",
                         200,
                         {},
                         endpoint};
    }
    return name;
}

api_result<cloud_credential> parse_imds_credentials(std::string_view body, const std::string& endpoint) {
    const std::string what = "IMDS RAM role credentials";
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        return api_error{what, "InvalidResponse", "not a JSON object", 200, {}, endpoint};
    }
    const auto str = [&](const char* key) {
        const auto it = j.find(key);
        return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    if (str("Code") != "Success") {
        const auto code = scrub(str("Code"), {str("AccessKeySecret"), str("SecurityToken")});
        return api_error{what, code.empty() ? "InvalidResponse" : code, "Code is not Success", 200, {}, endpoint};
    }
    cloud_credential c;
    c.access_key_id = str("AccessKeyId");
    c.access_key_secret = config::secret(str("AccessKeySecret"));
    c.security_token = config::secret(str("SecurityToken"));
    c.expiration = parse_iso8601_utc(str("Expiration"));
    if (c.access_key_id.empty() || c.access_key_secret.empty() || c.security_token.empty() || !c.expiration) {
        return api_error{
            what, "InvalidResponse", "AccessKeyId, AccessKeySecret, SecurityToken or Expiration missing", 200,
            {},   endpoint};
    }
    return c;
}

imds_client::imds_client(http_client& http, const clock_source& clock, imds_options opts, alibaba_metrics* metrics)
    : http_(http), clock_(clock), opts_(std::move(opts)), metrics_(metrics) {
    while (!opts_.endpoint.empty() && opts_.endpoint.back() == '/') {
        opts_.endpoint.pop_back();
    }
    const auto ttl = opts_.token_ttl.count();
    opts_.token_ttl = std::chrono::seconds(std::clamp<std::chrono::seconds::rep>(ttl, 1, 21600));
}

std::optional<api_error> imds_client::refresh_token() {
    http_request req;
    req.method = "PUT";
    req.url = opts_.endpoint + "/latest/api/token";
    req.headers = {{token_ttl_header, std::to_string(opts_.token_ttl.count())}};
    req.connect_timeout = opts_.connect_timeout;
    req.timeout = opts_.timeout;
    req.bypass_proxy = true;
    const auto start = std::chrono::steady_clock::now();
    auto out = http_.perform(req);
    const bool ok = out.response && out.response->status == 200 && !trim(out.response->body).empty();
    if (metrics_ != nullptr) {
        metrics_->api[static_cast<std::size_t>(alibaba_api::imds_token)].record(ok, since(start));
    }
    if (ok) {
        token_ = config::secret(trim(out.response->body));
        // Renew at 80 % of the TTL, as ack-ram-tool does.
        token_refresh_at_ = clock_.now() + std::chrono::duration_cast<wall_clock::duration>(opts_.token_ttl * 4 / 5);
        return std::nullopt;
    }
    token_.reset();
    api_error err;
    err.api = "IMDS token (PUT /latest/api/token)";
    err.endpoint = url_origin(req.url);
    if (out.response) {
        err.http_status = out.response->status;
        err.code = "TokenRequestFailed";
    } else {
        err.code = "Transport";
        err.message = out.error;
    }
    return err;
}

api_result<std::string> imds_client::get(const std::string& path, const std::string& what) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (!opts_.imdsv2_disabled && (!token_ || clock_.now() >= token_refresh_at_)) {
            last_token_error_ = refresh_token();
            if (last_token_error_ && opts_.imdsv1_disabled) {
                auto err = *last_token_error_;
                err.message = (err.message.empty() ? std::string() : err.message + "; ") +
                              "IMDSv1 fallback is disabled (hardened mode), so no metadata can be read";
                return err;
            }
        }
        http_request req;
        req.url = opts_.endpoint + path;
        req.connect_timeout = opts_.connect_timeout;
        req.timeout = opts_.timeout;
        req.bypass_proxy = true;
        used_token_ = token_.has_value();
        if (token_) {
            req.headers.emplace_back(token_header, token_->reveal());
        }
        const auto start = std::chrono::steady_clock::now();
        auto out = http_.perform(req);
        const bool ok = out.response && out.response->status == 200;
        if (metrics_ != nullptr) {
            metrics_->api[static_cast<std::size_t>(alibaba_api::imds_metadata)].record(ok, since(start));
        }
        if (ok) {
            return std::move(out.response->body);
        }
        // A token the server no longer accepts: get a new one, once.
        if (out.response && (out.response->status == 401 || out.response->status == 403) && token_ && attempt == 0) {
            token_.reset();
            continue;
        }
        api_error err;
        err.api = "IMDS " + what;
        err.endpoint = url_origin(req.url);
        if (out.response) {
            err.http_status = out.response->status;
            err.code = out.response->status == 404 ? "NotFound" : "MetadataRequestFailed";
            if ((err.http_status == 401 || err.http_status == 403) && !token_ && last_token_error_) {
                err.message =
                    "the metadata server requires a token (hardened mode) but " + last_token_error_->describe();
            }
        } else {
            err.code = "Transport";
            err.message = out.error;
        }
        return err;
    }
    return api_error{"IMDS " + what, "MetadataRequestFailed", "token rejected twice", 0, {}, opts_.endpoint};
}

api_result<std::string> imds_client::region_id() {
    auto r = get("/latest/meta-data/region-id", "region-id");
    if (!r) {
        return r.error();
    }
    auto region = trim(r.value());
    if (region.empty()) {
        return api_error{"IMDS region-id", "EmptyAnswer", "the metadata server returned no region", 200, {},
                         opts_.endpoint};
    }
    // The region becomes part of endpoint host names (sts-vpc.<region>.aliyuncs.com): only a
    // region id's shape (lower-case letters, digits, '-') may get there.
    if (!config::is_region_id(region)) {
        return api_error{"IMDS region-id",
                         "InvalidAnswer",
                         "the metadata server's region-id answer is not a region id (" + std::to_string(region.size()) +
                             " bytes; expected lower-case letters, digits and '-')",
                         200,
                         {},
                         opts_.endpoint};
    }
    return region;
}

api_result<std::string> imds_client::role_name() {
    if (!opts_.role_name.empty()) {
        return opts_.role_name;
    }
    if (!discovered_role_.empty()) {
        return discovered_role_;
    }
    auto r = get(std::string(credentials_path), "RAM role name");
    if (!r) {
        auto err = r.error();
        if (err.code == "NotFound") {
            err.message = "no RAM role is attached to this ECS instance";
        }
        return err;
    }
    auto name = parse_imds_role_name(r.value(), opts_.endpoint);
    if (name) {
        discovered_role_ = name.value();
    }
    return name;
}

api_result<cloud_credential> imds_client::role_credentials() {
    auto role = role_name();
    if (!role) {
        return role.error();
    }
    auto r = get(std::string(credentials_path) + role.value(), "RAM role credentials");
    if (!r) {
        if (r.error().code == "NotFound" && opts_.role_name.empty()) {
            discovered_role_.clear();  // the role was swapped: rediscover next time
        }
        return r.error();
    }
    auto c = parse_imds_credentials(r.value(), opts_.endpoint);
    if (c) {
        c.value().obtained_at = clock_.now();
        c.value().source = "ecs_ram_role/" + role.value();
    }
    return c;
}

}  // namespace acp::tokens
