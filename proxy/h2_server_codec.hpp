// One downstream HTTP/2 connection's protocol state (RFC 9113) as a sans-I/O
// codec around an nghttp2 SERVER session: bytes in through receive(), bytes
// out through next_output()/consumed_output(), request heads and client
// resets as events, responses submitted per stream. No socket, no timer, no
// callback into the caller (the mirror of h2_client_codec).
//
// Backpressure follows the client (as nghttpx does): body bytes pushed for a
// stream wait in that stream's queue until nghttp2's data provider takes them,
// which it does only as far as the client's flow-control window allows
// (NGHTTP2_ERR_DEFERRED while the queue is empty, nghttp2_session_resume_data
// when bytes arrive). The caller pushes only while queued_bytes(stream) is
// below settings.stream_queue_bound, so a client that stops reading stops the
// relay and the memory per stream stays at about one bound.
//
// Limits (what a hostile client can make us hold):
//  - SETTINGS_MAX_CONCURRENT_STREAMS = max_concurrent_streams; a request is
//    also refused (RST_STREAM REFUSED_STREAM) while that many handlers are
//    still running: a stream counts from its request event until release(),
//    even after the client reset it (nghttp2 forgets a reset stream at once,
//    our handler does not stop at once: the CVE-2023-44487 point);
//  - SETTINGS_MAX_HEADER_LIST_SIZE = max_header_list, enforced on receipt
//    (RFC 9113 §6.5.2 accounting: name + value + 32 per field), and at most
//    max_header_fields fields: the request event says too_large (answer 431),
//    the connection lives;
//  - rapid reset: every stream the client resets before its response was
//    complete takes a token from a bucket of reset_burst tokens refilled at
//    reset_refill_per_second; an empty bucket → GOAWAY(ENHANCE_YOUR_CALM),
//    the connection is done. (200 / 100 per second: a browser-like client
//    that cancels now and then never comes near; the CVE's tool resets
//    thousands a second.)
//
// Owns: the nghttp2 session, the output bytes not yet taken by the writer, the
// queued events and each stream's body queue. Thread affinity: one thread
// (the connection's io_context); nothing locks. There is no async call: the
// connection's ONE writer coroutine drains next_output() while wants_write(),
// its reader feeds receive().
#pragma once

#include "proxy/error.hpp"

#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace acp::proxy {

/// The client connection preface (RFC 9113 §3.4).
inline constexpr std::string_view h2_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// True while `bytes` is a prefix of the preface, or begins with all of it:
/// what the HTTP/1.1 session checks on the first bytes of a connection.
[[nodiscard]] bool starts_like_h2_preface(std::string_view bytes) noexcept;

struct h2_server_settings {
    std::uint32_t max_concurrent_streams = 100;   // limits.max_concurrent_streams
    std::uint32_t max_header_list = 16 * 1024;    // SETTINGS_MAX_HEADER_LIST_SIZE, as HTTP/1.1's 16 KiB
    std::size_t max_header_fields = 100;          // as the HTTP/1.1 session
    std::size_t stream_queue_bound = 64 * 1024;   // body bytes the caller queues per stream before it waits
    std::uint32_t reset_burst = 200;              // premature client resets allowed at once
    std::uint32_t reset_refill_per_second = 100;  // ... and per second after that
};

/// A response field as the caller has it (any case); submit_response filters it.
struct h2_response_field {
    std::string_view name;
    std::string_view value;
};

/// A complete request head (HEADERS + CONTINUATION decoded).
struct h2_request_head {
    std::string method;
    std::string scheme;
    std::string authority;                                    // :authority, or the Host field when it is absent
    std::string path;                                         // :path (origin-form, query included)
    std::vector<std::pair<std::string, std::string>> fields;  // regular fields, lower-case, in order
    bool has_body = false;   // END_STREAM was not on the HEADERS: a body (or trailers) follows
    bool too_large = false;  // over max_header_list or max_header_fields: `fields` is incomplete, answer 431
};

struct h2_server_event {
    enum class kind {
        request,  // a new stream's request head: start its handler
        reset,    // the client reset the stream (or it closed) before its response was complete: stop the handler
    };
    kind type = kind::request;
    std::int32_t stream = 0;
    h2_request_head head;        // request
    std::uint32_t h2_error = 0;  // reset: the RST_STREAM error code (RFC 9113 §7)
};

class h2_server_codec {
public:
    using clock = std::chrono::steady_clock;

    /// Queues the server preface: SETTINGS (MAX_CONCURRENT_STREAMS,
    /// MAX_HEADER_LIST_SIZE). wants_write() is true. The client preface is
    /// expected as the first bytes given to receive().
    explicit h2_server_codec(const h2_server_settings& s = {});
    ~h2_server_codec();
    h2_server_codec(h2_server_codec&&) noexcept;
    h2_server_codec& operator=(h2_server_codec&&) noexcept;
    h2_server_codec(const h2_server_codec&) = delete;
    h2_server_codec& operator=(const h2_server_codec&) = delete;

    // ---- bytes in / out -------------------------------------------------------------------------------------------

    /// Feeds bytes read from the client; `now` drives the rapid-reset bucket.
    /// An error means the connection is done: malformed_http (the client
    /// broke HTTP/2, or reset streams too fast), with a GOAWAY queued that is
    /// worth sending before closing. Per-stream errors are not errors here.
    boost::system::result<void, failure> receive(std::span<const std::uint8_t> bytes,
                                                 clock::time_point now = clock::now());

    /// Something to send: drain next_output() until this turns false.
    [[nodiscard]] bool wants_write() const noexcept;
    /// The next bytes to write (empty when none); valid until the next
    /// next_output() call: receive() and the stream calls never touch them,
    /// so the reader may run while the writer's write is in flight.
    std::span<const std::uint8_t> next_output();
    /// `n` bytes of next_output() were written.
    void consumed_output(std::size_t n) noexcept;
    /// The client may still send something worth reading.
    [[nodiscard]] bool wants_read() const noexcept;
    /// Nothing to read or write any more: close the socket.
    [[nodiscard]] bool finished() const noexcept;

    // ---- events ---------------------------------------------------------------------------------------------------

    /// Requests and resets since the last call, in the order they happened.
    std::vector<h2_server_event> take_events();
    /// Streams whose queue, above stream_queue_bound, gave bytes to the
    /// client (or that can take no more bytes: reset, closed) since the last
    /// call, each once: the writers waiting on them see progress, and go on
    /// once queued_bytes() is at or below the bound.
    std::vector<std::int32_t> take_drained_streams();

    // ---- responses ------------------------------------------------------------------------------------------------

    /// The response head. Names are lower-cased; connection-specific fields
    /// (Connection and what it names, Keep-Alive, Proxy-Connection,
    /// Transfer-Encoding, Upgrade, TE) and fields invalid in HTTP/2 are
    /// dropped. `has_body` false: END_STREAM on the HEADERS, the response is
    /// complete. Fails (bad_request) when the stream is not open for a
    /// response: reset, already answered, unknown.
    boost::system::result<void, failure> submit_response(std::int32_t stream, unsigned status,
                                                         std::span<const h2_response_field> fields, bool has_body);
    /// Queues body bytes (after a submit_response with has_body). False when
    /// the stream can take no more (reset, closed, the body ended).
    bool push_body(std::int32_t stream, std::span<const std::uint8_t> bytes);
    /// The body is complete: END_STREAM after the queued bytes.
    bool end_body(std::int32_t stream);
    /// Body bytes queued for the stream and not yet framed.
    [[nodiscard]] std::size_t queued_bytes(std::int32_t stream) const noexcept;
    /// The stream can still carry its response (not reset or closed).
    [[nodiscard]] bool writable(std::int32_t stream) const noexcept;
    /// Resets a stream whose response cannot complete (the handler failed, the
    /// client did not take the bytes in time). `code`: an RFC 9113 error code.
    void reset_stream(std::int32_t stream, std::uint32_t code);
    /// The stream's handler has stopped: it no longer counts against the
    /// concurrency limit; a response not yet complete is reset
    /// (INTERNAL_ERROR). Call it once for every request event.
    void release(std::int32_t stream);

    // ---- connection state -----------------------------------------------------------------------------------------

    /// Graceful close: GOAWAY(NO_ERROR) with the last stream id processed; the
    /// streams up to it finish, later ones are ignored.
    void shutdown();
    /// Handlers running (request events not yet released).
    [[nodiscard]] std::size_t active_streams() const noexcept;
    /// Streams reset by the client before their response completed, and responses completed.
    [[nodiscard]] std::uint64_t premature_resets() const noexcept;
    [[nodiscard]] std::uint64_t completed_responses() const noexcept;
    /// Why the connection failed (empty while it has not).
    [[nodiscard]] const std::optional<failure>& connection_error() const noexcept;
    /// Bytes held for the writer (what next_output() has not handed out yet).
    [[nodiscard]] std::size_t buffered_output() const noexcept;
    /// Body bytes queued over every stream.
    [[nodiscard]] std::size_t queued_bytes() const noexcept;

    struct impl;  // all state; stays put when the codec moves (nghttp2 holds its address)

private:
    std::unique_ptr<impl> impl_;
};

}  // namespace acp::proxy
