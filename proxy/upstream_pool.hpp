// Upstream (proxy → registry) HTTP/1.1 connections over TCP or TLS, how they
// are opened (async DNS, connect timeout, SNI, hostname verification) and a
// bounded keep-alive pool per origin.
//
// Owns: upstream_connection (one socket, plain or TLS, its read buffer and
// its lazy deadline) and upstream_pool. Thread affinity: the io_context
// thread of the requests using them; nothing locks. Cancellation: close()
// makes any pending operation complete with an error; so does the deadline
// (the operation then reports beast::error::timeout); connect_upstream() is
// bounded by its timeout (name resolution by the system resolver's own limits).
#pragma once

#include "config/config.hpp"
#include "proxy/deadline.hpp"
#include "proxy/error.hpp"
#include "proxy/net.hpp"
#include "proxy/snapshot.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>

namespace acp::proxy {

class metrics;

/// The bare transport of an upstream connection, moved out of it to carry
/// HTTP/2 (upstream_connection::release_transport()).
struct upstream_transport {
    std::variant<tcp::socket, beast::ssl_stream<tcp::socket>> stream;
    std::shared_ptr<net::ssl::context> tls_ctx;  // outlives the SSL object; null for plain
};

class upstream_connection {
public:
    using plain_stream = tcp::socket;
    using tls_stream = beast::ssl_stream<tcp::socket>;
    using io_result = std::tuple<error_code, std::size_t>;

    upstream_connection(plain_stream s, std::string pool_key);
    upstream_connection(tls_stream s, std::shared_ptr<net::ssl::context> ctx, std::string pool_key);

    net::awaitable<io_result> write(http::request<http::empty_body>& req);
    net::awaitable<io_result> read_header(http::response_parser<http::buffer_body>& p);
    net::awaitable<io_result> read(http::response_parser<http::buffer_body>& p);
    /// Parses what one socket read brings (or what is already buffered): body
    /// bytes reach the caller as they arrive, not once the body buffer is full.
    net::awaitable<io_result> read_some(http::response_parser<http::buffer_body>& p);
    /// Body bytes straight from the socket (or TLS) into `b`, once the head is
    /// parsed and buffer() drained: what one read brings, no parser, no copy.
    net::awaitable<io_result> read_some(net::mutable_buffer b);

    /// The deadline for what follows (every operation until changed), checked
    /// lazily: no timer system call per operation.
    void expires_after(config::duration d) { deadline_.expires_after(d); }
    void expires_never() noexcept { deadline_.expires_never(); }
    void close() noexcept;

    /// Open and nothing unread: worth reusing. A peer that closed it meanwhile
    /// is found out by the request failing before any byte of the answer, and
    /// forward retries the GET/HEAD once on a fresh connection (no MSG_PEEK
    /// probe per reuse).
    [[nodiscard]] bool looks_alive() noexcept;

    [[nodiscard]] beast::flat_buffer& buffer() noexcept { return buffer_; }
    [[nodiscard]] const std::string& pool_key() const noexcept { return pool_key_; }

    /// HTTP/2 was agreed: ALPN picked "h2", or h2c with prior knowledge (http2: on over http).
    [[nodiscard]] bool negotiated_h2() const noexcept { return h2_; }
    void set_negotiated_h2(bool h2) noexcept { h2_ = h2; }
    /// Moves the socket (and the TLS state) out, for an HTTP/2 connection; only
    /// right after connect_upstream (nothing read yet). The connection is empty after.
    upstream_transport release_transport() &&;

    bool reused = false;           // came from the pool
    std::uint64_t generation = 0;  // pool generation it belongs to
    std::chrono::steady_clock::time_point idle_since{};

private:
    tcp::socket& raw_socket() noexcept;

    std::shared_ptr<net::ssl::context> tls_ctx_;  // outlives the SSL object
    std::variant<plain_stream, tls_stream> stream_;
    beast::flat_buffer buffer_;
    std::string pool_key_;
    lazy_deadline deadline_;  // after stream_: detached before the socket goes
    bool h2_ = false;
};

/// Opens a connection to `ep`: resolve (skipped for IP literals), connect,
/// and for https a TLS handshake with SNI and hostname/IP verification, all
/// within `timeout`. Errors are classified (upstream_timeout, upstream_tls,
/// upstream_unreachable) with a detail for the log and the error body.
///
/// `alpn` is what the TLS handshake offers (set on the SSL object, never on
/// the shared context): automatic offers h2 and http/1.1, on offers h2 only
/// and fails with upstream_protocol when the server picks nothing else, off
/// offers nothing (HTTP/1.1). Over plain http, on means h2c with prior
/// knowledge and anything else HTTP/1.1. negotiated_h2() says the outcome.
/// `stats` (may be null) counts each successful TLS handshake.
net::awaitable<boost::system::result<std::unique_ptr<upstream_connection>, failure>> connect_upstream(
    const upstream_endpoint& ep, config::duration timeout, config::http2_mode alpn = config::http2_mode::off,
    metrics* stats = nullptr);

class upstream_pool {
public:
    explicit upstream_pool(std::size_t max_idle_per_origin = 16) : max_idle_per_origin_(max_idle_per_origin) {}

    /// An idle connection for the key that still looks alive, or nullptr.
    std::unique_ptr<upstream_connection> take(const std::string& key);
    /// Returns a connection after a complete, clean response; dropped when
    /// the origin already holds the maximum, or it belongs to an older generation.
    void put(std::unique_ptr<upstream_connection> c);
    /// Drops every idle connection and starts a new generation (config reload).
    void clear();
    void set_max_idle_per_origin(std::size_t n) noexcept { max_idle_per_origin_ = n; }
    void set_max_idle_age(config::duration d) noexcept { max_idle_age_ = d; }

    [[nodiscard]] std::size_t idle_count() const noexcept;
    [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }

private:
    std::unordered_map<std::string, std::deque<std::unique_ptr<upstream_connection>>> idle_;
    std::size_t max_idle_per_origin_;
    config::duration max_idle_age_ = std::chrono::seconds(30);
    std::uint64_t generation_ = 0;
};

}  // namespace acp::proxy
