// The downstream (containerd → proxy) HTTP/1.1 session: one coroutine per
// accepted connection, reading request heads in a keep-alive loop, applying
// the request limits, answering locally what must never be forwarded
// (DESIGN.md "What the proxy answers") and forwarding the rest.
//
// Owns: the connection's socket and read buffer (in the coroutine frame).
// Thread affinity: the io_context thread. Cancellation: the task entry's stop
// hook closes the sockets; shutdown stops idle sessions at once and lets busy
// ones finish their response with `Connection: close`.
#pragma once

#include "proxy/net.hpp"
#include "proxy/server_state.hpp"
#include "proxy/task_group.hpp"

#include <memory>

namespace acp::proxy {

/// Request header block limit (431 above it).
inline constexpr std::uint32_t max_request_header_bytes = 16 * 1024;

net::awaitable<void> run_downstream_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                            std::shared_ptr<task_group::entry> entry);

/// For connections over limits.maxConnections: read the request head (bounded
/// by the header timeout), answer 503 and close.
net::awaitable<void> run_reject_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                        std::shared_ptr<task_group::entry> entry);

}  // namespace acp::proxy
