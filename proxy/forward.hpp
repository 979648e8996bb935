// Forwarding one routed registry request upstream and streaming the answer
// back: the auth hook, the upstream exchange (pooled connection, one retry
// on a stale one), the 401 → challenge → retry-once → 403 rule, redirects
// (passed through, or followed with `followRedirects`), and the body relay
// through a fixed buffer with backpressure (Beast's relay() pattern).
//
// Owns: nothing beyond the call. Runs on the session's coroutine; every
// await is bounded by a per-phase timeout. Cancellation: the session's stop
// hook (request_io::stop) closes the upstream in use and the writer's stream,
// which completes any pending operation with an error.
#pragma once

#include "proxy/deadline.hpp"
#include "proxy/net.hpp"
#include "proxy/request_context.hpp"
#include "proxy/request_handler.hpp"
#include "proxy/response_writer.hpp"
#include "proxy/server_state.hpp"
#include "routing/distribution_path.hpp"
#include "routing/route_table.hpp"

namespace acp::proxy {

/// Body bytes moved per read/write at most; the only per-transfer buffer. A
/// plain-HTTP blob read from loopback fills it (fewer system calls and
/// wake-ups per MiB); a TLS read brings one record (16 KiB) at most.
inline constexpr std::size_t relay_buffer_size = 256 * 1024;

struct forward_args {
    response_writer& out;
    const http::request<http::empty_body>& request;
    const routing::distribution_path& path;
    const routing::route& route;
    const snapshot& snap;
    server_state& state;
    request_context& rc;
    request_io& io;  // publishes the upstream in use for the stop hook
};

/// Answers the request (relayed, or a local error reply) through `a.out`.
net::awaitable<void> forward_request(forward_args a);

}  // namespace acp::proxy
