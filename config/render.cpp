// render(): the normalized config in our own YAML format, every default
// filled in. Loading the output again gives an equal config; secrets are
// never part of it (only where they are read from).
#include "config/loader.hpp"

#include <yaml-cpp/yaml.h>

namespace acp::config {
namespace {

void emit_list(YAML::Emitter& out, const std::vector<std::string>& items) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const auto& i : items) {
        out << i;
    }
    out << YAML::EndSeq;
}

// {"*"} is written as the add-on writes it: "all" namespaces, "*" ServiceAccounts.
void emit_names(YAML::Emitter& out, const std::vector<std::string>& names, const char* every) {
    if (names.size() == 1 && names.front() == "*") {
        out << every;
    } else {
        emit_list(out, names);
    }
}

std::string url_string(const endpoint_url& u) {
    const auto host = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
    return u.scheme + "://" + host + ":" + std::to_string(u.port) + u.path;
}

std::string address_string(const listen_address& a) {
    const auto host = a.host.find(':') != std::string::npos ? "[" + a.host + "]" : a.host;
    return host + ":" + std::to_string(a.port);
}

void emit_auth(YAML::Emitter& out, const registry_auth& auth) {
    out << YAML::Key << "auth" << YAML::Value << YAML::BeginMap;
    switch (auth.kind) {
        case auth_kind::anonymous:
            out << YAML::Key << "type" << YAML::Value << "anonymous";
            break;
        case auth_kind::basic:
            out << YAML::Key << "type" << YAML::Value << "basic";
            out << YAML::Key << "username" << YAML::Value << auth.username;
            if (!auth.password_env.empty()) {
                out << YAML::Key << "passwordEnv" << YAML::Value << auth.password_env;
            } else {
                out << YAML::Key << "passwordFile" << YAML::Value << auth.password_file;
            }
            out << YAML::Comment("password: loaded, redacted");
            break;
        case auth_kind::docker_config:
            out << YAML::Key << "type" << YAML::Value << "dockerConfig";
            out << YAML::Key << "path" << YAML::Value << auth.docker_config_path;
            break;
    }
    out << YAML::EndMap;
}

const char* http2_string(http2_mode m) {
    switch (m) {
        case http2_mode::automatic:
            return "auto";
        case http2_mode::on:
            return "on";
        case http2_mode::off:
            return "off";
    }
    return "auto";
}

}  // namespace

std::string render(const config& cfg) {
    YAML::Emitter out;
    out.SetIndent(2);
    out << YAML::Comment(
        "acr-credential-proxy configuration, normalized: every default filled in, secrets "
        "never shown");
    out << YAML::Newline;
    if (!cfg.source.empty()) {
        out << YAML::Comment("loaded from " + cfg.source) << YAML::Newline;
    }
    out << YAML::BeginMap;
    out << YAML::Key << "listen" << YAML::Value << address_string(cfg.listen);
    out << YAML::Key << "adminListen" << YAML::Value << address_string(cfg.admin_listen);
    if (cfg.tls_listen) {
        out << YAML::Key << "tlsListen" << YAML::Value << address_string(*cfg.tls_listen);
        out << YAML::Key << "tlsCertFile" << YAML::Value << cfg.tls_cert_file;
        out << YAML::Key << "tlsKeyFile" << YAML::Value << cfg.tls_key_file;
    }
    out << YAML::Key << "expiringThreshold" << YAML::Value << format_duration(cfg.expiring_threshold);
    out << YAML::Key << "followRedirects" << YAML::Value << cfg.follow_redirects;

    out << YAML::Key << "log" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "level" << YAML::Value << cfg.log.level;
    out << YAML::Key << "format" << YAML::Value << (cfg.log.format == log_format::json ? "json" : "text");
    out << YAML::EndMap;

    const auto& a = cfg.alibaba;
    out << YAML::Key << "alibaba" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "regionId" << YAML::Value << a.region_id;
    if (a.region_id.empty()) {
        out << YAML::Comment("from instance metadata");
    }
    out << YAML::Key << "imdsEndpoint" << YAML::Value << a.imds_endpoint;
    out << YAML::Key << "stsEndpoint" << YAML::Value << a.sts_endpoint;
    out << YAML::Key << "acrEndpoint" << YAML::Value << a.acr_endpoint;
    out << YAML::Key << "useVpcEndpoints" << YAML::Value << a.use_vpc_endpoints;
    out << YAML::Key << "accessKeyIdFile" << YAML::Value << a.access_key_id_file;
    out << YAML::Key << "accessKeySecretFile" << YAML::Value << a.access_key_secret_file;
    out << YAML::Key << "securityTokenFile" << YAML::Value << a.security_token_file;
    out << YAML::Key << "ecsRoleName" << YAML::Value << a.ecs_role_name;
    if (a.ecs_role_name.empty()) {
        out << YAML::Comment("discovered from instance metadata");
    }
    out << YAML::Key << "ecsMetadataDisabled" << YAML::Value << a.ecs_metadata_disabled;
    out << YAML::Key << "imdsV1Disabled" << YAML::Value << a.imdsv1_disabled;
    out << YAML::Key << "imdsTokenTTL" << YAML::Value << format_duration(a.imds_token_ttl);
    out << YAML::Key << "stsDuration" << YAML::Value << format_duration(a.sts_duration);
    out << YAML::Key << "apiTimeout" << YAML::Value << format_duration(a.api_timeout);
    out << YAML::Key << "firstCredentialWait" << YAML::Value << format_duration(a.first_credential_wait);
    out << YAML::Key << "refreshBackoffInitial" << YAML::Value << format_duration(a.refresh_backoff_initial);
    out << YAML::Key << "refreshBackoffMax" << YAML::Value << format_duration(a.refresh_backoff_max);
    out << YAML::Key << "endpointRelistInterval" << YAML::Value << format_duration(a.endpoint_relist_interval);
    out << YAML::EndMap;

    out << YAML::Key << "acrInstances" << YAML::Value;
    if (cfg.acr_instances.empty()) {
        out << YAML::Flow;
    }
    out << YAML::BeginSeq;
    for (const auto& i : cfg.acr_instances) {
        out << YAML::BeginMap;
        out << YAML::Key << "instanceId" << YAML::Value << i.instance_id;
        if (i.instance_id.empty()) {
            out << YAML::Comment("Personal Edition");
        }
        out << YAML::Key << "regionId" << YAML::Value << i.region_id;
        if (i.region_id.empty()) {
            out << YAML::Comment("the node's region");
        }
        out << YAML::Key << "domains" << YAML::Value;
        emit_list(out, i.domains);
        if (i.domains.empty()) {
            out << YAML::Comment("discovered with ListInstanceEndpoint");
        }
        out << YAML::Key << "assumeRoleARN" << YAML::Value << i.assume_role_arn;
        out << YAML::Key << "expireDuration" << YAML::Value << format_duration(i.expire_duration);
        out << YAML::Key << "roleSessionName" << YAML::Value << i.role_session_name;
        out << YAML::Key << "rrsaRoleARN" << YAML::Value << i.rrsa_role_arn;
        out << YAML::Key << "rrsaOIDCProviderRoleARN" << YAML::Value << i.rrsa_oidc_provider_role_arn;
        out << YAML::Key << "realmHosts" << YAML::Value;
        emit_list(out, i.realm_hosts);
        out << YAML::Key << "http2" << YAML::Value << http2_string(i.http2);
        out << YAML::EndMap;
    }
    out << YAML::EndSeq;

    out << YAML::Key << "registries" << YAML::Value;
    if (cfg.registries.empty()) {
        out << YAML::Flow;
    }
    out << YAML::BeginSeq;
    for (const auto& r : cfg.registries) {
        out << YAML::BeginMap;
        out << YAML::Key << "host" << YAML::Value << r.host;
        emit_auth(out, r.auth);
        out << YAML::Key << "caFile" << YAML::Value << r.ca_file;
        out << YAML::Key << "insecureSkipVerify" << YAML::Value << r.insecure_skip_verify;
        out << YAML::Key << "realmHosts" << YAML::Value;
        emit_list(out, r.realm_hosts);
        if (r.realm_hosts.empty()) {
            out << YAML::Comment("the registry host only");
        }
        out << YAML::Key << "http2" << YAML::Value << http2_string(r.http2);
        out << YAML::EndMap;
    }
    out << YAML::EndSeq;

    out << YAML::Key << "defaultRegistry" << YAML::Value << cfg.default_registry;
    if (cfg.default_registry.empty()) {
        out << YAML::Comment("requests without ?ns= get 404");
    }
    out << YAML::Key << "endpointOverrides" << YAML::Value;
    if (cfg.endpoint_overrides.empty()) {
        out << YAML::Flow;
    }
    out << YAML::BeginMap;
    for (const auto& [host, url] : cfg.endpoint_overrides) {
        out << YAML::Key << host << YAML::Value << url_string(url);
    }
    out << YAML::EndMap;

    out << YAML::Key << "scope" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "enabled" << YAML::Value << cfg.scope.enabled;
    if (!cfg.scope.enabled) {
        out << YAML::Comment("unscoped: every pod on this node may pull");
    }
    out << YAML::Key << "namespaces" << YAML::Value;
    emit_names(out, cfg.scope.namespaces, "all");
    out << YAML::Key << "serviceAccounts" << YAML::Value;
    emit_names(out, cfg.scope.service_accounts, "*");
    out << YAML::Key << "waitForPod" << YAML::Value << format_duration(cfg.scope.wait_for_pod);
    out << YAML::EndMap;

    const auto& t = cfg.timeouts;
    out << YAML::Key << "timeouts" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "headerRead" << YAML::Value << format_duration(t.header_read);
    out << YAML::Key << "idle" << YAML::Value << format_duration(t.idle);
    out << YAML::Key << "upstreamConnect" << YAML::Value << format_duration(t.upstream_connect);
    out << YAML::Key << "upstreamHeaders" << YAML::Value << format_duration(t.upstream_headers);
    out << YAML::Key << "upstreamIdle" << YAML::Value << format_duration(t.upstream_idle);
    out << YAML::Key << "shutdownGrace" << YAML::Value << format_duration(t.shutdown_grace);
    out << YAML::EndMap;

    out << YAML::Key << "limits" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "maxConnections" << YAML::Value << cfg.limits.max_connections;
    out << YAML::Key << "maxIdleUpstreamPerHost" << YAML::Value << cfg.limits.max_idle_upstream_per_host;
    out << YAML::Key << "maxConcurrentStreams" << YAML::Value << cfg.limits.max_concurrent_streams;
    out << YAML::EndMap;
    out << YAML::EndMap;
    return std::string(out.c_str()) + "\n";
}

}  // namespace acp::config
