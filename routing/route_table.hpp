// The route table: which upstream registry a request's `ns` (or the
// configured default registry) names, and how to reach it.
//
// Owns: one immutable table per config snapshot; it keeps the snapshot alive
// (routes point into it). Built once, then read from any thread without
// locks. Host lookup is exact, case-insensitive and port-aware:
// `reg.example:5000` and `reg.example` are different routes.
#pragma once

#include "config/config.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace acp::routing {

/// Where the credentials for a route come from (tokens/ picks the provider).
enum class route_kind {
    registry,      // a `registries[]` entry: anonymous, static Basic or a docker config
    acr_instance,  // a domain of an `acrInstances[]` entry
};

/// "host", "host:port" or "[v6]:port" split into parts. nullopt when malformed.
struct host_port {
    std::string host;  // lower-case; IPv6 without brackets
    std::optional<std::uint16_t> port;
};
std::optional<host_port> split_host_port(std::string_view authority);

/// host[:port] for a Host header or a log line; the port is omitted when it is
/// the scheme's default. IPv6 literals are bracketed.
std::string authority_of(const config::endpoint_url& u);

struct route {
    std::string host;  // the registry name as containerd sends it in `ns` (lower-case)
    route_kind kind = route_kind::registry;
    config::endpoint_url upstream;  // where requests go (endpointOverrides, else https://host)
    std::string ca_file;            // empty: the system bundle
    bool insecure_skip_verify = false;
    const config::registry* registry = nullptr;  // kind == registry
    const config::acr_instance* acr = nullptr;   // kind == acr_instance
};

class route_table {
public:
    route_table() = default;
    /// Registries first, then ACR domains; a host listed twice keeps its first route.
    explicit route_table(std::shared_ptr<const config::config> cfg);

    /// The route for an `ns` value (any case), or nullptr.
    [[nodiscard]] const route* find(std::string_view host) const;
    /// The route for requests without `ns` (`defaultRegistry`), or nullptr.
    [[nodiscard]] const route* default_route() const noexcept { return default_; }
    /// find(*ns) when present, else default_route().
    [[nodiscard]] const route* resolve(const std::optional<std::string>& ns) const;

    [[nodiscard]] std::span<const route> routes() const noexcept { return routes_; }
    [[nodiscard]] const config::config& cfg() const noexcept { return *cfg_; }

    route_table(route_table&&) noexcept;
    route_table& operator=(route_table&&) noexcept;
    route_table(const route_table&) = delete;
    route_table& operator=(const route_table&) = delete;
    ~route_table();

private:
    void index();

    std::shared_ptr<const config::config> cfg_;
    std::vector<route> routes_;
    std::unordered_map<std::string, std::size_t> by_host_;
    const route* default_ = nullptr;
};

/// The upstream for a registry host without an override: https://host[:port],
/// except `docker.io`, whose API lives at registry-1.docker.io (as containerd does).
config::endpoint_url default_endpoint(std::string_view host);

}  // namespace acp::routing
