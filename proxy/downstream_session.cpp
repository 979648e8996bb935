#include "proxy/downstream_session.hpp"

#include "config/logging.hpp"
#include "proxy/error.hpp"
#include "proxy/h1_writer.hpp"
#include "proxy/local_reply.hpp"
#include "proxy/request_context.hpp"
#include "proxy/request_handler.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>

namespace acp::proxy {
namespace {

using clock = std::chrono::steady_clock;
using request_parser = http::request_parser<http::empty_body>;

// How long a connection accepted before a drain may still take to send its first byte.
constexpr auto first_byte_grace_on_drain = std::chrono::seconds(1);

// What the stop hook closes: the downstream stream and what the request uses.
struct session_io {
    timed_socket* downstream = nullptr;
    request_io request;

    void stop() noexcept {
        request.stop();
        if (downstream != nullptr) {
            error_code ec;
            downstream->socket.shutdown(tcp::socket::shutdown_both, ec);
            downstream->socket.close(ec);
        }
    }
};

// Clears the stop hook when the frame goes away.
struct stop_hook_guard {
    task_group::entry& entry;
    ~stop_hook_guard() {
        entry.stop = nullptr;
        entry.on_drain = nullptr;
    }
};

void close_gracefully(timed_socket& s) {
    error_code ec;
    s.socket.shutdown(tcp::socket::shutdown_send, ec);
    s.socket.close(ec);
}

bool has_body(const request_parser& p, const http::request<http::empty_body>& req) {
    return p.chunked() || (p.content_length() && *p.content_length() > 0) ||
           req.count(http::field::transfer_encoding) != 0;
}

errc from_read_error(const error_code& ec) {
    if (ec == http::error::header_limit) {
        return errc::header_too_large;
    }
    if (ec == http::error::bad_content_length || ec == http::error::bad_transfer_encoding ||
        ec == http::error::multiple_content_length) {
        return errc::request_smuggling;
    }
    return errc::malformed_http;
}

}  // namespace

net::awaitable<void> run_downstream_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                            std::shared_ptr<task_group::entry> entry) {
    timed_socket stream(std::move(socket));
    error_code nodelay_ec;
    // A streamed body goes out in many writes: without TCP_NODELAY, Nagle holds
    // a small one until the client's delayed ACK (40 ms).
    stream.socket.set_option(tcp::no_delay(true), nodelay_ec);
    beast::flat_buffer buffer;
    session_io io{&stream, {}};
    entry->stop = [&io] {
        io.stop();
    };
    stop_hook_guard guard{*entry};
    state->stats.connection_opened();
    struct closed_counter {
        metrics& m;
        ~closed_counter() { m.connection_closed(); }
    } counter{state->stats};

    // A new connection is about to send its request: not idle, so a drain
    // that begins now serves it (with Connection: close) instead of closing it.
    for (bool first = true;; first = false) {
        // Idle keep-alive: wait for the first byte of the next request.
        entry->busy = first;
        if (state->draining && !first) {
            break;
        }
        if (buffer.size() == 0) {
            stream.deadline.expires_after(state->snapshots.load()->cfg->timeouts.idle);
            if (first) {
                // A drain that begins while a new connection has sent nothing gives it a moment for
                // its request, not the whole idle timeout: clients open spare connections they may
                // never use (containerd does), and those would hold the shutdown up to shutdownGrace.
                entry->on_drain = [&stream] {
                    stream.deadline.expires_after(first_byte_grace_on_drain);
                };
            }
            auto [ec, n] = co_await stream.socket.async_read_some(buffer.prepare(4096), use_nothrow);
            entry->on_drain = nullptr;
            if (ec) {
                break;  // closed, reset, idle timeout or stopped
            }
            buffer.commit(n);
        }
        entry->busy = true;
        const auto snap = state->snapshots.load();  // taken now, kept for the whole request
        const auto& t = snap->cfg->timeouts;

        request_context rc;
        rc.id = state->next_request_id();
        request_parser parser;
        parser.header_limit(max_request_header_bytes);
        stream.deadline.expires_after(t.header_read);
        auto [rec, n] = co_await http::async_read_header(stream.socket, buffer, parser, use_nothrow);
        stream.deadline.expires_never();  // the request may wait for a token: no client deadline meanwhile
        const auto ec = stream.deadline.check(rec);
        if (ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset) {
            break;
        }
        if (ec == beast::error::timeout) {
            logging::logger("proxy")->debug("id={} request head not complete within {} ms: closing", rc.id,
                                            t.header_read.count());
            break;
        }
        if (ec && ec.category() != http::make_error_code(http::error::bad_method).category()) {
            break;  // the socket failed or was stopped
        }
        if (ec) {
            const auto reply = to_local_reply(make_error_code(from_read_error(ec)), {"", "", "", ec.message()});
            rc.method = "-";
            rc.status = static_cast<unsigned>(reply.status);
            rc.error = ec.message();
            co_await write_local_reply(stream, reply, {11, false, false, rc.id, t.idle});
            record_request(*state, rc);
            break;
        }
        const auto& req = parser.get();
        h1_response_writer<tcp::socket> out(stream.socket, stream.deadline, req.version(),
                                            req.keep_alive() && !state->draining, state->draining, t.idle);
        co_await serve_request(*state, *snap, req, has_body(parser, req), out, rc, io.request);
        record_request(*state, rc);
        if (!out.keeps_connection()) {
            break;
        }
    }
    entry->busy = false;
    close_gracefully(stream);
}

net::awaitable<void> run_reject_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                        std::shared_ptr<task_group::entry> entry) {
    timed_socket stream(std::move(socket));
    session_io io{&stream, {}};
    entry->stop = [&io] {
        io.stop();
    };
    stop_hook_guard guard{*entry};
    const auto snap = state->snapshots.load();
    const auto& t = snap->cfg->timeouts;
    beast::flat_buffer buffer;
    request_parser parser;
    parser.header_limit(max_request_header_bytes);
    stream.deadline.expires_after(t.header_read);
    auto [ec, n] = co_await http::async_read_header(stream.socket, buffer, parser, use_nothrow);
    stream.deadline.expires_never();
    if (!ec) {
        request_context rc;
        rc.id = state->next_request_id();
        rc.method = std::string(parser.get().method_string().substr(0, 16));
        const auto code = state->draining ? errc::shutting_down : errc::too_many_connections;
        const auto reply = to_local_reply(make_error_code(code), {});
        rc.status = static_cast<unsigned>(reply.status);
        rc.error = "limits.maxConnections reached";
        co_await write_local_reply(stream, reply, {parser.get().version(), false, false, rc.id, t.header_read});
        record_request(*state, rc);
    }
    close_gracefully(stream);
}

}  // namespace acp::proxy
