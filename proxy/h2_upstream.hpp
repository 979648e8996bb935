// Shared, multiplexed HTTP/2 connections to upstream registries (RFC 9113),
// on the sans-I/O h2_client_codec, as nghttpx shares its backend sessions.
//
// Owns: h2_upstream_pool (per pool_key a list of HTTP/2 connections, the
// single-flight connects and the "this origin speaks HTTP/1.1 only" memo),
// the connections themselves (each: its socket, its codec, ONE reader and
// ONE writer coroutine and a liveness timer; alive while the pool, a stream
// handle or one of its coroutines holds it), and h2_upstream_stream (the
// handle a request coroutine owns for one request/response exchange).
//
// Thread affinity: one io_context thread (the executor given to the pool);
// nothing locks. Async calls complete on that executor. Cancellation: a
// stream's cancel() makes its pending read complete with an error at once;
// destroying the handle resets the stream (RST_STREAM CANCEL) and gives its
// window credit back; close_all() closes every connection, so every pending
// read fails. Liveness: a connection without streams sends a PING after
// ping_interval and is dead without an ACK within ping_timeout; one idle for
// max_idle_age sends GOAWAY and closes. A peer's GOAWAY: no new streams, the
// open ones finish, then the connection closes itself.
//
// Flow control follows the consumer: window credit goes back only through
// consumed(), so a stalled downstream holds at most the stream window.
// Errors never carry a secret (Authorization travels never-indexed in HPACK
// and is never put into a message).
#pragma once

#include "config/config.hpp"
#include "proxy/error.hpp"
#include "proxy/h2_client_codec.hpp"
#include "proxy/net.hpp"
#include "proxy/snapshot.hpp"
#include "proxy/upstream_pool.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace acp::proxy {

class metrics;
class h2_upstream_connection;  // internal (h2_upstream.cpp)

/// One request/response exchange on a shared HTTP/2 connection. Move-only;
/// the destructor releases the stream (RST_STREAM CANCEL while it is open,
/// unconsumed bytes credited back to the connection).
class h2_upstream_stream {
public:
    h2_upstream_stream() = default;
    h2_upstream_stream(std::shared_ptr<h2_upstream_connection> c, std::int32_t id);
    ~h2_upstream_stream();
    h2_upstream_stream(h2_upstream_stream&& o) noexcept;
    h2_upstream_stream& operator=(h2_upstream_stream&& o) noexcept;
    h2_upstream_stream(const h2_upstream_stream&) = delete;
    h2_upstream_stream& operator=(const h2_upstream_stream&) = delete;

    /// The final response head, within `timeout`. Failures: upstream_timeout
    /// (deadline), upstream_unreachable (reset, GOAWAY, connection lost,
    /// cancel()), upstream_protocol (the peer broke HTTP/2).
    net::awaitable<boost::system::result<h2_response_head, failure>> read_head(config::duration timeout);

    /// After a failed read_head: the server never processed the request
    /// (GOAWAY above its last id, REFUSED_STREAM, or never sent): a GET/HEAD
    /// may go again on another connection (h2_upstream_pool::open again).
    [[nodiscard]] bool retryable() const noexcept { return retryable_; }

    /// The next body bytes, waiting at most `idle` for them. An EMPTY span
    /// means the response is complete (END_STREAM). The bytes stay valid
    /// until the next call; pass what was written downstream to consumed().
    /// Failures as read_head's (upstream_timeout when `idle` passed).
    net::awaitable<boost::system::result<std::span<const std::uint8_t>, failure>> read_some(config::duration idle);

    /// `n` body bytes were written downstream: the peer may send that many more.
    void consumed(std::size_t n);

    /// Stop hook: a pending read completes with an error at once, later ones too.
    void cancel() noexcept;

    /// Releases the stream now (what the destructor does).
    void reset() noexcept;

    [[nodiscard]] bool valid() const noexcept { return conn_ != nullptr; }
    [[nodiscard]] std::int32_t id() const noexcept { return id_; }
    /// Body bytes received for this stream and not consumed() yet (≤ the stream window).
    [[nodiscard]] std::size_t unconsumed_bytes() const noexcept;

private:
    net::awaitable<boost::system::result<h2_event, failure>> next_event(config::duration timeout, const char* what);
    void coalesce_queued();

    std::shared_ptr<h2_upstream_connection> conn_;
    std::int32_t id_ = 0;
    std::string chunk_;              // the bytes of the last read_some
    std::optional<failure> failed_;  // the reset delivered (later reads repeat it)
    bool retryable_ = false;
    bool done_ = false;  // END_STREAM was delivered
    bool cancelled_ = false;
};

/// open() could not use HTTP/2 because the origin picked HTTP/1.1 in ALPN
/// (found out by another request's connect): use the HTTP/1.1 pool.
struct h2_use_h1 {};

/// What h2_upstream_pool::open() gives: a stream submitted on a shared
/// connection; a fresh HTTP/1.1 connection (this request's connect got
/// http/1.1 under `automatic`: use it as upstream_pool's); go to the HTTP/1.1
/// pool; or a failure classified like connect_upstream's.
using h2_open_result = std::variant<h2_upstream_stream, std::unique_ptr<upstream_connection>, h2_use_h1, failure>;

class h2_upstream_pool {
public:
    using clock = std::chrono::steady_clock;

    explicit h2_upstream_pool(net::any_io_executor ex);
    ~h2_upstream_pool();
    h2_upstream_pool(const h2_upstream_pool&) = delete;
    h2_upstream_pool& operator=(const h2_upstream_pool&) = delete;

    /// HTTP/2 for this endpoint: http2 on, or automatic over TLS and not
    /// remembered (for 10 minutes, until clear()) as an HTTP/1.1-only origin.
    [[nodiscard]] bool wants_h2(const upstream_endpoint& ep) const;

    /// Submits `req` on a connection for `ep.pool_key` that can take a stream;
    /// connects a NEW one only when none can (e.g. all at the peer's
    /// MAX_CONCURRENT_STREAMS). Concurrent opens on a cold key share ONE
    /// connect and wait for its outcome. Metrics: on_upstream_connection(false)
    /// for a new connection (the HTTP/1.1 one handed back included: do not
    /// count it again), (true) for a stream on an existing one; TLS handshakes
    /// and the h2 connection gauge too. `stats` must outlive the pool's
    /// connections, and the pool every open() in progress (close_all(), then
    /// wait for the request tasks, then destroy).
    net::awaitable<h2_open_result> open(const upstream_endpoint& ep, const h2_request& req,
                                        config::duration connect_timeout, metrics& stats);

    /// Config reload: a new generation; idle connections send GOAWAY and
    /// close, busy ones take no new streams and close once they finish. The
    /// HTTP/1.1 memo is dropped.
    void clear();
    /// Shutdown: every connection closed now, every pending read fails, opens waiting for a connect fail.
    void close_all();

    /// Connections open now (busy or idle, not yet closed), over all keys.
    [[nodiscard]] std::size_t connection_count() const;

    // Liveness knobs (defaults: PING after 15 s without streams, dead without
    // an ACK within 5 s, GOAWAY + close after 30 s idle like upstream_pool).
    // They apply to connections made afterwards.
    void set_ping_interval(config::duration d) noexcept { ping_interval_ = d; }
    void set_ping_timeout(config::duration d) noexcept { ping_timeout_ = d; }
    void set_max_idle_age(config::duration d) noexcept { max_idle_age_ = d; }
    void set_h1_memo_age(config::duration d) noexcept { h1_memo_age_ = d; }
    void set_settings(const h2_settings& s) noexcept { settings_ = s; }

private:
    struct pending_connect;

    void prune(const std::string& key);

    net::any_io_executor ex_;
    std::unordered_map<std::string, std::vector<std::shared_ptr<h2_upstream_connection>>> conns_;
    std::unordered_map<std::string, std::shared_ptr<pending_connect>> connecting_;
    std::unordered_map<std::string, clock::time_point> h1_only_;  // pool_key → when it chose http/1.1
    std::uint64_t generation_ = 0;
    std::uint64_t closed_generation_ = 0;  // connects begun before close_all() are dropped
    config::duration ping_interval_ = std::chrono::seconds(15);
    config::duration ping_timeout_ = std::chrono::seconds(5);
    config::duration max_idle_age_ = std::chrono::seconds(30);
    config::duration h1_memo_age_ = std::chrono::minutes(10);
    h2_settings settings_;
};

}  // namespace acp::proxy
