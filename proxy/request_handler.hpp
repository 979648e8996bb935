// One downstream request, whatever protocol carried it: the checks every
// request gets (method, body, path grammar), the local answers (/v2/ ping,
// unrouted names, the pull scope) and forwarding (forward.hpp). The HTTP/1.1
// session and each HTTP/2 stream call serve_request() with their own
// response_writer, so both get the same routing, auth, limits and answers.
//
// Owns: request_io, the per-request stop hook. Thread affinity: the session's
// io_context thread. Cancellation: request_io::stop() (from the session's stop
// hook, or an HTTP/2 stream reset by the client) closes the upstream in use and
// cancels a scope wait; the writer's own stop completes its pending writes.
#pragma once

#include "proxy/net.hpp"
#include "proxy/request_context.hpp"
#include "proxy/response_writer.hpp"
#include "proxy/scope_gate.hpp"
#include "proxy/server_state.hpp"
#include "proxy/snapshot.hpp"

namespace acp::proxy {

class upstream_connection;
class h2_upstream_stream;

/// What a request is using that must be interrupted when it stops.
struct request_io {
    upstream_connection* upstream = nullptr;    // the HTTP/1.1 upstream connection in use
    h2_upstream_stream* upstream_h2 = nullptr;  // the HTTP/2 upstream stream in use
    scope_wait scope;                           // a request waiting for its pod's watch event

    void stop() noexcept;
};

/// Answers one request whose head was read: `req` carries method, target and
/// fields (HTTP/2: :path as the target, :authority as Host), version 11 for
/// HTTP/2. `has_body`: the client sent or announced a request body (refused).
/// The response goes to `out`; `rc` collects what the access log says.
net::awaitable<void> serve_request(server_state& st, const snapshot& snap, const http::request<http::empty_body>& req,
                                   bool has_body, response_writer& out, request_context& rc, request_io& io);

/// The access log line and the request metrics of a finished request.
void record_request(server_state& st, const request_context& rc);

}  // namespace acp::proxy
