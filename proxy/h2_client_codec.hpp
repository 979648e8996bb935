// One HTTP/2 client connection's protocol state (RFC 9113) as a sans-I/O codec
// around an nghttp2 client session: bytes in through receive(), bytes out
// through next_output()/consumed_output(), requests and their response events
// per stream. No socket, no timer, no callback into the caller: what the
// server said lands in per-stream event queues, and take_ready_streams() names
// the streams that have something new, so the connection's reader coroutine
// wakes exactly those streams' coroutines.
//
// Flow control follows the consumer (as nghttpx does): body bytes are queued
// per stream and WINDOW_UPDATE credit goes back only when consume() says that
// many bytes were written downstream, so a stream never holds more than its
// window (stream_window) and the connection never more than connection_window.
//
// Owns: the nghttp2 session, the output bytes not yet taken by the writer and
// the streams' queued events. Thread affinity: one thread (the connection's
// io_context strand); nothing locks. There is no async call: the connection's
// ONE writer coroutine drains next_output() while wants_write(), its reader
// feeds receive(); cancel() resets a stream whose downstream went away.
#pragma once

#include "proxy/error.hpp"
#include "proxy/net.hpp"

#include <boost/system/result.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace acp::proxy {

struct h2_settings {
    std::uint32_t stream_window = 256 * 1024;            // SETTINGS_INITIAL_WINDOW_SIZE we announce
    std::uint32_t connection_window = 16 * 1024 * 1024;  // the connection-level receive window
    std::uint32_t max_header_list = 64 * 1024;           // SETTINGS_MAX_HEADER_LIST_SIZE, enforced on receipt
};

/// A request field as the caller has it (any case); submit_request filters it.
struct h2_field {
    std::string_view name;
    std::string_view value;
};

struct h2_request {
    std::string_view method;     // GET or HEAD: no body is ever sent
    std::string_view scheme;     // "https" (or "http" for h2c)
    std::string_view authority;  // host[:port]; empty: taken from a Host field
    std::string_view path;       // origin-form target, query included
    std::span<const h2_field> fields;
};

/// The final response head; 1xx heads and trailers never appear.
struct h2_response_head {
    unsigned status = 0;
    http::fields fields;  // lower-case names as received, repeated lines kept in order
};

struct h2_event {
    enum class kind {
        headers,  // `head` is the final response head (once, first)
        data,     // `data` holds body bytes; consume() them once written downstream
        end,      // the response is complete (last event)
        reset,    // the stream ended without a complete response (last event)
    };
    kind type = kind::end;
    h2_response_head head;
    std::string data;
    failure error;               // reset: upstream_unreachable (reset, GOAWAY, connection loss) or upstream_protocol
    std::uint32_t h2_error = 0;  // reset: the RST_STREAM / GOAWAY error code (RFC 9113 §7), 0 when none
    bool retryable = false;      // reset: the server never processed the request (GOAWAY above its last id,
                                 // REFUSED_STREAM, or never sent): a GET/HEAD may go on another connection
};

class h2_client_codec {
public:
    /// Queues the client preface: SETTINGS (no push, our windows and header
    /// list limit) and the connection WINDOW_UPDATE. wants_write() is true.
    explicit h2_client_codec(const h2_settings& s = {});
    ~h2_client_codec();
    h2_client_codec(h2_client_codec&&) noexcept;
    h2_client_codec& operator=(h2_client_codec&&) noexcept;
    h2_client_codec(const h2_client_codec&) = delete;
    h2_client_codec& operator=(const h2_client_codec&) = delete;

    // ---- bytes in / out -------------------------------------------------------------------------------------------

    /// Feeds bytes read from the peer. An error means the connection is dead
    /// (upstream_protocol: the peer broke HTTP/2; the codec then queues a
    /// GOAWAY worth sending) and every open stream got a reset event.
    boost::system::result<void, failure> receive(std::span<const std::uint8_t> bytes);

    /// Something to send: drain next_output() until this turns false.
    [[nodiscard]] bool wants_write() const noexcept;
    /// The next bytes to write (empty when none); valid until the next call
    /// into the codec other than consumed_output().
    std::span<const std::uint8_t> next_output();
    /// `n` bytes of next_output() were written.
    void consumed_output(std::size_t n) noexcept;
    /// The peer may still send something worth reading.
    [[nodiscard]] bool wants_read() const noexcept;
    /// Nothing to read or write any more: close the socket.
    [[nodiscard]] bool finished() const noexcept;

    /// The socket failed or the peer closed it: every unfinished stream gets a
    /// reset event (upstream_unreachable; retryable when its request was never
    /// sent or lay above a GOAWAY's last id). The codec accepts no more requests.
    void connection_lost(std::string_view detail);

    // ---- streams ---------------------------------------------------------------------------------------------------

    /// Opens a stream for a bodiless request. Field names are lower-cased;
    /// hop-by-hop fields (Connection and what it names, Keep-Alive,
    /// Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, Transfer-Encoding,
    /// Upgrade, Trailer, TE unless "trailers"), Host (→ :authority),
    /// Content-Length and Expect are dropped; Authorization and Cookie are sent
    /// never-indexed (HPACK, RFC 7541 §7.1.3). Fails when !can_submit()
    /// (upstream_unreachable, retryable elsewhere) or a field is not valid in
    /// HTTP/2 (bad_request).
    boost::system::result<std::int32_t, failure> submit_request(const h2_request& r);

    /// The next event of a stream, in order; nullopt when none is queued (or the stream is unknown).
    std::optional<h2_event> next_event(std::int32_t stream);
    /// The streams that got events since the last call, each once.
    std::vector<std::int32_t> take_ready_streams();

    /// `n` body bytes of the stream were written downstream: the peer may send
    /// that many more (WINDOW_UPDATE once half a window is consumed).
    void consume(std::int32_t stream, std::size_t n);

    /// The caller is done with the stream, in any state: an open stream is
    /// reset (RST_STREAM CANCEL), its queued events dropped, and every byte it
    /// received but did not consume() is credited back to the connection
    /// window. The stream is forgotten. Call it for every submitted stream.
    void cancel(std::int32_t stream);
    void release(std::int32_t stream) { cancel(stream); }

    /// Body bytes received for the stream and not consume()d yet (≤ stream_window).
    [[nodiscard]] std::size_t unconsumed_bytes(std::int32_t stream) const noexcept;
    /// Body bytes received on all streams and not consume()d yet.
    [[nodiscard]] std::size_t unconsumed_bytes() const noexcept;

    // ---- connection state -----------------------------------------------------------------------------------------

    /// A new stream may be opened now: no GOAWAY either way, no connection
    /// error, and fewer open streams than the peer's MAX_CONCURRENT_STREAMS.
    [[nodiscard]] bool can_submit() const noexcept;
    /// Streams submitted and not yet closed by the protocol (a finished stream
    /// whose events are still queued does not count).
    [[nodiscard]] std::size_t open_streams() const noexcept;
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS (100 until its SETTINGS arrive).
    [[nodiscard]] std::uint32_t peer_max_concurrent_streams() const noexcept;
    [[nodiscard]] bool goaway_received() const noexcept;
    /// The last stream id of the peer's GOAWAY (streams above it are retryable).
    [[nodiscard]] std::optional<std::int32_t> goaway_last_stream_id() const noexcept;
    /// Why the connection failed (empty while it has not).
    [[nodiscard]] const std::optional<failure>& connection_error() const noexcept;

    /// Queues a PING; returns its sequence number (1, 2, ...).
    std::uint64_t submit_ping();
    /// The highest sequence number whose PING ack arrived (0: none yet).
    [[nodiscard]] std::uint64_t ping_acked() const noexcept;

    /// Graceful close: GOAWAY(NO_ERROR); open streams finish, no new ones.
    void shutdown();

    /// Bytes held for the writer (what next_output() has not handed out yet).
    [[nodiscard]] std::size_t buffered_output() const noexcept;

    struct impl;  // all state; stays put when the codec moves (nghttp2 holds its address)

private:
    std::unique_ptr<impl> impl_;
};

}  // namespace acp::proxy
