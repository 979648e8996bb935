// The data and admin listeners of one io_context, and their lifecycle:
// listen, accept (every session tracked), snapshot swaps, graceful shutdown.
//
// Owns: the acceptors (moved into their accept-loop coroutines) and the
// server_state shared with every session. Thread affinity: construct and
// call everything on (or before running) the io_context's thread.
// shutdown() stops accepting (serving what already sits in the data
// listener's queue), lets in-flight requests finish for
// timeouts.shutdownGrace, then cancels the rest and waits for every task.
#pragma once

#include "proxy/listeners.hpp"
#include "proxy/net.hpp"
#include "proxy/server_state.hpp"
#include "proxy/task_group.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <optional>
#include <string>

namespace acp::proxy {

class server {
public:
    /// `upstreams` (optional): filled with this server's shared connections
    /// until it is destroyed, for the realm fetchers of its snapshots.
    server(net::io_context& ioc, std::shared_ptr<const snapshot> initial,
           std::shared_ptr<shared_upstreams> upstreams = nullptr);
    server(const server&) = delete;
    server& operator=(const server&) = delete;
    ~server();

    /// Opens both listeners from the snapshot's config (port 0: any free
    /// port): a socket from `inherited` (systemd) with the same address, else a
    /// new one (SO_REUSEPORT with opts.reuse_port); see listeners.hpp. On
    /// failure returns the error and says which address in `what`.
    error_code listen(std::string& what, std::vector<inherited_socket>& inherited, const listener_options& opts);
    error_code listen(std::string& what) {
        std::vector<inherited_socket> none;
        return listen(what, none, {});
    }
    /// Starts the accept loops (after listen()).
    void start();

    [[nodiscard]] tcp::endpoint data_endpoint() const noexcept { return data_endpoint_; }
    [[nodiscard]] tcp::endpoint admin_endpoint() const noexcept { return admin_endpoint_; }
    /// The TLS data listener's address (tlsListen); unset without one.
    [[nodiscard]] std::optional<tcp::endpoint> tls_endpoint() const {
        return tls_ctx_ ? std::optional<tcp::endpoint>(tls_endpoint_) : std::nullopt;
    }
    [[nodiscard]] listener_origin data_origin() const noexcept { return data_origin_; }
    [[nodiscard]] listener_origin admin_origin() const noexcept { return admin_origin_; }
    [[nodiscard]] const std::shared_ptr<server_state>& state() const noexcept { return state_; }
    /// For snapshots built for this server (build_snapshot's `shared`).
    [[nodiscard]] std::shared_ptr<const shared_upstreams> upstreams() const noexcept { return upstreams_; }

    /// Publishes a new snapshot (on the io_context thread): new requests use
    /// it, in-flight ones keep theirs; idle upstream connections are dropped.
    void apply(std::shared_ptr<const snapshot> next);

    net::awaitable<void> shutdown();

private:
    net::io_context& ioc_;
    std::shared_ptr<server_state> state_;
    std::shared_ptr<shared_upstreams> upstreams_;
    std::optional<tcp::acceptor> data_acceptor_;
    std::optional<tcp::acceptor> admin_acceptor_;
    std::optional<tcp::acceptor> tls_acceptor_;
    std::shared_ptr<net::ssl::context> tls_ctx_;  // the TLS listener's, read once at start
    tcp::endpoint tls_endpoint_;
    listener_origin tls_origin_ = listener_origin::bound;
    tcp::endpoint data_endpoint_;
    tcp::endpoint admin_endpoint_;
    listener_origin data_origin_ = listener_origin::bound;
    listener_origin admin_origin_ = listener_origin::bound;
    task_group listeners_{"listener"};
};

}  // namespace acp::proxy
