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

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

namespace acp::proxy {

/// Request header block limit (431 above it).
inline constexpr std::uint32_t max_request_header_bytes = 16 * 1024;

net::awaitable<void> run_downstream_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                            std::shared_ptr<task_group::entry> entry);

/// The TLS data listener's connections (tlsListen): the handshake within
/// timeouts.headerRead, then HTTP/2 when ALPN chose "h2", else HTTP/1.1.
net::awaitable<void> run_tls_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                     std::shared_ptr<net::ssl::context> tls, std::shared_ptr<task_group::entry> entry);

/// The TLS listener's server context: TLS >= 1.2, the certificate chain and
/// key (checked to match), ALPN h2 then http/1.1. Throws std::runtime_error
/// naming the file at fault.
std::shared_ptr<net::ssl::context> make_server_tls_context(const std::string& cert_file, const std::string& key_file);

/// For connections over limits.maxConnections: read the request head (bounded
/// by the header timeout), answer 503 and close.
net::awaitable<void> run_reject_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                        std::shared_ptr<task_group::entry> entry);

}  // namespace acp::proxy
