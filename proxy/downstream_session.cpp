#include "proxy/downstream_session.hpp"

#include "config/logging.hpp"
#include "proxy/error.hpp"
#include "proxy/forward.hpp"
#include "proxy/local_reply.hpp"
#include "proxy/request_context.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>

namespace acp::proxy {
namespace {

using clock = std::chrono::steady_clock;
using request_parser = http::request_parser<http::empty_body>;

// Header fields per request (431 above it): containerd sends fewer than ten;
// the byte limit alone would let 16 KiB of tiny fields through to the upstream.
constexpr std::size_t max_request_header_fields = 100;

// How long a connection accepted before a drain may still take to send its first byte.
constexpr auto first_byte_grace_on_drain = std::chrono::seconds(1);

// What the stop hook closes: the downstream stream and the upstream in use.
struct session_io {
    timed_socket* downstream = nullptr;
    upstream_connection* upstream = nullptr;
    scope_wait scope;  // a request waiting for its pod's watch event

    void stop() noexcept {
        scope.cancel();
        if (upstream != nullptr) {
            upstream->close();
        }
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

// Framing that could be read two ways by two parsers (request smuggling):
// a repeated Content-Length, or Transfer-Encoding together with Content-Length.
bool ambiguous_framing(const http::request<http::empty_body>& req) {
    const auto lengths = req.count(http::field::content_length);
    return lengths > 1 || (lengths == 1 && req.count(http::field::transfer_encoding) != 0);
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

void record(server_state& st, const request_context& rc) {
    st.stats.on_request(rc.metrics_registry, rc.kind, rc.status,
                        std::chrono::duration_cast<config::duration>(rc.to_headers.value_or(clock::now() - rc.start)));
    log_access(rc);
}

// Decides and answers one request head. Returns whether to keep the connection.
net::awaitable<bool> handle_request(server_state& st, const snapshot& snap, timed_socket& stream,
                                    const request_parser& parser, request_context& rc, session_io& io) {
    const auto& req = parser.get();
    const auto& t = snap.cfg->timeouts;
    const bool head = req.method() == http::verb::head;
    bool keep_alive = req.keep_alive() && !st.draining;
    rc.method = std::string(req.method_string().substr(0, 16));

    auto local = [&](errc e, std::string_view registry, std::string_view detail) -> net::awaitable<bool> {
        const auto reply = to_local_reply(make_error_code(e), {registry, "", "", detail});
        keep_alive = keep_alive && !st.draining;
        rc.status = static_cast<unsigned>(reply.status);
        rc.to_headers = clock::now() - rc.start;
        if (!detail.empty()) {
            rc.error = std::string(detail);
        }
        const auto ec = co_await write_local_reply(stream, reply, {req.version(), keep_alive, head, rc.id, t.idle});
        co_return !ec && keep_alive && !reply.close;
    };

    if (static_cast<std::size_t>(std::distance(req.begin(), req.end())) > max_request_header_fields) {
        keep_alive = false;
        co_return co_await local(errc::header_too_large, "", "more than 100 header fields");
    }
    if (ambiguous_framing(req)) {
        co_return co_await local(errc::request_smuggling, "", "");
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        if (has_body(parser, req)) {
            keep_alive = false;  // the unread body would be taken for the next request
        }
        co_return co_await local(errc::method_not_allowed, "", "");
    }
    if (has_body(parser, req)) {
        co_return co_await local(errc::body_not_allowed, "", "");
    }

    auto path = routing::parse_target(req.target());
    if (!path) {
        co_return co_await local(from_path_error(path.error()), "", routing::to_string(path.error()));
    }
    rc.kind = std::string(routing::to_string(path->kind));
    if (path->kind == routing::request_kind::ping) {
        rc.status = 200;
        rc.to_headers = clock::now() - rc.start;
        const auto ec = co_await write_ping(stream, {req.version(), keep_alive, head, rc.id, t.idle});
        co_return !ec && keep_alive;
    }
    rc.repository = path->name;
    const auto* route = snap.routes.resolve(path->ns);
    if (route == nullptr) {
        // Never forwarded: the proxy is not an open proxy.
        rc.registry = path->ns.value_or("-");
        co_return co_await local(errc::name_unknown, path->ns.value_or(""), "");
    }
    rc.registry = route->host;
    rc.metrics_registry = route->host;
    if (st.scope != nullptr) {
        // The pull scope (issue 10): credentials only for what an in-scope pod on this node references.
        const auto& holder = st.scope->holder();
        auto decision = holder.load()->decide(route->host, path->name);
        if (decision.verdict == routing::scope_verdict::unknown) {
            st.stats.on_scope_wait();
            auto wait =
                decide_scope(holder, st.scope_changed, route->host, path->name, snap.cfg->scope.wait_for_pod, io.scope);
            decision = co_await std::move(wait);
        }
        if (decision.verdict != routing::scope_verdict::allowed) {
            st.stats.on_scope_denied(decision.verdict == routing::scope_verdict::unknown);
            const bool keep = co_await local(errc::out_of_scope, route->host, decision.reason);
            rc.error = "scope: " + decision.reason;  // the access log says who refused it
            co_return keep;
        }
    }
    co_return co_await forward_request({stream, req, *path, *route, snap, st, rc, keep_alive, io.upstream});
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
    session_io io{&stream, nullptr, {}};
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
            record(*state, rc);
            break;
        }
        const bool keep = co_await handle_request(*state, *snap, stream, parser, rc, io);
        record(*state, rc);
        if (!keep) {
            break;
        }
    }
    entry->busy = false;
    close_gracefully(stream);
}

net::awaitable<void> run_reject_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                        std::shared_ptr<task_group::entry> entry) {
    timed_socket stream(std::move(socket));
    session_io io{&stream, nullptr, {}};
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
        record(*state, rc);
    }
    close_gracefully(stream);
}

}  // namespace acp::proxy
