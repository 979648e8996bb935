// Forwarding one routed registry request upstream and streaming the answer
// back: the auth hook, the upstream exchange (pooled connection, one retry
// on a stale one), the 401 → challenge → retry-once → 403 rule, redirects
// (passed through, or followed with `followRedirects`), and the body relay
// through a fixed buffer with backpressure (Beast's relay() pattern).
//
// Owns: nothing beyond the call. Runs on the session's coroutine; every
// await is bounded by a per-phase timeout. Cancellation: the session's stop
// hook closes `active_upstream` and the downstream stream, which completes
// any pending operation with an error.
#pragma once

#include "proxy/deadline.hpp"
#include "proxy/net.hpp"
#include "proxy/request_context.hpp"
#include "proxy/server_state.hpp"
#include "routing/distribution_path.hpp"
#include "routing/route_table.hpp"

namespace acp::proxy {

/// Body bytes moved per read/write at most; the only per-transfer buffer. A
/// plain-HTTP blob read from loopback fills it (fewer system calls and
/// wake-ups per MiB); a TLS read brings one record (16 KiB) at most.
inline constexpr std::size_t relay_buffer_size = 256 * 1024;

struct forward_args {
    timed_socket& downstream;
    const http::request<http::empty_body>& request;
    const routing::distribution_path& path;
    const routing::route& route;
    const snapshot& snap;
    server_state& state;
    request_context& rc;
    bool keep_alive;                        // the client asked for it and we may keep it
    upstream_connection*& active_upstream;  // published for the session's stop hook
};

/// Answers the request (relayed or a local error reply). Returns whether the
/// downstream connection may serve another request.
net::awaitable<bool> forward_request(forward_args a);

}  // namespace acp::proxy
