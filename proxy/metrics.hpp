// Prometheus counters for the data plane, rendered by the admin listener.
//
// Owns: plain counters. Thread affinity: the io_context thread that runs the
// data and admin listeners (one worker); nothing here locks. With several
// workers each would own one and the admin endpoint would sum them.
#pragma once

#include "config/config.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>

namespace acp::proxy {

class metrics {
public:
    /// One finished request. `registry` is a route host or "none" (never an
    /// unvalidated ns: label cardinality stays bounded by the config).
    void on_request(std::string_view registry, std::string_view kind, unsigned status, config::duration to_headers);
    void add_relayed_bytes(std::string_view registry, std::uint64_t n);
    void on_upstream_connect_error(std::string_view upstream);
    void on_upstream_tls_error(std::string_view upstream);
    void on_upstream_connection(bool reused);
    /// A successful upstream TLS handshake (HTTP/1.1 or HTTP/2).
    void on_upstream_tls_handshake() noexcept { ++upstream_tls_handshakes_; }
    /// An HTTP/2 upstream connection started / ended (the gauge of those open now).
    void h2_connection_opened() noexcept { ++upstream_h2_connections_; }
    void h2_connection_closed() noexcept { --upstream_h2_connections_; }
    void connection_opened() noexcept { ++open_connections_; }
    void connection_closed() noexcept { --open_connections_; }
    void on_reload(bool ok) noexcept { ++(ok ? reloads_ok_ : reloads_failed_); }
    /// A request answered 404 by the pull scope: `not_referenced` when no pod on
    /// the node references it (after the wait), else only out-of-scope pods do.
    void on_scope_denied(bool not_referenced) noexcept {
        ++(not_referenced ? scope_unreferenced_ : scope_out_of_scope_);
    }
    /// A request that waited for its pod's watch event (whatever came of it).
    void on_scope_wait() noexcept { ++scope_waits_; }

    [[nodiscard]] std::int64_t open_connections() const noexcept { return open_connections_; }
    [[nodiscard]] std::uint64_t upstream_connections_reused() const noexcept { return upstream_reused_; }
    [[nodiscard]] std::uint64_t upstream_connections_new() const noexcept { return upstream_new_; }
    [[nodiscard]] std::uint64_t upstream_tls_handshakes() const noexcept { return upstream_tls_handshakes_; }
    [[nodiscard]] std::int64_t upstream_h2_connections() const noexcept { return upstream_h2_connections_; }

    /// Prometheus text exposition format 0.0.4.
    [[nodiscard]] std::string render() const;

    static constexpr std::array<double, 12> latency_buckets = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25,
                                                               0.5,   1.0,  2.5,   5.0,  10.0, 30.0};

private:
    std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> requests_;  // registry, kind, class
    std::map<std::string, std::uint64_t> relayed_bytes_;
    std::map<std::string, std::uint64_t> connect_errors_;
    std::map<std::string, std::uint64_t> tls_errors_;
    std::array<std::uint64_t, latency_buckets.size()> latency_counts_{};  // non-cumulative
    std::uint64_t latency_count_ = 0;
    double latency_sum_ = 0;
    std::uint64_t upstream_new_ = 0;
    std::uint64_t upstream_reused_ = 0;
    std::int64_t open_connections_ = 0;
    std::uint64_t upstream_tls_handshakes_ = 0;
    std::int64_t upstream_h2_connections_ = 0;
    std::uint64_t reloads_ok_ = 0;
    std::uint64_t reloads_failed_ = 0;
    std::uint64_t scope_out_of_scope_ = 0;
    std::uint64_t scope_unreferenced_ = 0;
    std::uint64_t scope_waits_ = 0;
};

}  // namespace acp::proxy
