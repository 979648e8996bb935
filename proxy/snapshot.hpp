// A runtime snapshot: one validated config plus everything derived from it
// that the data path reads (routes, auth providers, upstream endpoints with
// their TLS contexts). Built off the event loop (startup or the control
// thread on reload: it reads CA bundles and docker configs), then immutable.
//
// Owns: snapshot, upstream_endpoint, snapshot_holder (the atomic swap).
// Thread affinity: none once built. A request loads the current snapshot
// once and keeps it to the end, so a reload never disturbs it.
#pragma once

#include "config/config.hpp"
#include "proxy/net.hpp"
#include "proxy/redirect_policy.hpp"
#include "routing/route_table.hpp"
#include "tokens/auth_provider.hpp"

#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace acp::proxy {

/// How to reach one upstream origin.
struct upstream_endpoint {
    http_url origin;                         // scheme, host, port (target unused)
    std::string path_prefix;                 // endpointOverrides path, "" or "/prefix"
    std::shared_ptr<net::ssl::context> tls;  // null for http
    bool verify_peer = true;                 // false only with insecureSkipVerify
    std::string pool_key;                    // origin + TLS profile identity
    // Redirect targets (followRedirects): every resolved address is checked
    // with forbidden_redirect_address() before anything is dialled.
    bool guard_addresses = false;
    bool allow_loopback = false;                         // with guard_addresses: the registry itself is on loopback
    config::http2_mode http2 = config::http2_mode::off;  // the route's `http2` (redirect targets: off)

    [[nodiscard]] bool is_tls() const noexcept { return tls != nullptr; }
};

/// A TLS client context: TLS >= 1.2, peer verification against `ca_file` or
/// the system bundle unless `insecure`. Throws std::runtime_error.
std::shared_ptr<net::ssl::context> make_client_tls_context(const std::string& ca_file, bool insecure);

/// An endpoint for `url`'s origin with the given TLS context (ignored for http).
upstream_endpoint make_endpoint(const http_url& url, std::string path_prefix, std::shared_ptr<net::ssl::context> tls,
                                bool verify_peer);

class h2_upstream_pool;
class metrics;

/// The data path's shared upstream connections, for what runs beside the
/// requests on the event loop (token realm fetches: a realm on the registry's
/// own host goes over the registry's shared HTTP/2 connection). Set by the
/// server that owns them, cleared before it goes; read on its io_context thread.
struct shared_upstreams {
    h2_upstream_pool* h2 = nullptr;
    metrics* stats = nullptr;
};

struct snapshot {
    std::shared_ptr<const config::config> cfg;
    routing::route_table routes;
    tokens::auth_providers auth;
    std::unordered_map<std::string, upstream_endpoint> endpoints;  // by route host
    std::shared_ptr<net::ssl::context> default_tls;  // system bundle, for redirect targets; null unless followRedirects
    std::vector<std::string> warnings;

    [[nodiscard]] const upstream_endpoint* endpoint_for(const routing::route& r) const;
};

/// Builds a snapshot. Blocking (file reads); never call it on the event loop
/// after startup. Throws std::runtime_error with a message fit for the log.
std::shared_ptr<const snapshot> build_snapshot(
    std::shared_ptr<const config::config> cfg,
    const tokens::auth_environment& env = tokens::auth_environment::process(),
    std::shared_ptr<const shared_upstreams> shared = nullptr);

/// The current snapshot, swapped atomically.
class snapshot_holder {
public:
    explicit snapshot_holder(std::shared_ptr<const snapshot> s) : current_(std::move(s)) {}
    [[nodiscard]] std::shared_ptr<const snapshot> load() const noexcept { return current_.load(); }
    void store(std::shared_ptr<const snapshot> s) noexcept { current_.store(std::move(s)); }

private:
    std::atomic<std::shared_ptr<const snapshot>> current_;
};

}  // namespace acp::proxy
