#include "proxy/certs_sync.hpp"

#include "config/logging.hpp"
#include "hosts/certs_dir.hpp"

#include <fmt/format.h>

namespace acp::proxy {

certs_sync::certs_sync(std::filesystem::path certs_dir, hosts::render_options opts)
    : certs_dir_(std::move(certs_dir)), opts_(std::move(opts)) {}

certs_sync_result certs_sync::sync(const config::config& cfg) {
    static const auto log = logging::logger("hosts");
    certs_sync_result out;
    for (const auto& inst : cfg.acr_instances) {
        if (inst.domains.empty()) {
            out.pending.push_back(inst.instance_id.empty() ? inst.region_id : inst.instance_id);
        }
    }
    if (!out.pending.empty()) {
        if (!waiting_logged_) {
            log->info(
                "hosts.toml under {}: waiting for the domains of ACR instance(s) {} (ListInstanceEndpoint) "
                "before writing",
                certs_dir_.string(), fmt::join(out.pending, ", "));
            waiting_logged_ = true;
        }
        return out;
    }
    out.attempted = true;
    hosts::report r;
    try {
        r = hosts::install(certs_dir_, hosts::config_domains(cfg), cfg.listen, opts_);
    } catch (const std::exception& e) {
        // Never into serve's reload path, where it would read as a rejected configuration.
        r.errors.push_back(fmt::format("{}: hosts.toml sync failed: {}", certs_dir_.string(), e.what()));
    }
    std::set<std::string> now;
    auto warn_once = [&](const std::string& text) {
        now.insert(text);
        if (!reported_.contains(text)) {
            log->warn("{}", text);
        }
    };
    for (const auto& e : r.errors) {
        out.errors.push_back(e);
        warn_once(e);
    }
    for (const auto& c : r.files) {
        for (const auto& n : c.notes) {
            warn_once(n);
        }
        if (c.what == hosts::action::skip) {
            auto text = fmt::format("{}: left untouched: {}", c.path.string(), c.reason);
            out.errors.push_back(text);
            warn_once(text);
            continue;
        }
        if (!c.error.empty()) {
            auto text = fmt::format("{}: {} failed: {}", c.path.string(), hosts::to_string(c.what), c.error);
            out.errors.push_back(text);
            warn_once(text);
            continue;
        }
        if (c.what != hosts::action::unchanged) {
            ++out.changed;
            log->info("{} {} ({})", hosts::to_string(c.what), c.path.string(),
                      c.configured ? "proxy first" : "domain no longer served");
        }
    }
    reported_ = std::move(now);
    waiting_logged_ = false;
    return out;
}

}  // namespace acp::proxy
