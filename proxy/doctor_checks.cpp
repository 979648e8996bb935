#include "proxy/doctor_checks.hpp"

#include "config/values.hpp"
#include "hosts/hosts_toml.hpp"
#include "routing/distribution_path.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <toml++/toml.h>

namespace acp::proxy::doctor {

namespace {

std::string dq(std::string_view s) {
    return "\"" + std::string(s) + "\"";
}

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (;;) {
        const auto pos = s.find(sep, start);
        out.emplace_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
        if (pos == std::string_view::npos) {
            return out;
        }
        start = pos + 1;
    }
}

/// "/etc/containerd/certs.d/" and "/etc/containerd//certs.d" name the same directory.
std::string normal_dir(std::string_view dir) {
    auto out = std::filesystem::path(dir).lexically_normal().string();
    while (out.size() > 1 && out.back() == '/') {
        out.pop_back();
    }
    return out;
}

std::string indent_continuations(std::string_view text, std::string_view pad) {
    std::string out;
    for (const char c : text) {
        out += c;
        if (c == '\n') {
            out += pad;
        }
    }
    return out;
}

// ---- containerd config ---------------------------------------------------------------

constexpr std::string_view v3_plugin = "io.containerd.cri.v1.images";
constexpr std::string_view v2_plugin = "io.containerd.grpc.v1.cri";

std::string table_name(std::string_view plugin, std::string_view sub = "registry") {
    return "[plugins." + dq(plugin) + (sub.empty() ? "" : "." + std::string(sub)) + "]";
}

bool non_empty_table(const toml::table* t, std::string_view key) {
    if (t == nullptr) {
        return false;
    }
    const auto* sub = t->get_as<toml::table>(key);
    return sub != nullptr && !sub->empty();
}

std::optional<std::string> string_at(const toml::table* t, std::string_view key) {
    if (t == nullptr) {
        return std::nullopt;
    }
    if (const auto* v = t->get_as<std::string>(key)) {
        return v->get();
    }
    return std::nullopt;
}

std::string restart_note() {
    return "; then restart containerd (config.toml is read at start only)";
}

}  // namespace

finding pass(std::string text) {
    return {mark::pass, std::move(text), {}};
}

finding fail(std::string text, std::string fix) {
    return {mark::fail, std::move(text), std::move(fix)};
}

finding warn(std::string text, std::string fix) {
    return {mark::warn, std::move(text), std::move(fix)};
}

std::string render(const finding& f) {
    std::string out;
    switch (f.status) {
        case mark::pass:
            out = "\u2713 ";
            break;
        case mark::fail:
            out = "\u2717 ";
            break;
        case mark::warn:
            out = "! ";
            break;
    }
    out += indent_continuations(f.text, "  ");
    out += '\n';
    if (!f.fix.empty()) {
        out += "    fix: " + indent_continuations(f.fix, "         ") + '\n';
    }
    return out;
}

std::vector<finding> check_containerd_config(std::optional<std::string_view> text, std::string_view path,
                                             std::string_view certs_dir) {
    const std::string want = normal_dir(certs_dir);
    const std::string where = "containerd config " + std::string(path);
    const auto v3_registry = table_name(v3_plugin);
    const auto v2_registry = table_name(v2_plugin);
    if (!text) {
        const auto defaults = split(containerd2_default_config_path, ':');
        const bool in_default = std::find(defaults.begin(), defaults.end(), want) != defaults.end();
        return {warn(where +
                         " does not exist: containerd runs on built-in defaults. containerd 2.x then uses "
                         "config_path = " +
                         dq(containerd2_default_config_path) +
                         " (a colon list, which CRI pulls through the transfer service do not split: "
                         "containerd#12415)" +
                         (in_default ? "" : ", which does not include " + want) +
                         "; containerd 1.x reads no certs.d at all without config_path",
                     "write " + std::string(path) + " with `version = 3` and " + v3_registry +
                         " config_path = " + dq(want) + " (containerd 2.x), or `version = 2` and " + v2_registry +
                         " config_path = " + dq(want) + " (containerd 1.x)" + restart_note())};
    }

    toml::table doc;
    try {
        doc = toml::parse(*text);
    } catch (const toml::parse_error& e) {
        return {fail(where + ": not valid TOML (line " + std::to_string(e.source().begin.line) + ", column " +
                         std::to_string(e.source().begin.column) + ": " + std::string(e.description()) + ")",
                     "fix the syntax of " + std::string(path) + " (containerd does not start with it either)")};
    }

    const auto version_value = doc["version"].value<std::int64_t>();
    const std::int64_t version = version_value.value_or(1);
    const toml::table* plugins = doc.get_as<toml::table>("plugins");
    auto plugin_table = [&](std::string_view name) -> const toml::table* {
        return plugins != nullptr ? plugins->get_as<toml::table>(name) : nullptr;
    };
    auto registry_of = [&](std::string_view name) -> const toml::table* {
        const auto* p = plugin_table(name);
        return p != nullptr ? p->get_as<toml::table>("registry") : nullptr;
    };

    const toml::table* reg = nullptr;
    const toml::table* other = nullptr;  // the other layout's registry table: not read by this version
    std::string reg_name;
    std::string other_name;
    std::string layout;
    if (version == 3) {
        reg = registry_of(v3_plugin);
        reg_name = v3_registry;
        other = registry_of(v2_plugin);
        other_name = v2_registry;
        layout = "version 3, containerd 2.x";
    } else if (version == 2 || version == 1) {
        reg = registry_of(v2_plugin);
        reg_name = v2_registry;
        if (version == 1 && reg == nullptr) {
            reg = registry_of("cri");
            reg_name = "[plugins.cri.registry]";
        }
        other = registry_of(v3_plugin);
        other_name = v3_registry;
        layout = version == 2 ? "version 2, containerd 1.x" : "version 1 (no `version` key), containerd 1.x";
    } else {
        return {warn(where + ": version = " + std::to_string(version) +
                         " is not a layout doctor knows (2: containerd 1.x, 3: containerd 2.x); config_path not "
                         "checked",
                     "check by hand that containerd's registry config_path lists " + want)};
    }
    const std::string head = where + " (" + layout + ")";

    const bool has_mirrors = non_empty_table(reg, "mirrors");
    const bool has_configs = non_empty_table(reg, "configs");
    const bool has_auths = non_empty_table(reg, "auths");
    const auto explicit_path = string_at(reg, "config_path");

    std::vector<finding> out;
    std::optional<std::string> effective = explicit_path;
    bool defaulted = false;
    if (!effective && version == 3 && !has_mirrors && !has_configs && !has_auths) {
        // internal/cri/config/config.go: with no registry-specific option, ConfigPath has a default.
        effective = std::string(containerd2_default_config_path);
        defaulted = true;
    }
    // A config_path in the other layout's table is ignored: say so in the fix.
    const std::string tail = (!explicit_path && string_at(other, "config_path")
                                  ? " (the config_path under " + other_name + " is not read by a version " +
                                        std::to_string(version) + " file)"
                                  : std::string()) +
                             restart_note();
    const auto set_it = "set config_path = " + dq(want) + " under " + reg_name + " in " + std::string(path);
    if (!effective) {
        std::string fix = "add config_path = " + dq(want) + " under " + reg_name + " in " + std::string(path);
        if (has_mirrors) {
            fix += ", and move every " + reg_name.substr(0, reg_name.size() - 1) +
                   ".mirrors] entry into a hosts.toml under " + want +
                   " (containerd refuses mirrors beside config_path)";
        }
        out.push_back(fail(head + ": config_path is not set under " + reg_name + ": containerd never reads " + want +
                               "/<domain>/hosts.toml, so pulls do not go through the proxy",
                           fix + tail));
    } else if (effective->empty()) {
        out.push_back(fail(head + ": config_path = \"\" under " + reg_name + ": containerd reads no hosts.toml at all",
                           set_it + tail));
    } else {
        std::vector<std::string> dirs;
        for (const auto& d : split(*effective, ':')) {
            if (!d.empty()) {
                dirs.push_back(normal_dir(d));
            }
        }
        const auto shown =
            (defaulted ? "config_path is not set, so containerd 2.x's default " : "config_path = ") + dq(*effective);
        const bool listed = std::find(dirs.begin(), dirs.end(), want) != dirs.end();
        const auto* images = plugin_table(v3_plugin);
        const bool local_pull = images != nullptr && (*images)["use_local_image_pull"].value_or(false);
        if (!listed) {
            out.push_back(fail(head + ": " + shown + " does not include " + want +
                                   ": containerd does not read the hosts.toml files written there",
                               set_it + " (or write the files where containerd looks: --certs-dir " +
                                   (dirs.empty() ? want : dirs.front()) + ")" + tail));
        } else if (version == 3 && dirs.size() > 1 && !local_pull) {
            out.push_back(fail(head + ": " + shown +
                                   " is a colon-separated list, and CRI pulls go through the transfer service (no "
                                   "use_local_image_pull = true), which takes config_path as one directory name, "
                                   "so the hosts.toml files are not found and mirrors break (containerd#12415)",
                               set_it + " (one directory), or set use_local_image_pull = true under " +
                                   table_name(v3_plugin, "") + tail));
        } else {
            out.push_back(
                pass(head + ": " + shown + " includes " + want +
                     (version == 3 && dirs.size() > 1 ? " (use_local_image_pull = true splits the list)" : "")));
            if (version < 3 && dirs.size() > 1) {
                out.push_back(warn(head + ": config_path " + dq(*effective) +
                                       " is a colon-separated list: fine on containerd 1.x, but containerd 2.x "
                                       "(which migrates this file) pulls through the transfer service, which does "
                                       "not split it (containerd#12415)",
                                   "before upgrading to containerd 2.x, " + set_it));
            }
        }
    }
    if (has_mirrors && explicit_path) {
        out.push_back(
            fail(head + ": " + reg_name.substr(0, reg_name.size() - 1) +
                     ".mirrors] is set beside config_path: containerd refuses this combination",
                 "move each mirror into " + want + "/<host>/hosts.toml and delete the mirrors table" + restart_note()));
    }
    if (has_configs || has_auths) {
        out.push_back(warn(head + ": " + std::string(has_configs ? "registry.configs" : "") +
                           (has_configs && has_auths ? " and " : "") + (has_auths ? "registry.auths" : "") + " under " +
                           reg_name +
                           " are deprecated (removed in containerd 2.3); hosts.toml under config_path replaces them"));
    }
    return out;
}

finding check_hosts_toml(std::string_view domain, std::string_view path, std::optional<std::string_view> text,
                         std::string_view proxy_url, std::string_view install_command) {
    const std::string p(path);
    const std::string install = "run `" + std::string(install_command) + "`";
    if (!text) {
        return fail("hosts.toml " + p + " is missing: containerd pulls " + std::string(domain) +
                        " from the registry directly, without the proxy's credentials",
                    install);
    }
    toml::table doc;
    try {
        doc = toml::parse(*text);
    } catch (const toml::parse_error& e) {
        return fail("hosts.toml " + p + " is not valid TOML (line " + std::to_string(e.source().begin.line) + ": " +
                        std::string(e.description()) + "): containerd cannot use it",
                    "fix or remove " + p + ", then " + install);
    }
    if (!hosts::is_managed(*text)) {
        return fail("hosts.toml " + p +
                        " was not written by acr-credential-proxy (no marker line): the proxy is "
                        "not one of its hosts",
                    install + " (it keeps this file's hosts after the proxy and backs the original up)");
    }
    const auto* host = doc.get_as<toml::table>("host");
    const toml::table* first = nullptr;
    std::string first_key;
    if (host != nullptr) {
        for (const auto& [k, n] : *host) {
            const auto* t = n.as_table();
            if (t == nullptr) {
                continue;
            }
            // containerd tries hosts in the order they appear in the file.
            const auto at = t->source().begin;
            if (first == nullptr || at.line < first->source().begin.line ||
                (at.line == first->source().begin.line && at.column < first->source().begin.column)) {
                first = t;
                first_key = std::string(k.str());
            }
        }
    }
    if (first == nullptr) {
        return fail("hosts.toml " + p + " has no [host] entry: containerd goes to `server` directly", install);
    }
    if (first_key != proxy_url) {
        std::string why;
        if (auto written = hosts::managed_proxy_url(*text); written && *written != proxy_url) {
            why = " (the file was written for " + *written + "; did `listen` change since `hosts install`?)";
        }
        return fail("hosts.toml " + p + ": the first [host] is " + dq(first_key) + ", not this proxy (" +
                        std::string(proxy_url) + ")" + why,
                    install);
    }
    std::string caps = "pull, resolve, push (capabilities not listed)";
    if (const auto* listed = first->get_as<toml::array>("capabilities")) {
        std::set<std::string> have;
        std::vector<std::string> order;
        for (const auto& v : *listed) {
            if (const auto* s = v.as_string()) {
                have.insert(s->get());
                order.push_back(s->get());
            }
        }
        for (const std::string_view need : {"pull", "resolve"}) {
            if (have.count(std::string(need)) == 0) {
                return fail("hosts.toml " + p + ": capabilities of " + std::string(proxy_url) + " lack " + dq(need) +
                                (need == "resolve" ? ": tag lookups skip the proxy and reach the registry without "
                                                     "credentials"
                                                   : ": containerd fetches nothing through the proxy"),
                            install);
            }
        }
        caps = fmt::format("{}", fmt::join(order, ", "));
    }
    return pass("hosts.toml " + p + ": first [host] is this proxy (" + std::string(proxy_url) + "), capabilities " +
                caps);
}

std::vector<finding> compare_domains(std::string_view instance, const std::vector<std::string>& configured,
                                     const std::vector<tokens::instance_domain>& discovered) {
    const std::string label = "ACR instance " + std::string(instance);
    std::vector<std::string> found;
    std::vector<std::string> found_shown;
    for (const auto& d : discovered) {
        const auto name = config::to_lower(d.domain);
        if (std::find(found.begin(), found.end(), name) == found.end()) {
            found.push_back(name);
            found_shown.push_back(name + " (" + d.endpoint_type + ")");
        }
    }
    std::vector<std::string> conf;
    conf.reserve(configured.size());
    for (const auto& c : configured) {
        conf.push_back(config::to_lower(c));
    }
    if (conf.empty()) {
        if (found.empty()) {
            return {fail(label + ": ListInstanceEndpoint lists no enabled endpoint and no domains are configured: "
                                 "the proxy serves nothing for it",
                         "enable the instance's internet or VPC endpoint in the Container Registry console, or list "
                         "its registry domains in acrInstances[].domains")};
        }
        return {pass(label + ": serving the domains ListInstanceEndpoint lists: " +
                     fmt::format("{}", fmt::join(found_shown, ", ")))};
    }
    std::vector<finding> out;
    const auto listed = found.empty() ? std::string("none") : fmt::format("{}", fmt::join(found, ", "));
    for (const auto& c : conf) {
        if (std::find(found.begin(), found.end(), c) == found.end()) {
            std::string text = label;
            text += ": configured domain " + c;
            text += " is not an enabled endpoint of this instance (ListInstanceEndpoint: " + listed;
            text += "): a typo, the wrong instance, or a disabled endpoint?";
            out.push_back(warn(std::move(text),
                               "compare acrInstances[].domains with the instance's endpoints in the Container "
                               "Registry console"));
        }
    }
    for (std::size_t i = 0; i < found.size(); ++i) {
        if (std::find(conf.begin(), conf.end(), found[i]) == conf.end()) {
            out.push_back(warn(
                label + ": " + found_shown[i] +
                    " is an endpoint of this instance but not configured: images pulled by that name "
                    "do not go through the proxy",
                "add " + found[i] + " to acrInstances[].domains (or leave domains empty to serve every listed one)"));
        }
    }
    if (out.empty()) {
        out.push_back(pass(label + ": configured domains match ListInstanceEndpoint (" +
                           fmt::format("{}", fmt::join(found_shown, ", ")) + ")"));
    }
    return out;
}

std::string fix_for_api_error(const tokens::api_error& err, std::string_view identity) {
    const std::string who(identity);
    if (err.code == "USER_NOT_EXIST") {
        return "sign in to the Container Registry console once as this RAM user and set a registry login password "
               "(or call CreateUserInfo), or use an Enterprise Edition instance";
    }
    if (err.code == "NoCredentials") {
        return "give the node an identity: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, "
               "alibaba.accessKeyIdFile and alibaba.accessKeySecretFile, RRSA (ALIBABA_CLOUD_ROLE_ARN, "
               "ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE), or attach a RAM role to the ECS "
               "instance";
    }
    if (err.code == "OIDCTokenFileUnreadable") {
        return "mount the ServiceAccount's RRSA token (ack-pod-identity-webhook) or point "
               "ALIBABA_CLOUD_OIDC_TOKEN_FILE "
               "at it";
    }
    if (err.code == "INSTANCE_NOT_EXIST") {
        return "check acrInstances[].instanceId and regionId: no such instance in that region for this account";
    }
    const auto hint = tokens::ram_permission_hint(err.api, err.code, err.http_status);
    if (!hint.empty()) {
        if (err.api == "GetAuthorizationToken" || err.api == "ListInstanceEndpoint") {
            return "attach a RAM policy allowing cr:GetAuthorizationToken, cr:ListInstanceEndpoint and "
                   "cr:PullRepository (the add-on's workerRole permissions) to " +
                   who + " (missing here: " + hint + ")";
        }
        return who + " needs " + hint;
    }
    if (err.credential_rejected()) {
        return "the credential from " + who +
               " was rejected (expired, revoked or wrong): renew the AccessKey (environment or files), or check "
               "this node's clock if it is an STS credential";
    }
    if (err.http_status == 0 && err.code == "Transport") {
        const bool imds = err.api.find("IMDS") != std::string::npos;
        return "make " + (err.endpoint.empty() ? std::string("the endpoint") : err.endpoint) +
               " reachable from this node (alibaba.* endpoints, endpointOverrides, egress rules, HTTP proxy)" +
               (imds ? "; outside ECS, configure an AccessKey or RRSA instead of the ECS RAM role" : "");
    }
    if (err.api.find("IMDS") != std::string::npos) {
        return "attach a RAM role to this ECS instance (or set alibaba.ecsRoleName); outside ECS, configure an "
               "AccessKey or RRSA instead";
    }
    return "fix the cause in the message above, then run doctor again" +
           (err.request_id.empty() ? std::string()
                                   : "; quote RequestId " + err.request_id + " to Alibaba Cloud support");
}

}  // namespace acp::proxy::doctor
