#include "proxy/downstream_session.hpp"

#include "config/logging.hpp"
#include "proxy/error.hpp"
#include "proxy/h1_writer.hpp"
#include "proxy/h2_downstream_session.hpp"
#include "proxy/local_reply.hpp"
#include "proxy/request_context.hpp"
#include "proxy/request_handler.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <openssl/ssl.h>

#include <stdexcept>

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

std::string_view buffered_text(const beast::flat_buffer& b) {
    const auto d = b.data();
    return {static_cast<const char*>(d.data()), d.size()};
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

namespace {

// Keeps the open-connections gauge right for one session.
struct connection_gauge {
    metrics& m;
    bool counted = true;
    explicit connection_gauge(metrics& stats) : m(stats) { m.connection_opened(); }
    connection_gauge(const connection_gauge&) = delete;
    connection_gauge& operator=(const connection_gauge&) = delete;
    ~connection_gauge() { release(); }
    void release() noexcept {
        if (counted) {
            m.connection_closed();
            counted = false;
        }
    }
};

enum class h1_end { closed, h2_preface };

// The HTTP/1.1 keep-alive loop on `s` (plain or TLS): request heads, limits,
// serve_request(), until the connection ends. With `detect_h2`, a connection
// whose first bytes are the HTTP/2 client preface ends the loop with
// h1_end::h2_preface, the preface left in `buffer` (h2c with prior knowledge).
template <class Stream>
net::awaitable<h1_end> run_h1_loop(server_state& st, Stream& s, lazy_deadline& deadline, beast::flat_buffer& buffer,
                                   task_group::entry& entry, request_io& rio, bool detect_h2) {
    // A new connection is about to send its request: not idle, so a drain
    // that begins now serves it (with Connection: close) instead of closing it.
    for (bool first = true;; first = false) {
        // Idle keep-alive: wait for the first byte of the next request.
        entry.busy = first;
        if (st.draining && !first) {
            break;
        }
        if (buffer.size() == 0) {
            deadline.expires_after(st.snapshots.load()->cfg->timeouts.idle);
            if (first) {
                // A drain that begins while a new connection has sent nothing gives it a moment for
                // its request, not the whole idle timeout: clients open spare connections they may
                // never use (containerd does), and those would hold the shutdown up to shutdownGrace.
                entry.on_drain = [&deadline] {
                    deadline.expires_after(first_byte_grace_on_drain);
                };
            }
            auto [ec, n] = co_await s.async_read_some(buffer.prepare(4096), use_nothrow);
            entry.on_drain = nullptr;
            if (ec) {
                break;  // closed, reset, idle timeout or stopped
            }
            buffer.commit(n);
        }
        entry.busy = true;
        const auto snap = st.snapshots.load();  // taken now, kept for the whole request
        const auto& t = snap->cfg->timeouts;
        if (first && detect_h2 && starts_like_h2_preface(buffered_text(buffer))) {
            // HTTP/2 with prior knowledge (RFC 9113 §3.3) on the same port: the rest of
            // the client preface within headerRead, then the HTTP/2 session takes over.
            deadline.expires_after(t.header_read);
            bool read_failed = false;
            while (buffer.size() < h2_preface.size() && starts_like_h2_preface(buffered_text(buffer))) {
                auto [pec, pn] = co_await s.async_read_some(buffer.prepare(h2_preface.size()), use_nothrow);
                if (pec) {
                    read_failed = true;
                    break;
                }
                buffer.commit(pn);
            }
            deadline.expires_never();
            if (read_failed || deadline.expired()) {
                break;
            }
            if (starts_like_h2_preface(buffered_text(buffer))) {
                entry.busy = false;
                co_return h1_end::h2_preface;
            }
            // Not the preface after all (a method starting with "P"): HTTP/1.1 decides.
        }

        request_context rc;
        rc.id = st.next_request_id();
        request_parser parser;
        parser.header_limit(max_request_header_bytes);
        deadline.expires_after(t.header_read);
        auto [rec, n] = co_await http::async_read_header(s, buffer, parser, use_nothrow);
        deadline.expires_never();  // the request may wait for a token: no client deadline meanwhile
        const auto ec = deadline.check(rec);
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
            auto reply = to_local_reply(make_error_code(from_read_error(ec)), {"", "", "", ec.message()});
            reply.close = true;
            rc.method = "-";
            rc.status = static_cast<unsigned>(reply.status);
            rc.error = ec.message();
            h1_response_writer<Stream> out(s, deadline, 11, false, st.draining, t.idle);
            (void)co_await out.write_local(reply, false, rc.id);
            record_request(st, rc);
            break;
        }
        const auto& req = parser.get();
        h1_response_writer<Stream> out(s, deadline, req.version(), req.keep_alive() && !st.draining, st.draining,
                                       t.idle);
        co_await serve_request(st, *snap, req, has_body(parser, req), out, rc, rio);
        record_request(st, rc);
        if (!out.keeps_connection()) {
            break;
        }
    }
    entry.busy = false;
    co_return h1_end::closed;
}

// ALPN on the TLS listener: h2 when the client offers it, else http/1.1; a
// client that offers neither gets no ALPN and speaks HTTP/1.1.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                void*) {
    static constexpr unsigned char preferred[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char* chosen = nullptr;
    if (SSL_select_next_proto(&chosen, outlen, preferred, sizeof preferred, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

}  // namespace

std::shared_ptr<net::ssl::context> make_server_tls_context(const std::string& cert_file, const std::string& key_file) {
    auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
    ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                     net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 | net::ssl::context::no_tlsv1_1 |
                     net::ssl::context::single_dh_use);
    error_code ec;
    ctx->use_certificate_chain_file(cert_file, ec);
    if (ec) {
        throw std::runtime_error("tlsCertFile " + cert_file + ": " + ec.message());
    }
    ctx->use_private_key_file(key_file, net::ssl::context::pem, ec);
    if (ec) {
        throw std::runtime_error("tlsKeyFile " + key_file + ": " + ec.message());
    }
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
        throw std::runtime_error("tlsKeyFile " + key_file + " does not match the certificate in " + cert_file);
    }
    SSL_CTX_set_alpn_select_cb(ctx->native_handle(), select_alpn, nullptr);
    return ctx;
}

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
    connection_gauge gauge(state->stats);
    auto loop = run_h1_loop(*state, stream.socket, stream.deadline, buffer, *entry, io.request, true);
    if (co_await std::move(loop) == h1_end::h2_preface) {
        gauge.release();  // the HTTP/2 session counts the connection itself
        entry->stop = nullptr;
        auto h2 = run_h2_session(state, std::move(stream.socket), std::move(buffer), entry);
        co_await std::move(h2);
        co_return;
    }
    close_gracefully(stream);
}

net::awaitable<void> run_tls_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                     std::shared_ptr<net::ssl::context> tls, std::shared_ptr<task_group::entry> entry) {
    error_code nodelay_ec;
    socket.set_option(tcp::no_delay(true), nodelay_ec);
    beast::ssl_stream<tcp::socket> stream(std::move(socket), *tls);
    lazy_deadline deadline(stream.next_layer());
    request_io rio;
    entry->stop = [&rio, &stream] {
        rio.stop();
        error_code ec;
        stream.next_layer().shutdown(tcp::socket::shutdown_both, ec);
        stream.next_layer().close(ec);
    };
    stop_hook_guard guard{*entry};
    entry->busy = true;  // the handshake is the start of its first request
    deadline.expires_after(state->snapshots.load()->cfg->timeouts.header_read);
    auto [hec] = co_await stream.async_handshake(net::ssl::stream_base::server, use_nothrow);
    deadline.expires_never();
    if (hec) {
        logging::logger("proxy")->debug("TLS handshake with a client failed: {}", deadline.check(hec).message());
        entry->busy = false;
        co_return;
    }
    const unsigned char* alpn = nullptr;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(stream.native_handle(), &alpn, &alpn_len);
    if (std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) == "h2") {
        entry->stop = nullptr;
        entry->busy = false;
        auto h2 = run_h2_session(state, std::move(stream), beast::flat_buffer{}, entry);
        co_await std::move(h2);
        co_return;
    }
    connection_gauge gauge(state->stats);
    beast::flat_buffer buffer;
    auto loop = run_h1_loop(*state, stream, deadline, buffer, *entry, rio, false);
    (void)co_await std::move(loop);
    error_code ec;
    stream.next_layer().shutdown(tcp::socket::shutdown_send, ec);
    stream.next_layer().close(ec);
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
