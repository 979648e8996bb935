#include "routing/route_table.hpp"

#include "routing/distribution_path.hpp"

#include <algorithm>
#include <charconv>

namespace acp::routing {
namespace {

std::string to_lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

std::optional<std::uint16_t> parse_port(std::string_view p) {
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (p.empty() || ec != std::errc() || ptr != p.data() + p.size() || v == 0 || v > 65535) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(v);
}

}  // namespace

std::optional<host_port> split_host_port(std::string_view authority) {
    if (!is_valid_host(authority)) {
        return std::nullopt;
    }
    host_port out;
    std::string_view port_text;
    if (authority.front() == '[') {
        const auto close = authority.find(']');
        out.host = to_lower(authority.substr(1, close - 1));
        if (close + 1 < authority.size()) {
            port_text = authority.substr(close + 2);
        }
    } else {
        const auto colon = authority.find(':');
        out.host = to_lower(authority.substr(0, colon));
        if (colon != std::string_view::npos) {
            port_text = authority.substr(colon + 1);
        }
    }
    if (!port_text.empty()) {
        out.port = parse_port(port_text);
        if (!out.port) {
            return std::nullopt;
        }
    }
    return out;
}

std::string authority_of(const config::endpoint_url& u) {
    std::string out = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
    const std::uint16_t default_port = u.scheme == "http" ? 80 : 443;
    if (u.port != 0 && u.port != default_port) {
        out += ':';
        out += std::to_string(u.port);
    }
    return out;
}

config::endpoint_url default_endpoint(std::string_view host) {
    config::endpoint_url u;
    u.scheme = "https";
    u.port = 443;
    if (to_lower(host) == "docker.io") {
        u.host = "registry-1.docker.io";
        return u;
    }
    if (auto hp = split_host_port(host)) {
        u.host = hp->host;
        u.port = hp->port.value_or(443);
    } else {
        u.host = to_lower(host);
    }
    return u;
}

route_table::route_table(std::shared_ptr<const config::config> cfg) : cfg_(std::move(cfg)) {
    const auto& c = *cfg_;
    auto upstream_for = [&c](const std::string& host) {
        if (auto it = c.endpoint_overrides.find(host); it != c.endpoint_overrides.end()) {
            return it->second;
        }
        return default_endpoint(host);
    };
    for (const auto& r : c.registries) {
        route rt;
        rt.host = to_lower(r.host);
        rt.kind = route_kind::registry;
        rt.upstream = upstream_for(rt.host);
        rt.ca_file = r.ca_file;
        rt.insecure_skip_verify = r.insecure_skip_verify;
        rt.registry = &r;
        routes_.push_back(std::move(rt));
    }
    for (const auto& inst : c.acr_instances) {
        for (const auto& domain : inst.domains) {
            route rt;
            rt.host = to_lower(domain);
            rt.kind = route_kind::acr_instance;
            rt.upstream = upstream_for(rt.host);
            rt.acr = &inst;
            routes_.push_back(std::move(rt));
        }
    }
    index();
}

void route_table::index() {
    by_host_.clear();
    default_ = nullptr;
    for (std::size_t i = 0; i < routes_.size(); ++i) {
        by_host_.emplace(routes_[i].host, i);  // first one wins
    }
    if (cfg_ && !cfg_->default_registry.empty()) {
        default_ = find(cfg_->default_registry);
    }
}

route_table::route_table(route_table&& other) noexcept
    : cfg_(std::move(other.cfg_)), routes_(std::move(other.routes_)), by_host_(std::move(other.by_host_)) {
    default_ = other.default_;  // routes_ moved: element addresses are unchanged
    other.default_ = nullptr;
}

route_table& route_table::operator=(route_table&& other) noexcept {
    cfg_ = std::move(other.cfg_);
    routes_ = std::move(other.routes_);
    by_host_ = std::move(other.by_host_);
    default_ = other.default_;
    other.default_ = nullptr;
    return *this;
}

route_table::~route_table() = default;

const route* route_table::find(std::string_view host) const {
    if (host.empty()) {
        return nullptr;
    }
    auto it = by_host_.find(to_lower(host));
    return it == by_host_.end() ? nullptr : &routes_[it->second];
}

const route* route_table::resolve(const std::optional<std::string>& ns) const {
    return ns ? find(*ns) : default_;
}

}  // namespace acp::routing
