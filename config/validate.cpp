// Checks across sections, once everything is read: every registry host is
// configured once, defaultRegistry and endpointOverrides name configured
// hosts, the two listeners do not collide.
#include "config/load_stages.hpp"
#include "config/values.hpp"

#include <map>
#include <set>

namespace acp::config {
namespace {

std::string describe(const where& w) {
    std::string out = w.key;
    if (!w.file.empty()) {
        out += " in " + w.file;
        if (w.line > 0) {
            out += ":" + std::to_string(w.line);
        }
    }
    return out;
}

where or_default(const where& w, const config& cfg, std::string key) {
    if (!w.key.empty()) {
        return w;
    }
    return {cfg.source, std::move(key), 0};
}

std::string host_list(const std::map<std::string, where>& hosts) {
    if (hosts.empty()) {
        return "none are configured";
    }
    std::string out = "one of ";
    std::size_t n = 0;
    for (const auto& [host, w] : hosts) {
        if (n++ == 8) {
            out += ", ...";
            break;
        }
        out += (n == 1 ? "" : ", ") + quote(host);
    }
    return out;
}

bool listeners_collide(const listen_address& a, const listen_address& b) {
    if (a.port == 0 || a.port != b.port) {
        return false;  // port 0: each gets its own ephemeral port
    }
    return a.host == b.host || is_wildcard_ip(a.host) || is_wildcard_ip(b.host);
}

}  // namespace

void seed_origins(const config& cfg, origin_table& origins) {
    for (std::size_t i = 0; i < cfg.acr_instances.size(); ++i) {
        const auto key = "acrInstances[" + std::to_string(i) + "]";
        origins.instances.push_back({cfg.source, key, 0});
        std::vector<where> domains;
        for (std::size_t j = 0; j < cfg.acr_instances[i].domains.size(); ++j) {
            domains.push_back({cfg.source, key + ".domains[" + std::to_string(j) + "]", 0});
        }
        origins.domains.push_back(std::move(domains));
    }
    for (std::size_t i = 0; i < cfg.registries.size(); ++i) {
        origins.registry_hosts.push_back({cfg.source, "registries[" + std::to_string(i) + "].host", 0});
    }
    if (!cfg.default_registry.empty()) {
        origins.default_registry = {cfg.source, "defaultRegistry", 0};
    }
    for (const auto& [host, url] : cfg.endpoint_overrides) {
        origins.endpoint_overrides[host] = {cfg.source, "endpointOverrides[" + quote(host) + "]", 0};
    }
    origins.admin_listen = {cfg.source, "adminListen", 0};
}

load_result finish(config cfg, load_context& ctx) {
    auto& diags = ctx.diags;
    const auto& origins = ctx.origins;

    if (origins.listeners_valid && listeners_collide(cfg.listen, cfg.admin_listen)) {
        diags.error(or_default(origins.admin_listen, cfg, "adminListen"),
                    quote(cfg.admin_listen.host + ":" + std::to_string(cfg.admin_listen.port)) +
                        " collides with listen; expected a different port for the admin endpoints");
    }

    if (cfg.tls_listen) {
        const auto tls_at = or_default(origins.tls_listen, cfg, "tlsListen");
        if (origins.listeners_valid &&
            (listeners_collide(*cfg.tls_listen, cfg.listen) || listeners_collide(*cfg.tls_listen, cfg.admin_listen))) {
            diags.error(tls_at, quote(cfg.tls_listen->host + ":" + std::to_string(cfg.tls_listen->port)) +
                                    " collides with listen or adminListen; expected a port of its own");
        }
        if (cfg.tls_cert_file.empty() || cfg.tls_key_file.empty()) {
            diags.error(tls_at, std::string("set, but ") + (cfg.tls_cert_file.empty() ? "tlsCertFile" : "tlsKeyFile") +
                                    " is missing or unreadable; expected tlsCertFile and tlsKeyFile with it");
        }
    } else if ((!cfg.tls_cert_file.empty() || !cfg.tls_key_file.empty()) && origins.tls_files) {
        diags.warn(*origins.tls_files, "set without tlsListen: no TLS listener is opened");
    }

    // Every host belongs to exactly one ACR instance or registry: that is the route table's key.
    std::map<std::string, where> hosts;
    auto add_host = [&](const std::string& host, const where& at) {
        if (host.empty()) {
            return;  // already reported as invalid
        }
        const auto [it, inserted] = hosts.emplace(host, at);
        if (!inserted) {
            diags.error(at, "host " + quote(host) + " is configured twice (also at " + describe(it->second) +
                                "); expected each registry host once across acrInstances[].domains and "
                                "registries[].host");
        }
    };
    // Registries first: ConfigMap instances come last, so a clash is reported where it was added.
    for (std::size_t i = 0; i < cfg.registries.size(); ++i) {
        add_host(cfg.registries[i].host, i < origins.registry_hosts.size()
                                             ? origins.registry_hosts[i]
                                             : where{cfg.source, "registries[" + std::to_string(i) + "].host", 0});
    }
    for (std::size_t i = 0; i < cfg.acr_instances.size(); ++i) {
        const auto& domains = cfg.acr_instances[i].domains;
        for (std::size_t j = 0; j < domains.size(); ++j) {
            const bool known = i < origins.domains.size() && j < origins.domains[i].size();
            add_host(domains[j],
                     known ? origins.domains[i][j]
                           : where{cfg.source,
                                   "acrInstances[" + std::to_string(i) + "].domains[" + std::to_string(j) + "]", 0});
        }
    }

    bool discovered = false;
    for (const auto& inst : cfg.acr_instances) {
        discovered = discovered || inst.domains.empty();
    }
    const std::string discovered_hint =
        discovered ? " (domains discovered at run time are not known here: list them in the instance's domains)" : "";
    if (!cfg.default_registry.empty() && hosts.count(cfg.default_registry) == 0) {
        diags.error(
            or_default(origins.default_registry, cfg, "defaultRegistry"),
            quote(cfg.default_registry) + " is not a configured host; expected " + host_list(hosts) + discovered_hint);
    }
    for (const auto& [host, url] : cfg.endpoint_overrides) {
        if (hosts.count(host) == 0) {
            const auto it = origins.endpoint_overrides.find(host);
            diags.error(it != origins.endpoint_overrides.end()
                            ? it->second
                            : where{cfg.source, "endpointOverrides[" + quote(host) + "]", 0},
                        quote(host) + " is not a configured host; expected " + host_list(hosts) + discovered_hint);
        }
    }

    std::set<std::pair<std::string, std::string>> instances;
    for (std::size_t i = 0; i < cfg.acr_instances.size(); ++i) {
        const auto& inst = cfg.acr_instances[i];
        if (inst.domains.empty() && !instances.emplace(inst.instance_id, inst.region_id).second) {
            diags.warn(i < origins.instances.size() ? origins.instances[i]
                                                    : where{cfg.source, "acrInstances[" + std::to_string(i) + "]", 0},
                       "instance " + quote(inst.instance_id) + " in region " + quote(inst.region_id) +
                           " is listed twice; the second entry adds nothing");
        }
    }

    if (cfg.acr_instances.empty() && cfg.registries.empty()) {
        diags.warn({cfg.source, "", 0},
                   "no ACR instance and no registry configured: every pull gets 404 and "
                   "containerd falls back to the registry itself");
    }

    if (!diags.errors().empty()) {
        throw config_error(diags.errors(), diags.take_warnings());
    }
    return {std::make_shared<const config>(std::move(cfg)), diags.take_warnings()};
}

}  // namespace acp::config
