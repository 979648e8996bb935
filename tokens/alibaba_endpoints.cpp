#include "tokens/alibaba_endpoints.hpp"

#include "tokens/alibaba_http_client.hpp"

#include <algorithm>
#include <cctype>

namespace acp::tokens {

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::optional<std::string> get(const config::environment& env, std::string_view name) {
    if (!env.getenv) {
        return std::nullopt;
    }
    auto v = env.getenv(std::string(name));
    if (v && v->empty()) {
        return std::nullopt;
    }
    return v;
}

template <std::size_t N>
std::optional<std::string> first_of(const config::environment& env, const std::string_view (&names)[N],
                                    std::string* which = nullptr) {
    for (const auto name : names) {
        if (auto v = get(env, name)) {
            if (which != nullptr) {
                *which = std::string(name);
            }
            return v;
        }
    }
    return std::nullopt;
}

void replace_all(std::string& s, std::string_view what, std::string_view with) {
    std::size_t pos = 0;
    while ((pos = s.find(what, pos)) != std::string::npos) {
        s.replace(pos, what.size(), with);
        pos += with.size();
    }
}

std::string with_scheme(std::string host_or_url, std::string_view scheme) {
    if (host_or_url.find("://") != std::string::npos) {
        return host_or_url;
    }
    return std::string(scheme) + "://" + host_or_url;
}

}  // namespace

std::optional<std::string> first_env(const config::environment& env, std::initializer_list<std::string_view> names) {
    for (const auto name : names) {
        if (auto v = get(env, name)) {
            return v;
        }
    }
    return std::nullopt;
}

bool env_flag(const config::environment& env, std::string_view name) {
    const auto v = get(env, name);
    return v && (lower(*v) == "true" || *v == "1");
}

std::optional<env_access_key> access_key_from_env(const config::environment& env) {
    std::string which;
    auto id = first_of(env, env_access_key_id_names, &which);
    auto secret = first_of(env, env_access_key_secret_names);
    if (!id || !secret) {
        return std::nullopt;
    }
    env_access_key out;
    out.access_key_id = std::move(*id);
    out.access_key_secret = config::secret(std::move(*secret));
    if (auto token = first_of(env, env_security_token_names)) {
        out.security_token = config::secret(std::move(*token));
    }
    out.id_variable = std::move(which);
    return out;
}

std::optional<rrsa_settings> rrsa_from_env(const config::environment& env) {
    auto role = get(env, "ALIBABA_CLOUD_ROLE_ARN");
    auto provider = get(env, "ALIBABA_CLOUD_OIDC_PROVIDER_ARN");
    auto file = get(env, "ALIBABA_CLOUD_OIDC_TOKEN_FILE");
    if (!role || !provider || !file) {
        return std::nullopt;
    }
    return rrsa_settings{std::move(*role), std::move(*provider), std::move(*file)};
}

std::string role_session_name(const config::environment& env, std::string_view configured) {
    if (!configured.empty()) {
        return std::string(configured);
    }
    if (auto v = first_of(env, env_role_session_name_names)) {
        return *v;
    }
    return std::string(default_role_session_name);
}

std::string resolve_sts_endpoint(const config::config& cfg, const config::environment& env, std::string_view region) {
    const config::alibaba_config defaults;
    std::string url;
    if (cfg.alibaba.sts_endpoint != defaults.sts_endpoint && !cfg.alibaba.sts_endpoint.empty()) {
        url = cfg.alibaba.sts_endpoint;
    } else if (auto ep = get(env, "ALIBABA_CLOUD_STS_ENDPOINT")) {
        const auto scheme = get(env, "ALIBABA_CLOUD_STS_HTTP_SCHEME").value_or("https");
        url = with_scheme(*ep, lower(scheme));
    } else {
        const bool vpc = cfg.alibaba.use_vpc_endpoints || env_flag(env, "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED");
        std::string sts_region = get(env, "ALIBABA_CLOUD_STS_REGION").value_or("");
        if (sts_region.empty() && vpc) {
            sts_region = std::string(region);  // the VPC endpoint is always regional
        }
        if (sts_region == "cn-hangzhou-finance") {
            sts_region = "cn-hangzhou";  // ack-ram-tool endpoint.go special case
        }
        if (sts_region.empty()) {
            url = defaults.sts_endpoint;
        } else {
            url = std::string("https://") + (vpc ? "sts-vpc." : "sts.") + sts_region + ".aliyuncs.com";
        }
    }
    return apply_endpoint_override(cfg, url);
}

std::string resolve_acr_endpoint(const config::config& cfg, std::string_view region) {
    const config::alibaba_config defaults;
    std::string url = cfg.alibaba.acr_endpoint.empty() ? defaults.acr_endpoint : cfg.alibaba.acr_endpoint;
    if (url == defaults.acr_endpoint && cfg.alibaba.use_vpc_endpoints) {
        url = "https://cr-vpc.{regionId}.aliyuncs.com";  // darabonba GetEndpointRules with network "vpc"
    }
    replace_all(url, "{regionId}", region);
    return apply_endpoint_override(cfg, url);
}

std::string resolve_imds_endpoint(const config::config& cfg, const config::environment& env) {
    const config::alibaba_config defaults;
    std::string url = cfg.alibaba.imds_endpoint;
    if (url.empty() || url == defaults.imds_endpoint) {
        url = with_scheme(get(env, "ALIBABA_CLOUD_IMDS_ENDPOINT").value_or(defaults.imds_endpoint), "http");
    }
    while (!url.empty() && url.back() == '/') {
        url.pop_back();
    }
    return apply_endpoint_override(cfg, url);
}

std::string apply_endpoint_override(const config::config& cfg, std::string url) {
    if (cfg.endpoint_overrides.empty()) {
        return url;
    }
    const auto host = url_host_header(url);
    const auto it = cfg.endpoint_overrides.find(host);
    if (it == cfg.endpoint_overrides.end()) {
        return url;
    }
    const auto& ep = it->second;
    std::string out = ep.scheme + "://";
    out += ep.host.find(':') != std::string::npos ? "[" + ep.host + "]" : ep.host;
    if (ep.port != 0) {
        out += ":" + std::to_string(ep.port);
    }
    out += ep.path;
    while (out.size() > ep.scheme.size() + 3 && out.back() == '/') {
        out.pop_back();
    }
    return out;
}

std::vector<std::string> personal_edition_domains(std::string_view region) {
    if (region.empty()) {
        return {};
    }
    const std::string r(region);
    return {"registry." + r + ".aliyuncs.com", "registry-vpc." + r + ".aliyuncs.com",
            "registry-internal." + r + ".aliyuncs.com", "registry-intl." + r + ".aliyuncs.com"};
}

std::optional<rrsa_settings> instance_rrsa(const config::acr_instance& inst, const config::environment& env) {
    if (inst.rrsa_role_arn.empty()) {
        return std::nullopt;
    }
    rrsa_settings rrsa;
    rrsa.role_arn = inst.rrsa_role_arn;
    rrsa.oidc_provider_arn = !inst.rrsa_oidc_provider_role_arn.empty()
                                 ? inst.rrsa_oidc_provider_role_arn
                                 : first_env(env, {"ALIBABA_CLOUD_OIDC_PROVIDER_ARN"}).value_or("");
    rrsa.token_file = first_env(env, {"ALIBABA_CLOUD_OIDC_TOKEN_FILE"}).value_or(std::string(default_rrsa_token_file));
    return rrsa;
}

std::chrono::seconds sts_session_duration(config::duration d) {
    return std::max(std::chrono::duration_cast<std::chrono::seconds>(d), std::chrono::seconds(900));
}

}  // namespace acp::tokens
