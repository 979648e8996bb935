// Our own YAML format (`--config FILE`): keys, types, per-value checks.
// Cross-section checks (duplicate hosts, defaultRegistry, ...) are in validate.cpp.
#include "config/load_stages.hpp"
#include "config/values.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>

namespace acp::config {
namespace {

constexpr std::array<std::string_view, 16> top_keys{
    "listen",   "adminListen", "tlsListen",    "tlsCertFile", "tlsKeyFile",      "expiringThreshold", "followRedirects",
    "log",      "alibaba",     "acrInstances", "registries",  "defaultRegistry", "endpointOverrides", "scope",
    "timeouts", "limits",
};
constexpr std::array<std::string_view, 2> log_keys{"level", "format"};
constexpr std::array<std::string_view, 18> alibaba_keys{
    "regionId",
    "imdsEndpoint",
    "stsEndpoint",
    "acrEndpoint",
    "useVpcEndpoints",
    "accessKeyIdFile",
    "accessKeySecretFile",
    "securityTokenFile",
    "ecsRoleName",
    "ecsMetadataDisabled",
    "imdsV1Disabled",
    "imdsTokenTTL",
    "stsDuration",
    "apiTimeout",
    "firstCredentialWait",
    "refreshBackoffInitial",
    "refreshBackoffMax",
    "endpointRelistInterval",
};

duration_rule make_range_rule(duration min, duration max) {
    duration_rule r;
    r.min = min;
    r.max = max;
    return r;
}
constexpr std::array<std::string_view, 10> instance_keys{
    "instanceId",      "regionId",    "domains",    "assumeRoleARN",           "expireDuration",
    "roleSessionName", "rrsaRoleARN", "realmHosts", "rrsaOIDCProviderRoleARN", "http2",
};
// The add-on's acr-registry-info entries: ours minus realmHosts.
constexpr std::array<std::string_view, 8> addon_instance_keys{
    "instanceId",     "regionId",        "domains",     "assumeRoleARN",
    "expireDuration", "roleSessionName", "rrsaRoleARN", "rrsaOIDCProviderRoleARN",
};
constexpr std::array<std::string_view, 6> registry_keys{"host",       "auth", "caFile", "insecureSkipVerify",
                                                        "realmHosts", "http2"};
constexpr std::array<std::string_view, 5> auth_keys{"type", "username", "passwordFile", "passwordEnv", "path"};
constexpr std::array<std::string_view, 4> scope_keys{"enabled", "namespaces", "serviceAccounts", "waitForPod"};
constexpr std::array<std::string_view, 6> timeout_keys{"headerRead",      "idle",         "upstreamConnect",
                                                       "upstreamHeaders", "upstreamIdle", "shutdownGrace"};
constexpr std::array<std::string_view, 3> limit_keys{"maxConnections", "maxIdleUpstreamPerHost",
                                                     "maxConcurrentStreams"};
constexpr std::array<std::string_view, 7> log_levels{"trace", "debug", "info", "warn", "error", "critical", "off"};

duration_rule make_floor_rule(bool inclusive) {
    duration_rule r;
    r.min_inclusive = inclusive;
    return r;
}
const duration_rule positive_rule = make_floor_rule(false);
const duration_rule non_negative_rule = make_floor_rule(true);
// A pull held for its pod must still get its answer headers well inside
// containerd's 30 s (2.3+), upstream time included.
const duration_rule wait_for_pod_rule{.min = duration::zero(),
                                      .min_inclusive = true,
                                      .max = std::chrono::seconds(20),
                                      .max_inclusive = true,
                                      .bare_number_is_seconds = false};

using member_map = std::map<std::string, node_ref>;

const node_ref* get(const member_map& m, std::string_view key) {
    const auto it = m.find(std::string(key));
    return it == m.end() ? nullptr : &it->second;
}

where missing(const node_ref& parent, std::string_view key) {
    auto w = parent.at();
    w.key = parent.path.empty() ? std::string(key) : parent.path + "." + std::string(key);
    return w;
}

std::string join(std::span<const std::string_view> items) {
    std::string out;
    for (auto s : items) {
        out += (out.empty() ? "" : ", ") + std::string(s);
    }
    return out;
}

// ---- single values --------------------------------------------------------

void read_listen(const node_ref& n, listen_address& out, bool admin, load_context& ctx) {
    const auto text = read_string(n, ctx.diags);
    if (!text) {
        ctx.origins.listeners_valid = false;
        return;
    }
    const auto addr = parse_listen_address(*text);
    if (!addr) {
        ctx.diags.error(n.at(), quote(*text) +
                                    " is not HOST:PORT with an IP literal host; expected e.g. \"127.0.0.1:5005\" or "
                                    "\"[::1]:5005\" (port 0-65535)");
        ctx.origins.listeners_valid = false;
        return;
    }
    if (!is_loopback_ip(addr->host)) {
        ctx.diags.warn(n.at(), quote(*text) + " is not a loopback address: " +
                                   (admin ? "the admin endpoints (/metrics) will be reachable from the network"
                                          : "other machines can reach the registry proxy and use its credentials") +
                                   "; use 127.0.0.1 or [::1] unless that is intended");
    }
    out = *addr;
}

// `http2: auto | on | off`.
void read_http2(const node_ref& n, http2_mode& out, load_context& ctx) {
    const auto text = read_string(n, ctx.diags);
    if (!text) {
        return;
    }
    if (*text == "auto") {
        out = http2_mode::automatic;
    } else if (*text == "on") {
        out = http2_mode::on;
    } else if (*text == "off") {
        out = http2_mode::off;
    } else {
        ctx.diags.error(n.at(), quote(*text) + " is not an HTTP/2 mode; expected auto, on or off");
    }
}

// A PEM file the TLS listener needs: readable, with the block it must hold.
void read_pem_path(const node_ref& n, std::string_view block, std::string& out, load_context& ctx) {
    const auto path = read_string(n, ctx.diags);
    if (!path) {
        return;
    }
    const auto content = ctx.env.read_file(*path);
    if (!content) {
        ctx.diags.error(n.at(), "cannot read " + quote(*path) + "; expected a readable PEM file");
    } else if (content->find("-----BEGIN ") == std::string::npos ||
               (block == "CERTIFICATE" && content->find("-----BEGIN CERTIFICATE-----") == std::string::npos) ||
               (block == "PRIVATE KEY" && content->find("PRIVATE KEY-----") == std::string::npos)) {
        ctx.diags.error(n.at(), quote(*path) + " holds no " + std::string(block) +
                                    "; expected a PEM file with a \"-----BEGIN " + std::string(block) +
                                    "-----\" block");
    } else {
        out = *path;
    }
}

std::optional<std::string> read_host(const node_ref& n, load_context& ctx) {
    const auto text = read_string(n, ctx.diags);
    if (!text) {
        return std::nullopt;
    }
    auto host = normalize_host(*text);
    if (!host) {
        ctx.diags.error(n.at(), quote(*text) +
                                    " is not a valid registry host; expected a DNS name or IP literal with an "
                                    "optional :PORT, no scheme or path (e.g. \"registry.example.com\")");
    }
    return host;
}

std::optional<std::string> read_endpoint(const node_ref& n, bool region_template, load_context& ctx) {
    auto text = read_string(n, ctx.diags);
    if (!text) {
        return std::nullopt;
    }
    std::string probe = *text;
    if (region_template) {
        for (std::size_t p; (p = probe.find("{regionId}")) != std::string::npos;) {
            probe.replace(p, std::string_view("{regionId}").size(), "cn-hangzhou");
        }
    }
    if (!parse_endpoint_url(probe)) {
        ctx.diags.error(n.at(), quote(*text) +
                                    " is not an endpoint URL; expected http:// or https:// followed by a host" +
                                    std::string(region_template ? " (which may contain {regionId})" : "") +
                                    ", an optional :PORT and path");
        return std::nullopt;
    }
    return text;
}

// A file path whose contents are read only to check they can be (never shown).
bool check_readable(const node_ref& n, const std::string& path, std::string_view what, load_context& ctx) {
    const auto content = ctx.env.read_file(path);
    if (!content) {
        ctx.diags.error(n.at(), "cannot read " + quote(path) + "; expected a readable " + std::string(what));
        return false;
    }
    if (trim(*content).empty()) {
        ctx.diags.error(n.at(), quote(path) + " is empty; expected " + std::string(what));
        return false;
    }
    return true;
}

std::optional<std::vector<std::string>> read_realm_hosts(const node_ref& n, load_context& ctx) {
    const auto items = read_list(n, ctx.diags);
    if (!items) {
        return std::nullopt;
    }
    std::vector<std::string> out;
    bool ok = true;
    for (const auto& item : *items) {
        const auto v = to_lower(item.value);
        if (!is_host_pattern(v)) {
            ctx.diags.error(item.at, quote(item.value) +
                                         " is not a realm host; expected an exact host (\"auth.example.com\") or "
                                         "\"*.suffix\" with at least two labels (\"*.aliyuncs.com\")");
            ok = false;
        } else if (std::find(out.begin(), out.end(), v) == out.end()) {
            out.push_back(v);
        }
    }
    if (!ok) {
        return std::nullopt;
    }
    return out;
}

std::optional<std::string> read_arn(const node_ref& n, std::string_view resource, load_context& ctx) {
    auto text = read_string(n, ctx.diags);
    if (!text || text->empty()) {
        return text;
    }
    if (!is_ram_arn(*text) || text->find(":" + std::string(resource) + "/") == std::string::npos) {
        ctx.diags.error(n.at(), quote(*text) + " is not a RAM " + std::string(resource) + " ARN; expected \"acs:ram::" +
                                    "<account-id>:" + std::string(resource) + "/<name>\"");
        return std::nullopt;
    }
    return text;
}

// ---- sections -------------------------------------------------------------

void read_log(const node_ref& n, log_config& out, load_context& ctx) {
    const auto m = members(n, log_keys, ctx.diags);
    if (const auto* v = get(m, "level")) {
        if (const auto s = read_string(*v, ctx.diags)) {
            const auto level = to_lower(*s);
            if (std::find(log_levels.begin(), log_levels.end(), level) == log_levels.end()) {
                ctx.diags.error(v->at(), quote(*s) + " is not a log level; expected one of " + join(log_levels));
            } else {
                out.level = level;
            }
        }
    }
    if (const auto* v = get(m, "format")) {
        if (const auto s = read_string(*v, ctx.diags)) {
            if (*s == "text") {
                out.format = log_format::text;
            } else if (*s == "json") {
                out.format = log_format::json;
            } else {
                ctx.diags.error(v->at(), quote(*s) + " is not a log format; expected text or json");
            }
        }
    }
}

void read_alibaba(const node_ref& n, alibaba_config& out, load_context& ctx) {
    const auto m = members(n, alibaba_keys, ctx.diags);
    if (const auto* v = get(m, "regionId")) {
        if (const auto s = read_string(*v, ctx.diags)) {
            if (!s->empty() && !is_region_id(*s)) {
                ctx.diags.error(v->at(), quote(*s) +
                                             " is not a region id; expected e.g. \"cn-hangzhou\", or empty "
                                             "for the node's region from instance metadata");
            } else {
                out.region_id = *s;
            }
        }
    }
    if (const auto* v = get(m, "imdsEndpoint")) {
        if (auto s = read_endpoint(*v, false, ctx)) {
            out.imds_endpoint = *s;
        }
    }
    if (const auto* v = get(m, "stsEndpoint")) {
        if (auto s = read_endpoint(*v, false, ctx)) {
            out.sts_endpoint = *s;
        }
    }
    if (const auto* v = get(m, "acrEndpoint")) {
        if (auto s = read_endpoint(*v, true, ctx)) {
            out.acr_endpoint = *s;
        }
    }
    if (const auto* v = get(m, "useVpcEndpoints")) {
        if (auto b = read_bool(*v, ctx.diags)) {
            out.use_vpc_endpoints = *b;
        }
    }
    struct file_key {
        std::string_view key;
        std::string alibaba_config::*field;
        std::string_view what;
    };
    const std::array<file_key, 3> files{{
        {"accessKeyIdFile", &alibaba_config::access_key_id_file, "file holding the AccessKey ID"},
        {"accessKeySecretFile", &alibaba_config::access_key_secret_file, "file holding the AccessKey secret"},
        {"securityTokenFile", &alibaba_config::security_token_file, "file holding the STS security token"},
    }};
    for (const auto& f : files) {
        if (const auto* v = get(m, f.key)) {
            if (const auto s = read_string(*v, ctx.diags); s && !s->empty() && check_readable(*v, *s, f.what, ctx)) {
                out.*f.field = *s;
            }
        }
    }
    if (const auto* v = get(m, "ecsRoleName")) {
        if (const auto r = read_string(*v, ctx.diags)) {
            out.ecs_role_name = *r;
        }
    }
    if (const auto* v = get(m, "ecsMetadataDisabled")) {
        if (auto b = read_bool(*v, ctx.diags)) {
            out.ecs_metadata_disabled = *b;
        }
    }
    if (const auto* v = get(m, "imdsV1Disabled")) {
        if (auto b = read_bool(*v, ctx.diags)) {
            out.imdsv1_disabled = *b;
        }
    }
    struct duration_key {
        std::string_view key;
        duration alibaba_config::*field;
        duration_rule rule;
    };
    using std::chrono::hours;
    using std::chrono::minutes;
    using std::chrono::seconds;
    const std::array<duration_key, 7> durations{{
        // IMDS token TTL header: 1..21600 s; STS DurationSeconds: 900..43200 s.
        {"imdsTokenTTL", &alibaba_config::imds_token_ttl, make_range_rule(seconds(1), hours(6))},
        {"stsDuration", &alibaba_config::sts_duration, make_range_rule(minutes(15), hours(12))},
        {"apiTimeout", &alibaba_config::api_timeout, make_range_rule(std::chrono::milliseconds(1), minutes(5))},
        {"firstCredentialWait", &alibaba_config::first_credential_wait, make_range_rule(duration::zero(), minutes(5))},
        {"refreshBackoffInitial", &alibaba_config::refresh_backoff_initial,
         make_range_rule(std::chrono::milliseconds(1), hours(1))},
        {"refreshBackoffMax", &alibaba_config::refresh_backoff_max,
         make_range_rule(std::chrono::milliseconds(1), hours(1))},
        {"endpointRelistInterval", &alibaba_config::endpoint_relist_interval, make_range_rule(seconds(1), hours(24))},
    }};
    for (const auto& d : durations) {
        if (const auto* v = get(m, d.key)) {
            if (auto got = read_duration(*v, d.rule, ctx.diags)) {
                out.*d.field = *got;
            }
        }
    }
    if (out.refresh_backoff_initial > out.refresh_backoff_max) {
        ctx.diags.error(n.at(), "refreshBackoffInitial " + format_duration(out.refresh_backoff_initial) +
                                    " is above refreshBackoffMax " + format_duration(out.refresh_backoff_max) +
                                    "; expected initial <= max");
    }
    const bool id = get(m, "accessKeyIdFile") != nullptr;
    const bool key = get(m, "accessKeySecretFile") != nullptr;
    if (id != key) {
        ctx.diags.error(missing(n, id ? "accessKeySecretFile" : "accessKeyIdFile"),
                        "missing; expected accessKeyIdFile and accessKeySecretFile together");
    }
    if (get(m, "securityTokenFile") != nullptr && !(id && key)) {
        ctx.diags.error(get(m, "securityTokenFile")->at(),
                        "set without accessKeyIdFile and accessKeySecretFile; expected all three for STS credentials");
    }
}

void read_registry_auth(const node_ref& n, const std::string& host, registry_auth& out, load_context& ctx) {
    const auto m = members(n, auth_keys, ctx.diags);
    if (!n.node.IsMap()) {
        return;  // reported by members()
    }
    const auto* type_node = get(m, "type");
    if (type_node == nullptr) {
        ctx.diags.error(missing(n, "type"), "missing; expected basic, anonymous or dockerConfig");
        return;
    }
    const auto type = read_string(*type_node, ctx.diags);
    if (!type) {
        return;
    }
    auto not_for = [&](std::string_view key, std::string_view used_with) {
        if (const auto* v = get(m, key)) {
            ctx.diags.error(
                v->at(), "not used with type " + quote(*type) + "; expected only with type " + std::string(used_with));
        }
    };
    if (*type == "anonymous") {
        out.kind = auth_kind::anonymous;
        not_for("username", "basic");
        not_for("passwordFile", "basic");
        not_for("passwordEnv", "basic");
        not_for("path", "dockerConfig");
    } else if (*type == "basic") {
        out.kind = auth_kind::basic;
        not_for("path", "dockerConfig");
        if (const auto* u = get(m, "username")) {
            if (const auto s = read_string(*u, ctx.diags)) {
                if (s->empty() || s->find(':') != std::string::npos ||
                    std::any_of(s->begin(), s->end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
                    ctx.diags.error(u->at(), quote(*s) +
                                                 " is not a usable username; expected a non-empty name "
                                                 "without ':' or control characters");
                } else {
                    out.username = *s;
                }
            }
        } else {
            ctx.diags.error(missing(n, "username"), "missing; expected the user name for type basic");
        }
        const auto* file = get(m, "passwordFile");
        const auto* env = get(m, "passwordEnv");
        if ((file == nullptr) == (env == nullptr)) {
            ctx.diags.error(file != nullptr ? env->at() : missing(n, "passwordFile"),
                            file != nullptr ? "set together with passwordFile; expected exactly one of passwordFile "
                                              "or passwordEnv"
                                            : "missing; expected passwordFile (a file holding the password) or "
                                              "passwordEnv (an environment variable holding it)");
        } else if (file != nullptr) {
            if (const auto path = read_string(*file, ctx.diags)) {
                out.password_file = *path;
                auto content = path->empty() ? std::nullopt : ctx.env.read_file(*path);
                if (!content) {
                    ctx.diags.error(file->at(),
                                    "cannot read " + quote(*path) + "; expected a readable file holding the password");
                } else {
                    if (content->ends_with("\r\n")) {
                        content->resize(content->size() - 2);
                    } else if (content->ends_with('\n')) {
                        content->pop_back();
                    }
                    if (content->empty()) {
                        ctx.diags.error(file->at(), "the password file " + quote(*path) +
                                                        " is empty; expected the password (one trailing newline "
                                                        "is stripped)");
                    }
                    out.password = secret(std::move(*content));
                }
            }
        } else if (const auto name = read_string(*env, ctx.diags)) {
            out.password_env = *name;
            const bool valid_name =
                !name->empty() && !(name->front() >= '0' && name->front() <= '9') &&
                std::all_of(name->begin(), name->end(), [](char c) {
                    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                });
            const auto value = valid_name ? ctx.env.getenv(*name) : std::nullopt;
            if (!valid_name) {
                ctx.diags.error(env->at(), quote(*name) +
                                               " is not an environment variable name; expected letters, "
                                               "digits and '_' (e.g. REGISTRY_PASSWORD)");
            } else if (!value) {
                ctx.diags.error(env->at(), "the environment variable " + quote(*name) +
                                               " is not set; expected it to hold the password");
            } else if (value->empty()) {
                ctx.diags.error(env->at(), "the environment variable " + quote(*name) +
                                               " is empty; expected it to hold the password");
            } else {
                out.password = secret(*value);
            }
        }
    } else if (*type == "dockerConfig") {
        out.kind = auth_kind::docker_config;
        not_for("username", "basic");
        not_for("passwordFile", "basic");
        not_for("passwordEnv", "basic");
        const auto* p = get(m, "path");
        if (p == nullptr) {
            ctx.diags.error(missing(n, "path"), "missing; expected the path of a Docker config.json");
            return;
        }
        const auto path = read_string(*p, ctx.diags);
        if (!path) {
            return;
        }
        out.docker_config_path = *path;
        const auto content = path->empty() ? std::nullopt : ctx.env.read_file(*path);
        if (!content) {
            ctx.diags.error(p->at(), "cannot read " + quote(*path) + "; expected a readable Docker config.json");
            return;
        }
        // Never show the parser's message: it may quote the file, which holds credentials.
        const auto json = nlohmann::json::parse(*content, nullptr, false);
        if (json.is_discarded() || !json.is_object() || !json.contains("auths") || !json["auths"].is_object()) {
            ctx.diags.error(p->at(), quote(*path) + " is not a Docker config; expected JSON with an \"auths\" object");
            return;
        }
        bool has_host = false;
        for (const auto& item : json["auths"].items()) {
            auto k = to_lower(item.key());
            for (std::string_view scheme : {"https://", "http://"}) {
                if (k.starts_with(scheme)) {
                    k.erase(0, scheme.size());
                }
            }
            k = k.substr(0, k.find('/'));
            has_host = has_host || k == host;
        }
        if (!has_host && !host.empty()) {
            ctx.diags.warn(p->at(), quote(*path) + " has no \"auths\" entry for " + quote(host) +
                                        "; requests to it will go out without credentials");
        }
    } else {
        ctx.diags.error(type_node->at(), quote(*type) +
                                             " is not an auth type; expected basic, anonymous or "
                                             "dockerConfig");
    }
}

void read_registry(const node_ref& n, config& cfg, load_context& ctx) {
    const auto m = members(n, registry_keys, ctx.diags);
    if (!n.node.IsMap()) {
        return;
    }
    registry r;
    where host_at = missing(n, "host");
    if (const auto* v = get(m, "host")) {
        host_at = v->at();
        if (auto h = read_host(*v, ctx)) {
            r.host = *h;
        }
    } else {
        ctx.diags.error(host_at, "missing; expected the registry host, e.g. \"registry.example.com\"");
    }
    if (const auto* v = get(m, "auth")) {
        read_registry_auth(*v, r.host, r.auth, ctx);
    }
    if (const auto* v = get(m, "caFile")) {
        if (const auto path = read_string(*v, ctx.diags); path && !path->empty()) {
            const auto content = ctx.env.read_file(*path);
            if (!content) {
                ctx.diags.error(v->at(), "cannot read " + quote(*path) +
                                             "; expected a readable PEM file of CA "
                                             "certificates");
            } else if (content->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
                ctx.diags.error(v->at(), quote(*path) +
                                             " holds no certificate; expected a PEM file with at least "
                                             "one \"-----BEGIN CERTIFICATE-----\" block");
            } else {
                r.ca_file = *path;
            }
        }
    }
    if (const auto* v = get(m, "insecureSkipVerify")) {
        if (auto b = read_bool(*v, ctx.diags)) {
            r.insecure_skip_verify = *b;
            if (*b) {
                ctx.diags.warn(v->at(), "TLS certificates of " + quote(r.host) +
                                            " are not verified: anyone on the path can read the credentials sent "
                                            "to it; prefer caFile");
            }
        }
    }
    if (const auto* v = get(m, "realmHosts")) {
        if (auto hosts = read_realm_hosts(*v, ctx)) {
            r.realm_hosts = std::move(*hosts);
        }
    }
    if (const auto* v = get(m, "http2")) {
        read_http2(*v, r.http2, ctx);
    }
    cfg.registries.push_back(std::move(r));
    ctx.origins.registry_hosts.push_back(host_at);
}

// A `scope` section turns the pull scope on (defaults: namespace and
// ServiceAccount `default`) unless it says `enabled: false`; without the
// section the proxy serves every pod (and says so at start-up).
void read_scope(const node_ref& n, scope_config& out, load_context& ctx) {
    const auto m = members(n, scope_keys, ctx.diags);
    out.enabled = true;
    if (const auto* v = get(m, "enabled")) {
        if (auto b = read_bool(*v, ctx.diags)) {
            out.enabled = *b;
        }
    }
    auto names = [&](std::string_view key, bool subdomain, std::vector<std::string>& field) {
        const auto* v = get(m, key);
        if (v == nullptr) {
            return;
        }
        const auto items = read_list(*v, ctx.diags);
        if (!items) {
            return;
        }
        auto checked = check_scope_names(*items, subdomain, ctx.diags);
        if (!checked) {
            return;
        }
        if (checked->empty()) {
            ctx.diags.error(v->at(), std::string("empty; expected ") + (subdomain ? "\"*\"" : "\"all\"") +
                                         " or at least one " + (subdomain ? "ServiceAccount" : "namespace") + " name");
            return;
        }
        field = std::move(*checked);
    };
    names("namespaces", false, out.namespaces);
    names("serviceAccounts", true, out.service_accounts);
    if (const auto* v = get(m, "waitForPod")) {
        if (auto d = read_duration(*v, wait_for_pod_rule, ctx.diags)) {
            out.wait_for_pod = *d;
        }
    }
}

void read_timeouts(const node_ref& n, timeout_config& out, load_context& ctx) {
    const auto m = members(n, timeout_keys, ctx.diags);
    struct field {
        std::string_view key;
        duration timeout_config::*member;
        const duration_rule* rule;
    };
    const std::array<field, 6> fields{{
        {"headerRead", &timeout_config::header_read, &positive_rule},
        {"idle", &timeout_config::idle, &positive_rule},
        {"upstreamConnect", &timeout_config::upstream_connect, &positive_rule},
        {"upstreamHeaders", &timeout_config::upstream_headers, &positive_rule},
        {"upstreamIdle", &timeout_config::upstream_idle, &positive_rule},
        {"shutdownGrace", &timeout_config::shutdown_grace, &non_negative_rule},
    }};
    for (const auto& f : fields) {
        if (const auto* v = get(m, f.key)) {
            if (auto d = read_duration(*v, *f.rule, ctx.diags)) {
                out.*f.member = *d;
                if (f.key == "upstreamHeaders" && *d >= std::chrono::seconds(30)) {
                    ctx.diags.warn(v->at(), quote(v->node.Scalar()) +
                                                " is not below 30s: containerd 2.3 and later give up on a mirror "
                                                "after 30s without response headers, before this timeout fires");
                }
            }
        }
    }
}

void read_limits(const node_ref& n, limit_config& out, load_context& ctx) {
    const auto m = members(n, limit_keys, ctx.diags);
    if (const auto* v = get(m, "maxConnections")) {
        if (auto u = read_uint(*v, 1, ctx.diags)) {
            out.max_connections = *u;
        }
    }
    if (const auto* v = get(m, "maxIdleUpstreamPerHost")) {
        if (auto u = read_uint(*v, 0, ctx.diags)) {
            out.max_idle_upstream_per_host = *u;
        }
    }
    if (const auto* v = get(m, "maxConcurrentStreams")) {
        if (auto u = read_uint(*v, 1, ctx.diags)) {
            if (*u > 1000) {
                ctx.diags.error(v->at(),
                                std::to_string(*u) + " is too many; expected 1 to 1000 streams per connection");
            } else {
                out.max_concurrent_streams = *u;
            }
        }
    }
}

void read_endpoint_overrides(const node_ref& n, config& cfg, load_context& ctx) {
    if (n.node.IsNull()) {
        return;
    }
    if (!n.node.IsMap()) {
        ctx.diags.error(n.at(), "expected a mapping of registry host to URL, got " + kind_of(n.node));
        return;
    }
    for (const auto& kv : n.node) {
        if (!kv.first.IsScalar()) {
            ctx.diags.error(n.at(), "expected a registry host as key, got " + kind_of(kv.first));
            continue;
        }
        const auto& key = kv.first.Scalar();
        const node_ref v{kv.second, n.path + "[" + quote(key) + "]", n.doc};
        const auto host = normalize_host(key);
        if (!host) {
            ctx.diags.error(node_ref{kv.first, v.path, n.doc}.at(),
                            quote(key) +
                                " is not a valid registry host; expected a DNS name or IP literal with "
                                "an optional :PORT");
            continue;
        }
        const auto text = read_string(v, ctx.diags);
        if (!text) {
            continue;
        }
        const auto url = parse_endpoint_url(*text);
        if (!url) {
            ctx.diags.error(v.at(), quote(*text) +
                                        " is not an endpoint URL; expected http://HOST[:PORT][/PATH] or "
                                        "https://HOST[:PORT][/PATH] (scheme explicit)");
            continue;
        }
        if (!cfg.endpoint_overrides.emplace(*host, *url).second) {
            ctx.diags.error(v.at(), quote(key) + " is overridden twice; expected each host once");
            continue;
        }
        ctx.origins.endpoint_overrides[*host] = node_ref{kv.first, v.path, n.doc}.at();
    }
}

}  // namespace

std::optional<instance_read> read_acr_instance(const node_ref& n, instance_form form, load_context& ctx) {
    const auto m =
        form == instance_form::ours ? members(n, instance_keys, ctx.diags) : members(n, addon_instance_keys, ctx.diags);
    if (!n.node.IsMap()) {
        return std::nullopt;
    }
    instance_read r;
    r.at = n.at();
    auto& inst = r.instance;
    if (const auto* v = get(m, "instanceId")) {
        if (auto s = read_string(*v, ctx.diags)) {
            inst.instance_id = *s;
            if (!s->empty() && !s->starts_with("cri-")) {
                ctx.diags.warn(v->at(), quote(*s) +
                                            " does not look like an Enterprise Edition instance id (\"cri-...\"); "
                                            "leave instanceId empty for a Personal Edition instance");
            }
        }
    }
    if (const auto* v = get(m, "regionId")) {
        if (auto s = read_string(*v, ctx.diags)) {
            if (!s->empty() && !is_region_id(*s)) {
                ctx.diags.error(v->at(), quote(*s) +
                                             " is not a region id; expected e.g. \"cn-hangzhou\", or empty "
                                             "for the node's region");
            } else {
                inst.region_id = *s;
            }
        }
    }
    if (const auto* v = get(m, "domains")) {
        if (const auto items = read_list(*v, ctx.diags)) {
            for (const auto& item : *items) {
                const auto host = normalize_host(item.value);
                if (!host) {
                    ctx.diags.error(item.at,
                                    quote(item.value) +
                                        " is not a valid registry domain; expected a DNS name with an optional "
                                        ":PORT, no scheme or path (e.g. \"a-registry.cn-hangzhou.cr.aliyuncs.com\")");
                    continue;
                }
                inst.domains.push_back(*host);
                r.domain_origins.push_back(item.at);
            }
        }
    }
    if (const auto* v = get(m, "assumeRoleARN")) {
        if (auto s = read_arn(*v, "role", ctx)) {
            inst.assume_role_arn = *s;
            r.has_assume_role_arn = !s->empty();
        }
    }
    if (const auto* v = get(m, "rrsaRoleARN")) {
        if (auto s = read_arn(*v, "role", ctx)) {
            inst.rrsa_role_arn = *s;
            r.has_rrsa_role_arn = !s->empty();
        }
    }
    if (const auto* v = get(m, "rrsaOIDCProviderRoleARN")) {
        if (auto s = read_arn(*v, "oidc-provider", ctx)) {
            inst.rrsa_oidc_provider_role_arn = *s;
            r.has_rrsa_oidc_provider_role_arn = !s->empty();
        }
    }
    if (const auto* v = get(m, "expireDuration")) {
        if (v->node.IsNull() || (v->node.IsScalar() && trim(v->node.Scalar()).empty())) {
            // the add-on's template leaves it empty: keep the default
        } else if (auto d = read_duration(*v, expire_duration_rule, ctx.diags)) {
            inst.expire_duration = *d;
            r.has_expire_duration = true;
        }
    }
    if (const auto* v = get(m, "roleSessionName")) {
        if (auto s = read_string(*v, ctx.diags)) {
            if (!s->empty() && !is_role_session_name(*s)) {
                ctx.diags.error(v->at(), quote(*s) +
                                             " is not an STS RoleSessionName; expected 2 to 64 of letters, "
                                             "digits and . @ _ -");
            } else {
                inst.role_session_name = *s;
            }
        }
    }
    if (const auto* v = get(m, "realmHosts")) {
        if (auto hosts = read_realm_hosts(*v, ctx)) {
            if (hosts->empty()) {
                ctx.diags.error(v->at(),
                                "empty; expected at least one realm host pattern (default "
                                "[\"*.aliyuncs.com\"])");
            } else {
                inst.realm_hosts = std::move(*hosts);
            }
        }
    }
    if (const auto* v = get(m, "http2")) {
        read_http2(*v, inst.http2, ctx);
    }
    return r;
}

void check_acr_instance(const instance_read& r, load_context& ctx) {
    const auto& inst = r.instance;
    if (inst.rrsa_role_arn.empty() != inst.rrsa_oidc_provider_role_arn.empty()) {
        auto w = r.at;
        const auto* absent = inst.rrsa_role_arn.empty() ? "rrsaRoleARN" : "rrsaOIDCProviderRoleARN";
        w.key += std::string(".") + absent;
        ctx.diags.error(w,
                        std::string("missing while ") +
                            (inst.rrsa_role_arn.empty() ? "rrsaOIDCProviderRoleARN" : "rrsaRoleARN") + " is " +
                            quote(inst.rrsa_role_arn.empty() ? inst.rrsa_oidc_provider_role_arn : inst.rrsa_role_arn) +
                            "; expected rrsaRoleARN and rrsaOIDCProviderRoleARN together");
    }
}

void read_yaml_into(config& cfg, std::string_view text, const std::string& source, load_context& ctx) {
    const yaml_doc doc{source, 1};
    const auto root = parse_yaml(text, doc, "", ctx.diags);
    if (!root) {
        return;
    }
    const node_ref top{*root, "", &doc};
    if (!root->IsMap() && !root->IsNull()) {
        ctx.diags.error(top.at(),
                        "expected a mapping of configuration keys (listen, acrInstances, ...), got " + kind_of(*root));
        return;
    }
    if (const auto kind = (*root)["kind"]; kind && kind.IsScalar() && kind.Scalar() == "ConfigMap") {
        ctx.diags.error(top.child("kind", kind).at(),
                        "\"ConfigMap\": this is a Kubernetes ConfigMap manifest; "
                        "expected our own format here (pass a ConfigMap with "
                        "--acr-configuration)");
        return;
    }
    const auto m = members(top, top_keys, ctx.diags);
    if (const auto* v = get(m, "listen")) {
        read_listen(*v, cfg.listen, false, ctx);
    }
    if (const auto* v = get(m, "adminListen")) {
        read_listen(*v, cfg.admin_listen, true, ctx);
        ctx.origins.admin_listen = v->at();
    }
    if (const auto* v = get(m, "tlsListen")) {
        listen_address a;
        read_listen(*v, a, false, ctx);
        cfg.tls_listen = a;
        ctx.origins.tls_listen = v->at();
    }
    if (const auto* v = get(m, "tlsCertFile")) {
        read_pem_path(*v, "CERTIFICATE", cfg.tls_cert_file, ctx);
        ctx.origins.tls_files = v->at();
    }
    if (const auto* v = get(m, "tlsKeyFile")) {
        read_pem_path(*v, "PRIVATE KEY", cfg.tls_key_file, ctx);
        if (!ctx.origins.tls_files) {
            ctx.origins.tls_files = v->at();
        }
    }
    if (const auto* v = get(m, "expiringThreshold")) {
        if (auto d = read_duration(*v, expiring_threshold_rule, ctx.diags)) {
            cfg.expiring_threshold = *d;
        }
    }
    if (const auto* v = get(m, "followRedirects")) {
        if (auto b = read_bool(*v, ctx.diags)) {
            cfg.follow_redirects = *b;
        }
    }
    if (const auto* v = get(m, "log")) {
        read_log(*v, cfg.log, ctx);
    }
    if (const auto* v = get(m, "alibaba")) {
        read_alibaba(*v, cfg.alibaba, ctx);
    }
    if (const auto* v = get(m, "acrInstances")) {
        if (v->node.IsSequence()) {
            for (std::size_t i = 0; i < v->node.size(); ++i) {
                if (auto r = read_acr_instance(v->element(i, v->node[i]), instance_form::ours, ctx)) {
                    check_acr_instance(*r, ctx);
                    cfg.acr_instances.push_back(std::move(r->instance));
                    ctx.origins.instances.push_back(r->at);
                    ctx.origins.domains.push_back(std::move(r->domain_origins));
                }
            }
        } else if (!v->node.IsNull()) {
            ctx.diags.error(v->at(), "expected a list of ACR instances, got " + kind_of(v->node));
        }
    }
    if (const auto* v = get(m, "registries")) {
        if (v->node.IsSequence()) {
            for (std::size_t i = 0; i < v->node.size(); ++i) {
                read_registry(v->element(i, v->node[i]), cfg, ctx);
            }
        } else if (!v->node.IsNull()) {
            ctx.diags.error(v->at(), "expected a list of registries, got " + kind_of(v->node));
        }
    }
    if (const auto* v = get(m, "defaultRegistry")) {
        if (auto s = read_string(*v, ctx.diags); s && !s->empty()) {
            if (auto h = read_host(*v, ctx)) {
                cfg.default_registry = *h;
                ctx.origins.default_registry = v->at();
            }
        }
    }
    if (const auto* v = get(m, "endpointOverrides")) {
        read_endpoint_overrides(*v, cfg, ctx);
    }
    if (const auto* v = get(m, "scope")) {
        read_scope(*v, cfg.scope, ctx);
    }
    if (const auto* v = get(m, "timeouts")) {
        read_timeouts(*v, cfg.timeouts, ctx);
    }
    if (const auto* v = get(m, "limits")) {
        read_limits(*v, cfg.limits, ctx);
    }
}

}  // namespace acp::config
