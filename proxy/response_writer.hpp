// How the answer to one downstream request goes back to the client, whatever
// carries it: HTTP/1.1 on the accepted connection (plain or TLS), or one
// HTTP/2 stream of a multiplexed connection. forward.cpp and the request
// handler write through this interface only, so routing, auth, limits and
// answers are the same for every protocol.
//
// Owns: nothing here; implementations own their framing state. Thread
// affinity: the io_context thread of the session. Every write completes on
// it, bounded by the writer's idle timeout (beast::error::timeout when the
// client does not take the bytes in time); a writer whose stream or
// connection was stopped completes pending and later writes with an error.
#pragma once

#include "proxy/error.hpp"
#include "proxy/net.hpp"

#include <cstdint>
#include <optional>
#include <string_view>

namespace acp::proxy {

/// What follows a relayed response head.
struct body_shape {
    bool none = false;                    // HEAD, or a response that has no body (204, 304, a complete 0-length)
    std::optional<std::uint64_t> length;  // known length (Content-Length); nullopt: until finish()
};

class response_writer {
public:
    response_writer() = default;
    response_writer(const response_writer&) = delete;
    response_writer& operator=(const response_writer&) = delete;
    virtual ~response_writer() = default;

    /// A reply the proxy makes itself: `r` (registry error JSON, 405's Allow,
    /// whether the connection must close) or, with r.status 200, the /v2/ ping.
    /// `head`: the request was HEAD (the same head, no body).
    virtual net::awaitable<error_code> write_local(const local_reply& r, bool head, std::string_view request_id) = 0;

    /// The relayed response head (hop-by-hop fields already stripped, status
    /// set), then `first` body bytes when there are any, in one write where the
    /// protocol allows. With shape.none nothing else follows: the response is
    /// complete.
    virtual net::awaitable<error_code> write_head(http::response_header<>& head, body_shape shape,
                                                  net::const_buffer first) = 0;
    /// More body bytes; completes once the writer can take more (backpressure:
    /// a client that stops reading stops the relay, no buffering beyond a window).
    virtual net::awaitable<error_code> write_body(net::const_buffer bytes) = 0;
    /// The body is complete (HTTP/1.1 chunked: the last chunk; HTTP/2: END_STREAM).
    virtual net::awaitable<error_code> finish() = 0;

    /// The response cannot complete (the upstream failed mid-body): HTTP/1.1
    /// closes the connection short of the announced length (or without the
    /// last chunk), HTTP/2 resets the stream (RST_STREAM INTERNAL_ERROR) — never a
    /// complete-looking body. Nothing may be written after it.
    virtual void abort() noexcept = 0;

    /// After the response: whether the connection may carry another request
    /// (HTTP/1.1 keep-alive, which a drain, a local reply's `close` or an
    /// HTTP/1.0 body delimited by the close turns off; HTTP/2: always true).
    [[nodiscard]] virtual bool keeps_connection() const noexcept = 0;
};

}  // namespace acp::proxy
