// The downstream HTTP/2 session: one accepted connection that speaks HTTP/2
// (h2c with prior knowledge on the data listener, detected from the client
// preface by the HTTP/1.1 session; or h2 negotiated by ALPN on the TLS
// listener). Runs h2_server_codec on the socket with ONE reader and ONE
// writer coroutine; each request stream gets its own coroutine that calls
// serve_request() through an HTTP/2 response_writer, so routing, auth, limits
// and answers are those of HTTP/1.1.
//
// Owns: the socket, the codec, the per-stream coroutines (spawned on the
// session's executor, all waited for before the session returns). Thread
// affinity: the io_context thread. Cancellation: the task entry's stop hook
// stops every stream (request_io::stop(), pending writes fail) and closes the
// socket; a drain (entry->on_drain, or server_state::draining seen when
// something arrives) sends GOAWAY(NO_ERROR) with the last stream processed,
// lets the streams in flight finish, then closes. A client RST_STREAM stops
// that stream only. A connection without streams closes after timeouts.idle;
// a stream whose client takes no bytes for timeouts.idle is reset.
#pragma once

#include "proxy/h2_server_codec.hpp"
#include "proxy/net.hpp"
#include "proxy/server_state.hpp"
#include "proxy/task_group.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <memory>

namespace acp::proxy {

/// h2c with prior knowledge: `already_read` holds the bytes the HTTP/1.1
/// session read, starting with (a prefix of) the 24-byte client preface.
net::awaitable<void> run_h2_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                    beast::flat_buffer already_read, std::shared_ptr<task_group::entry> entry);

/// h2 over TLS: the handshake is done and ALPN chose "h2"; `already_read` may
/// be empty (the client preface is then read here).
net::awaitable<void> run_h2_session(std::shared_ptr<server_state> state, beast::ssl_stream<tcp::socket> stream,
                                    beast::flat_buffer already_read, std::shared_ptr<task_group::entry> entry);

}  // namespace acp::proxy
