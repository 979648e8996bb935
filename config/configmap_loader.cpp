// The add-on's `acr-configuration` ConfigMap (kube-system), as Alibaba's
// aliyun-acr-credential-helper reads it: a mounted directory (one file per key)
// or a manifest. Every key is honoured, or accepted with one warning saying
// why it does not matter for a proxy that writes no Secrets.
#include "config/load_stages.hpp"
#include "config/values.hpp"

#include <algorithm>
#include <array>
#include <filesystem>
#include <system_error>

namespace acp::config {
namespace {

constexpr std::array<std::string_view, 11> configmap_keys{
    "acr-registry-info", "expiring-threshold", "watch-namespace",         "service-account",
    "acr-api-version",   "notify-email",       "webhook-configuration",   "assumeRoleARN",
    "expireDuration",    "rrsaRoleARN",        "rrsaOIDCProviderRoleARN",
};

where at_entry(const std::string& key, const configmap_entry& e) {
    return {e.file, key, e.first_line};
}

// The add-on's watch-namespace / service-account: comma-separated, "all" / "*".
void read_scope_key(const configmap_entries& data, const std::string& key, bool subdomain,
                    std::vector<std::string>& field, load_context& ctx) {
    const auto it = data.find(key);
    if (it == data.end()) {
        return;  // the add-on's default, already set
    }
    const auto at = at_entry(key, it->second);
    auto names = check_scope_names(split_list(it->second.value, at), subdomain, ctx.diags);
    if (!names) {
        return;
    }
    if (names->empty()) {
        ctx.diags.warn(at, "empty; using the add-on's default \"default\"");
        return;
    }
    field = std::move(*names);
}

// The top-level cross-account keys: defaults for every instance without its own.
struct cross_account_defaults {
    std::optional<std::string> assume_role_arn;
    std::optional<duration> expire_duration;
    std::optional<std::string> rrsa_role_arn;
    std::optional<std::string> rrsa_oidc_provider_role_arn;
};

std::optional<std::string> read_top_arn(const configmap_entries& data, const std::string& key,
                                        std::string_view resource, load_context& ctx) {
    const auto it = data.find(key);
    if (it == data.end()) {
        return std::nullopt;
    }
    const auto value = std::string(trim(it->second.value));
    if (value.empty()) {
        return std::nullopt;
    }
    if (!is_ram_arn(value) || value.find(":" + std::string(resource) + "/") == std::string::npos) {
        ctx.diags.error(at_entry(key, it->second),
                        quote(value) + " is not a RAM " + std::string(resource) +
                            " ARN; expected \"acs:ram::<account-id>:" + std::string(resource) + "/<name>\"");
        return std::nullopt;
    }
    return value;
}

cross_account_defaults read_cross_account(const configmap_entries& data, load_context& ctx) {
    cross_account_defaults d;
    d.assume_role_arn = read_top_arn(data, "assumeRoleARN", "role", ctx);
    d.rrsa_role_arn = read_top_arn(data, "rrsaRoleARN", "role", ctx);
    d.rrsa_oidc_provider_role_arn = read_top_arn(data, "rrsaOIDCProviderRoleARN", "oidc-provider", ctx);
    if (const auto it = data.find("expireDuration"); it != data.end() && !trim(it->second.value).empty()) {
        d.expire_duration =
            check_duration(it->second.value, at_entry("expireDuration", it->second), expire_duration_rule, ctx.diags);
    }
    return d;
}

void apply_defaults(instance_read& r, const cross_account_defaults& d) {
    auto& inst = r.instance;
    if (!r.has_assume_role_arn && d.assume_role_arn) {
        inst.assume_role_arn = *d.assume_role_arn;
    }
    if (!r.has_expire_duration && d.expire_duration) {
        inst.expire_duration = *d.expire_duration;
    }
    if (!r.has_rrsa_role_arn && d.rrsa_role_arn) {
        inst.rrsa_role_arn = *d.rrsa_role_arn;
    }
    if (!r.has_rrsa_oidc_provider_role_arn && d.rrsa_oidc_provider_role_arn) {
        inst.rrsa_oidc_provider_role_arn = *d.rrsa_oidc_provider_role_arn;
    }
}

void read_registry_info(config& cfg, const std::string& key, const configmap_entry& e,
                        const cross_account_defaults& defaults, load_context& ctx) {
    const yaml_doc doc{e.file, e.first_line};
    const auto root = parse_yaml(e.value, doc, key, ctx.diags);
    if (!root) {
        return;
    }
    const node_ref list{*root, key, &doc};
    if (root->IsNull()) {
        ctx.diags.warn(at_entry(key, e), "empty; no ACR instance configured by the ConfigMap");
        return;
    }
    if (!root->IsSequence()) {
        ctx.diags.error(list.at(),
                        "expected a YAML list of instances (\"- instanceId: cri-...\\n  regionId: ...\"), "
                        "got " +
                            kind_of(*root));
        return;
    }
    for (std::size_t i = 0; i < root->size(); ++i) {
        auto r = read_acr_instance(list.element(i, (*root)[i]), instance_form::addon, ctx);
        if (!r) {
            continue;
        }
        apply_defaults(*r, defaults);
        check_acr_instance(*r, ctx);
        cfg.acr_instances.push_back(std::move(r->instance));
        ctx.origins.instances.push_back(r->at);
        ctx.origins.domains.push_back(std::move(r->domain_origins));
    }
}

// The file line where a manifest value's text starts: the line after a block
// scalar indicator (| or >), else the value's own line.
int value_first_line(std::string_view yaml, const YAML::Node& value) {
    const auto mark = value.Mark();
    if (mark.is_null() || mark.pos < 0 || static_cast<std::size_t>(mark.pos) >= yaml.size()) {
        return 0;
    }
    const auto c = yaml[static_cast<std::size_t>(mark.pos)];
    return mark.line + ((c == '|' || c == '>') ? 2 : 1);
}

bool has_configmap_key(const YAML::Node& map) {
    for (const auto& kv : map) {
        if (kv.first.IsScalar() &&
            std::find(configmap_keys.begin(), configmap_keys.end(), kv.first.Scalar()) != configmap_keys.end()) {
            return true;
        }
    }
    return false;
}

}  // namespace

std::optional<configmap_entries> read_configmap_manifest(std::string_view yaml, const std::string& source,
                                                         diagnostics& diags) {
    const yaml_doc doc{source, 1};
    const auto root = parse_yaml(yaml, doc, "", diags);
    if (!root) {
        return std::nullopt;
    }
    const node_ref top{*root, "", &doc};
    const auto expected =
        "expected a ConfigMap manifest (kind: ConfigMap with data:), a bare data: map, or a mounted ConfigMap "
        "directory";
    if (!root->IsMap()) {
        diags.error(top.at(), std::string(expected) + ", got " + kind_of(*root));
        return std::nullopt;
    }
    YAML::Node data;
    std::string data_path = "data";
    if (const auto kind = (*root)["kind"]) {
        if (!kind.IsScalar() || kind.Scalar() != "ConfigMap") {
            diags.error(top.child("kind", kind).at(),
                        (kind.IsScalar() ? quote(kind.Scalar()) : kind_of(kind)) + " is not a ConfigMap; " + expected);
            return std::nullopt;
        }
        const auto d = (*root)["data"];
        if (!d) {
            diags.error(top.child("data", YAML::Node()).at(), "missing; expected the ConfigMap's data: map");
            return std::nullopt;
        }
        data.reset(d);
        if ((*root)["binaryData"]) {
            diags.warn(top.child("binaryData", (*root)["binaryData"]).at(),
                       "ignored: the add-on's keys are all in data:");
        }
    } else if (const auto d = (*root)["data"]) {
        data.reset(d);
    } else if (has_configmap_key(*root)) {
        data.reset(*root);
        data_path.clear();
    } else {
        std::string message = std::string("no ConfigMap keys found; ") + expected;
        if ((*root)["acrInstances"] || (*root)["listen"] || (*root)["registries"]) {
            message += " (this looks like our own format: pass it with --config)";
        }
        diags.error(top.at(), std::move(message));
        return std::nullopt;
    }
    const node_ref data_ref{data, data_path, &doc};
    if (data.IsNull()) {
        return configmap_entries{};
    }
    if (!data.IsMap()) {
        diags.error(data_ref.at(), "expected a map of key to string, got " + kind_of(data));
        return std::nullopt;
    }
    configmap_entries out;
    bool ok = true;
    for (const auto& kv : data) {
        if (!kv.first.IsScalar()) {
            diags.error(data_ref.at(), "expected string keys, got " + kind_of(kv.first));
            ok = false;
            continue;
        }
        const auto& key = kv.first.Scalar();
        const auto value = data_ref.child(key, kv.second);
        if (kv.second.IsNull()) {
            out[key] = {std::string(), source, value_first_line(yaml, kv.second)};
            continue;
        }
        if (!kv.second.IsScalar()) {
            diags.error(value.at(), "expected a string (ConfigMap data values are strings: write \"" + key +
                                        ": |\" and indent the value below it), got " + kind_of(kv.second));
            ok = false;
            continue;
        }
        if (!out.emplace(key, configmap_entry{kv.second.Scalar(), source, value_first_line(yaml, kv.second)}).second) {
            diags.error(value.at(), "duplicate key " + quote(key) + "; expected each key once");
            ok = false;
        }
    }
    if (!ok) {
        return std::nullopt;
    }
    return out;
}

std::optional<configmap_entries> read_configmap_directory(const std::string& dir, const environment& env,
                                                          diagnostics& diags) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) {
        diags.error({dir, "", 0}, "cannot list the directory (" + ec.message() + "); expected a mounted ConfigMap");
        return std::nullopt;
    }
    configmap_entries out;
    bool ok = true;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
        const auto name = it->path().filename().string();
        // Kubernetes' atomic-writer layout: `..data` -> `..<timestamp>/`, keys are symlinks into it.
        if (name.starts_with("..")) {
            continue;
        }
        const auto path = it->path().string();
        if (fs::is_directory(it->path(), ec)) {
            diags.warn({path, name, 0}, "a directory, not a ConfigMap key; skipped");
            continue;
        }
        auto content = env.read_file(path);
        if (!content) {
            diags.error({path, name, 0}, "cannot read the key's file; expected a readable file");
            ok = false;
            continue;
        }
        out[name] = {std::move(*content), path, 1};
    }
    if (ec) {
        diags.error({dir, "", 0}, "cannot list the directory (" + ec.message() + "); expected a mounted ConfigMap");
        return std::nullopt;
    }
    if (!ok) {
        return std::nullopt;
    }
    return out;
}

void read_configmap_into(config& cfg, const configmap_entries& input, const std::string& source, load_context& ctx) {
    // Every value is text: a key whose file is not UTF-8 is an error, not read.
    configmap_entries data;
    for (const auto& [key, e] : input) {
        if (!is_utf8(e.value)) {
            ctx.diags.error(at_entry(key, e), "not valid UTF-8; expected UTF-8 text");
            continue;
        }
        data.emplace(key, e);
    }
    for (const auto& [key, e] : data) {
        if (std::find(configmap_keys.begin(), configmap_keys.end(), key) == configmap_keys.end()) {
            ctx.diags.warn(at_entry(key, e), "unknown key " + quote(key) + " ignored (closest known key: " +
                                                 quote(closest_key(key, configmap_keys)) + ")");
        }
    }

    // The ConfigMap form always scopes credentials, with the add-on's defaults.
    cfg.scope.enabled = true;
    cfg.scope.namespaces = {"default"};
    cfg.scope.service_accounts = {"default"};
    read_scope_key(data, "watch-namespace", false, cfg.scope.namespaces, ctx);
    read_scope_key(data, "service-account", true, cfg.scope.service_accounts, ctx);

    if (const auto it = data.find("expiring-threshold"); it != data.end()) {
        if (trim(it->second.value).empty()) {
            ctx.diags.warn(at_entry(it->first, it->second), "empty; using the default 15m");
        } else if (auto d = check_duration(it->second.value, at_entry(it->first, it->second), expiring_threshold_rule,
                                           ctx.diags)) {
            cfg.expiring_threshold = *d;
        }
    }
    if (const auto it = data.find("acr-api-version"); it != data.end()) {
        ctx.diags.warn(at_entry(it->first, it->second),
                       quote(trim(it->second.value)) +
                           " ignored: the proxy picks the ACR API per edition (Enterprise Edition by instanceId, "
                           "Personal Edition without)");
    }
    if (const auto it = data.find("notify-email"); it != data.end()) {
        ctx.diags.warn(at_entry(it->first, it->second),
                       "ignored: there is nothing to notify about, the proxy writes no Secrets");
    }
    if (const auto it = data.find("webhook-configuration"); it != data.end()) {
        ctx.diags.warn(at_entry(it->first, it->second),
                       "ignored: not needed here, a new ServiceAccount works at once because no Secret has to be "
                       "injected into it");
    }

    const auto defaults = read_cross_account(data, ctx);
    if (const auto it = data.find("acr-registry-info"); it != data.end()) {
        read_registry_info(cfg, it->first, it->second, defaults, ctx);
    } else {
        ctx.diags.warn({source, "acr-registry-info", 0}, "missing: no ACR instance configured by the ConfigMap");
    }
}

}  // namespace acp::config
