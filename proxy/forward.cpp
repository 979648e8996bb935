#include "proxy/forward.hpp"

#include "config/logging.hpp"
#include "proxy/h2_upstream.hpp"
#include "proxy/header_policy.hpp"
#include "proxy/local_reply.hpp"
#include "proxy/redirect_policy.hpp"
#include "tokens/auth_error.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/http/write.hpp>

#include <charconv>
#include <optional>
#include <vector>

namespace acp::proxy {
namespace {

using response_parser = http::response_parser<http::buffer_body>;
using clock = std::chrono::steady_clock;

constexpr std::size_t upstream_header_limit = 64 * 1024;
constexpr std::size_t max_discarded_body = 64 * 1024;

bool is_stale_connection_error(const error_code& ec) {
    return ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
           ec == net::error::broken_pipe || ec == http::error::partial_message;
}

// One request/response-head exchange on a pooled or new connection. A reused
// connection the peer closed meanwhile is retried once on a fresh one: GET and
// HEAD are idempotent.
net::awaitable<std::optional<failure>> exchange(const upstream_endpoint& ep, http::request<http::empty_body>& req,
                                                bool head, std::optional<response_parser>& parser,
                                                std::unique_ptr<upstream_connection>& conn, server_state& st,
                                                const config::timeout_config& t, upstream_connection*& active,
                                                std::unique_ptr<upstream_connection> fresh = nullptr) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        const bool given = attempt == 0 && fresh != nullptr;  // the h2 pool's connect, where ALPN chose http/1.1
        conn = given ? std::move(fresh) : attempt == 0 ? st.pool.take(ep.pool_key) : nullptr;
        const bool reused = conn != nullptr && !given;
        if (given) {
            conn->generation = st.pool.generation();
        }
        if (!conn) {
            auto made = co_await connect_upstream(ep, t.upstream_connect, config::http2_mode::off, &st.stats);
            if (!made) {
                if (made.error().code == errc::upstream_tls) {
                    st.stats.on_upstream_tls_error(ep.origin.authority());
                } else {
                    st.stats.on_upstream_connect_error(ep.origin.authority());
                }
                co_return made.error();
            }
            conn = std::move(*made);
            conn->generation = st.pool.generation();
        }
        if (!given) {
            st.stats.on_upstream_connection(reused);  // the h2 pool counted its own connect
        }
        active = conn.get();
        parser.emplace();
        parser->header_limit(upstream_header_limit);
        parser->body_limit(boost::none);
        parser->skip(head);

        conn->expires_after(t.upstream_headers);
        auto [ec, written] = co_await conn->write(req);
        if (!ec) {
            auto [rec, read] = co_await conn->read_header(*parser);
            ec = rec;
        }
        if (!ec) {
            conn->expires_never();  // the caller sets the next phase's deadline
            co_return std::nullopt;
        }
        conn->close();
        active = nullptr;
        if (reused && !parser->got_some() && is_stale_connection_error(ec)) {
            continue;
        }
        const auto code = classify_upstream(ec);
        co_return failure{code, "upstream " + ep.origin.authority() + ": " + ec.message()};
    }
    co_return failure{errc::upstream_unreachable, "upstream " + ep.origin.authority() + " closed the connection"};
}

void count_connect_failure(server_state& st, const upstream_endpoint& ep, const failure& f) {
    if (f.code == errc::upstream_tls) {
        st.stats.on_upstream_tls_error(ep.origin.authority());
    } else if (f.code == errc::upstream_unreachable || f.code == errc::upstream_timeout) {
        st.stats.on_upstream_connect_error(ep.origin.authority());
    }
}

// The exchange over a shared HTTP/2 connection (http2: auto|on): a stream on a
// connection that can take one, or a new connection. A stream the server never
// processed (GOAWAY above its last id, REFUSED_STREAM) goes again on another
// connection: GET and HEAD are idempotent. When the origin chose HTTP/1.1 in
// ALPN, the HTTP/1.1 exchange takes over (with the connection just made).
net::awaitable<std::optional<failure>> exchange_h2(const upstream_endpoint& ep, http::request<http::empty_body>& req,
                                                   bool head, std::optional<response_parser>& parser,
                                                   std::unique_ptr<upstream_connection>& conn,
                                                   h2_upstream_stream& stream, http::response_header<>& h2_head,
                                                   server_state& st, const config::timeout_config& t, request_io& io) {
    std::vector<h2_field> fields;
    for (const auto& f : req) {
        fields.push_back({f.name_string(), f.value()});
    }
    const h2_request r{head ? "HEAD" : "GET", ep.is_tls() ? "https" : "http", req[http::field::host], req.target(),
                       fields};
    constexpr int max_attempts = 3;
    for (int attempt = 1;; ++attempt) {
        auto opened = co_await st.h2_pool.open(ep, r, t.upstream_connect, st.stats);
        if (auto* f = std::get_if<failure>(&opened)) {
            count_connect_failure(st, ep, *f);
            co_return *f;
        }
        if (std::holds_alternative<h2_use_h1>(opened)) {
            co_return co_await exchange(ep, req, head, parser, conn, st, t, io.upstream);
        }
        if (auto* c = std::get_if<std::unique_ptr<upstream_connection>>(&opened)) {
            auto fresh = std::move(*c);
            co_return co_await exchange(ep, req, head, parser, conn, st, t, io.upstream, std::move(fresh));
        }
        stream = std::move(std::get<h2_upstream_stream>(opened));
        io.upstream_h2 = &stream;
        auto got = co_await stream.read_head(t.upstream_headers);
        if (got) {
            h2_head.result(got->status);
            h2_head.version(11);
            static_cast<http::fields&>(h2_head) = std::move(got->fields);
            co_return std::nullopt;
        }
        io.upstream_h2 = nullptr;
        const bool again = stream.retryable() && attempt < max_attempts;
        stream.reset();
        if (!again) {
            auto f = got.error();
            f.detail = "upstream " + ep.origin.authority() + ": " + f.detail;
            co_return f;
        }
    }
}

// Reads and drops a small response body (401, redirects) so the connection
// can be reused; returns it to the pool or closes it.
net::awaitable<void> discard_response(std::optional<response_parser>& parser,
                                      std::unique_ptr<upstream_connection>& conn, server_state& st,
                                      const config::timeout_config& t, upstream_connection*& active) {
    bool reusable = parser->keep_alive();
    if (reusable && !parser->is_done()) {
        const auto len = parser->content_length();
        reusable = len && *len <= max_discarded_body;
        char scratch[8192];
        while (reusable && !parser->is_done()) {
            parser->get().body().data = scratch;
            parser->get().body().size = sizeof scratch;
            conn->expires_after(t.upstream_idle);
            auto [ec, n] = co_await conn->read(*parser);
            conn->expires_never();
            if (ec && ec != http::error::need_buffer) {
                reusable = false;
            }
        }
    }
    active = nullptr;
    if (reusable) {
        st.pool.put(std::move(conn));
    } else {
        conn->close();
        conn.reset();
    }
}

// Drops the answer to a request that goes again (401, redirect): an HTTP/2
// stream is reset (RST_STREAM CANCEL; the connection stays shared), an
// HTTP/1.1 body read and dropped.
net::awaitable<void> discard_answer(h2_upstream_stream& h2, std::optional<response_parser>& parser,
                                    std::unique_ptr<upstream_connection>& conn, server_state& st,
                                    const config::timeout_config& t, request_io& io) {
    if (h2.valid()) {
        io.upstream_h2 = nullptr;
        h2.reset();
        co_return;
    }
    co_await discard_response(parser, conn, st, t, io.upstream);
}

// Only trivially destructible parameters: GCC 12 destroys non-trivial
// temporaries of a co_await full-expression twice, so callers pass named locals.
net::awaitable<void> reply_failure(forward_args& a, error_code code, std::string_view detail,
                                   std::string_view credentials) {
    a.rc.error = std::string(detail);
    const auto reply = to_local_reply(code, {a.route.host, a.path.name, credentials, detail});
    a.rc.status = static_cast<unsigned>(reply.status);
    a.rc.to_headers = clock::now() - a.rc.start;
    (void)co_await a.out.write_local(reply, a.request.method() == http::verb::head, a.rc.id);
}

net::awaitable<void> reply_failure(forward_args& a, errc code, std::string_view detail, std::string_view credentials) {
    co_await reply_failure(a, make_error_code(code), detail, credentials);
}

// An auth provider's error keeps its own category (the token flow's realm
// failures map to 502/503/504/403 in to_local_reply); anything else is 503.
error_code provider_error(const error_code& ec) {
    if (ec.category() == proxy_category() || ec.category() == tokens::auth_category()) {
        return ec;
    }
    return make_error_code(errc::credentials_unavailable);
}

// Records the head's outcome for the access log; false when the write failed.
bool head_written(forward_args& a, unsigned status, const error_code& ec) {
    a.rc.status = status;
    a.rc.to_headers = clock::now() - a.rc.start;
    if (ec) {
        a.rc.error = "downstream write: " + ec.message();
    }
    return !ec;
}

bool body_written(forward_args& a, const error_code& ec, std::size_t n) {
    if (ec) {
        a.rc.error = "downstream write: " + ec.message();
        return false;
    }
    a.rc.bytes += n;
    a.state.stats.add_relayed_bytes(a.rc.metrics_registry, n);
    return true;
}

// A body of known length (blobs, manifests): the body bytes that came with the
// head go out with the response head (a manifest: one write for the whole
// answer over HTTP/1.1); the rest is read straight from the upstream socket
// into one fixed buffer and written as is, each read waiting for the previous
// write, so a slow client slows the upstream read (TCP backpressure) instead
// of growing memory. Exact accounting: the client sees a body shorter than its
// Content-Length (HTTP/1.1: the connection ends early; HTTP/2: the stream is
// reset) if the upstream's is. Returns whether the whole body went through.
net::awaitable<bool> relay_known_length(forward_args& a, http::response_header<>& head, std::uint64_t length,
                                        upstream_connection& conn) {
    const auto& t = a.snap.cfg->timeouts;
    auto& buffered = conn.buffer();
    const auto first = static_cast<std::size_t>(std::min<std::uint64_t>(length, buffered.size()));
    const unsigned status = head.result_int();
    const net::const_buffer first_bytes(buffered.data().data(), first);
    const auto hec = co_await a.out.write_head(head, body_shape{false, length}, first_bytes);
    if (!head_written(a, status, hec)) {
        co_return false;
    }
    buffered.consume(first);
    (void)body_written(a, {}, first);

    std::uint64_t remaining = length - first;
    if (remaining > 0) {
        auto buf = std::make_unique_for_overwrite<char[]>(relay_buffer_size);  // not zero-filled
        while (remaining > 0) {
            const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, relay_buffer_size));
            // What one read brings: upstreamIdle bounds the silence between body
            // bytes, and a trickling upstream's bytes go out as they come.
            conn.expires_after(t.upstream_idle);
            auto [rec, n] = co_await conn.read_some(net::buffer(buf.get(), want));
            conn.expires_never();
            if (rec) {
                a.rc.error = "upstream body: " + rec.message() + " with " + std::to_string(remaining) + " bytes to go";
                co_return false;
            }
            const auto wec = co_await a.out.write_body(net::buffer(buf.get(), n));
            if (!body_written(a, wec, n)) {
                co_return false;
            }
            remaining -= n;
        }
    }
    const auto fec = co_await a.out.finish();
    co_return body_written(a, fec, 0);
}

// A chunked body, or one delimited by the end of the connection: the parser's
// body chunks through one fixed buffer (Beast's relay() pattern).
net::awaitable<bool> relay_chunked(forward_args& a, response_parser& parser, upstream_connection& conn) {
    const auto& t = a.snap.cfg->timeouts;
    auto& res = parser.get();
    const unsigned status = res.result_int();
    const auto hec = co_await a.out.write_head(res.base(), body_shape{false, std::nullopt}, net::const_buffer{});
    if (!head_written(a, status, hec)) {
        co_return false;
    }
    auto buf = std::make_unique_for_overwrite<char[]>(relay_buffer_size);  // not zero-filled
    while (!parser.is_done()) {
        res.body().data = buf.get();
        res.body().size = relay_buffer_size;
        // read_some: upstreamIdle bounds the silence between body bytes, and a
        // trickling upstream's bytes go out as they come (not per full buffer).
        conn.expires_after(t.upstream_idle);
        auto [rec, rn] = co_await conn.read_some(parser);
        conn.expires_never();
        if (rec && rec != http::error::need_buffer) {
            a.rc.error = "upstream body: " + rec.message();
            co_return false;
        }
        const auto n = relay_buffer_size - res.body().size;
        if (n == 0) {
            continue;
        }
        const auto wec = co_await a.out.write_body(net::buffer(buf.get(), n));
        if (!body_written(a, wec, n)) {
            co_return false;
        }
    }
    const auto fec = co_await a.out.finish();
    co_return body_written(a, fec, 0);
}

// Streams the response head and body back; the upstream connection returns to
// the pool after a complete, clean response.
net::awaitable<void> relay_response(forward_args& a, std::optional<response_parser>& parser,
                                    std::unique_ptr<upstream_connection>& conn) {
    auto& res = parser->get();
    const bool head = a.request.method() == http::verb::head;
    const bool upstream_chunked = parser->chunked();
    const auto content_length = parser->content_length();
    const bool upstream_keep_alive = parser->keep_alive();
    const bool header_only = head || parser->is_done();

    strip_hop_by_hop(res);
    bool ok = false;
    if (header_only) {
        const unsigned status = res.result_int();
        const auto hec = co_await a.out.write_head(res.base(), body_shape{true, std::nullopt}, net::const_buffer{});
        ok = head_written(a, status, hec);
    } else if (!upstream_chunked && content_length) {
        ok = co_await relay_known_length(a, res.base(), *content_length, *conn);
    } else {
        ok = co_await relay_chunked(a, *parser, *conn);
    }
    a.io.upstream = nullptr;
    if (!ok) {
        a.out.abort();
    }
    // A known-length body bypasses the parser: complete when relay_known_length says so.
    const bool complete = header_only || (!upstream_chunked && content_length) || parser->is_done();
    if (ok && complete && upstream_keep_alive) {
        a.state.pool.put(std::move(conn));  // only if nothing beyond the body was read
    } else {
        conn->close();
    }
}

// The body of an HTTP/2 response: each DATA payload written downstream as it
// comes, and only then credited back to the upstream (consumed()), so a client
// that stops reading stops the upstream at its stream window.
net::awaitable<void> relay_h2(forward_args& a, http::response_header<>& head, h2_upstream_stream& stream) {
    const auto& t = a.snap.cfg->timeouts;
    const unsigned status = head.result_int();
    const bool no_body = a.request.method() == http::verb::head || status == 204 || status == 304 || status < 200;
    std::optional<std::uint64_t> length;
    if (const auto cl = head[http::field::content_length]; !cl.empty()) {
        std::uint64_t v = 0;
        const auto [p, ec] = std::from_chars(cl.data(), cl.data() + cl.size(), v);
        if (ec == std::errc() && p == cl.data() + cl.size()) {
            length = v;
        }
    }
    strip_hop_by_hop(head);
    bool ok = false;
    const auto hec = co_await a.out.write_head(head, body_shape{no_body, length}, net::const_buffer{});
    if (head_written(a, status, hec)) {
        ok = no_body;
        while (!ok) {
            auto got = co_await stream.read_some(t.upstream_idle);
            if (!got) {
                a.rc.error = "upstream body: " + got.error().detail;
                break;
            }
            if (got->empty()) {
                const auto fec = co_await a.out.finish();
                ok = body_written(a, fec, 0);
                break;
            }
            const auto n = got->size();
            const auto wec = co_await a.out.write_body(net::buffer(got->data(), n));
            if (!body_written(a, wec, n)) {
                break;
            }
            stream.consumed(n);
        }
    }
    a.io.upstream_h2 = nullptr;
    if (!ok) {
        a.out.abort();
    }
    stream.reset();
}

std::string credentials_label(bool client_auth, bool dropped, const tokens::authorization& injected,
                              const tokens::auth_provider* provider) {
    if (client_auth && !dropped) {
        return "client";
    }
    if (dropped) {
        return "none after a cross-origin redirect";
    }
    return injected && provider ? std::string(provider->name()) : std::string("anonymous");
}

}  // namespace

net::awaitable<void> forward_request(forward_args a) {
    auto& st = a.state;
    const auto& t = a.snap.cfg->timeouts;
    const bool head = a.request.method() == http::verb::head;
    const auto* route_ep = a.snap.endpoint_for(a.route);
    if (route_ep == nullptr) {
        co_await reply_failure(a, errc::upstream_unreachable, "no endpoint for the route", "");
        co_return;
    }

    // The auth hook: a client's own Authorization passes untouched; otherwise
    // the route's provider decides what to inject.
    const tokens::auth_request areq{a.route.host, a.path.name, a.path.kind};
    const bool client_auth = a.request.count(http::field::authorization) != 0;
    std::shared_ptr<tokens::auth_provider> provider;
    tokens::authorization injected;
    if (client_auth) {
        a.rc.auth = "client";
    } else {
        provider = a.snap.auth.for_route(a.route);
        auto authorize = provider->authorize(areq);
        auto got = co_await std::move(authorize);
        if (!got) {
            const auto detail = got.error().detail;
            const auto code = provider_error(got.error().code);
            co_await reply_failure(a, code, detail, provider->name());
            co_return;
        }
        injected = std::move(*got);
        a.rc.auth = injected ? "injected:" + std::string(provider->name()) : "none";
    }

    http::request<http::empty_body> up;
    up.method(head ? http::verb::head : http::verb::get);
    up.version(11);
    copy_request_fields(a.request, up);

    upstream_endpoint ep = *route_ep;
    http_url url = ep.origin;
    url.target = ep.path_prefix + a.path.upstream_target();
    bool auth_dropped = false;
    bool auth_retried = false;
    int hops = 0;
    std::optional<response_parser> parser;
    std::unique_ptr<upstream_connection> conn;
    h2_upstream_stream h2;            // the exchange went over HTTP/2 when valid()
    http::response_header<> h2_head;  // its response head
    auto answer = [&]() -> http::response_header<>& {
        return h2.valid() ? h2_head : parser->get().base();
    };
    const auto started = clock::now();

    for (;;) {
        up.set(http::field::host, url.authority());
        up.target(url.target);
        if (auth_dropped) {
            up.erase(http::field::authorization);
        } else if (injected) {
            up.set(http::field::authorization, injected->reveal());
        }
        h2.reset();
        std::optional<failure> failed;
        if (st.h2_pool.wants_h2(ep)) {
            failed = co_await exchange_h2(ep, up, head, parser, conn, h2, h2_head, st, t, a.io);
        } else {
            failed = co_await exchange(ep, up, head, parser, conn, st, t, a.io.upstream);
        }
        if (failed) {
            const auto credentials = credentials_label(client_auth, auth_dropped, injected, provider.get());
            co_await reply_failure(a, failed->code, failed->detail, credentials);
            co_return;
        }
        const unsigned status = answer().result_int();

        if (status == 401) {
            tokens::auth_challenge challenge{401, field_values(answer(), http::field::www_authenticate),
                                             injected.value_or(config::secret{})};
            co_await discard_answer(h2, parser, conn, st, t, a.io);
            if (provider && !auth_retried && !auth_dropped) {
                auth_retried = true;
                auto ask = provider->on_unauthorized(areq, std::move(challenge));
                auto retry = co_await std::move(ask);
                if (!retry) {
                    const auto detail = retry.error().detail;
                    const auto code = provider_error(retry.error().code);
                    co_await reply_failure(a, code, detail, provider->name());
                    co_return;
                }
                if (*retry) {
                    auto authorize_again = provider->authorize(areq);
                    auto again = co_await std::move(authorize_again);
                    if (!again) {
                        const auto detail = again.error().detail;
                        const auto code = provider_error(again.error().code);
                        co_await reply_failure(a, code, detail, provider->name());
                        co_return;
                    }
                    injected = std::move(*again);
                    a.rc.auth = injected ? "injected:" + std::string(provider->name()) : "none";
                    continue;
                }
            } else if (provider && !auth_dropped) {
                // Refused again: no second retry (403 below), but let the provider drop
                // what it sent so the next request does not pay for the same bad token.
                auto forget = provider->on_unauthorized(areq, std::move(challenge));
                (void)co_await std::move(forget);
            }
            a.rc.upstream_time = clock::now() - started;
            const auto credentials = credentials_label(client_auth, auth_dropped, injected, provider.get());
            co_await reply_failure(a, errc::upstream_denied, "upstream answered 401", credentials);
            co_return;
        }

        if (is_redirect_status(status)) {
            const auto location = std::string(answer()[http::field::location]);
            if (a.snap.cfg->follow_redirects && !location.empty()) {
                if (++hops > max_redirect_hops) {
                    if (conn) {
                        conn->close();
                    }
                    a.io.upstream = nullptr;
                    a.io.upstream_h2 = nullptr;
                    h2.reset();
                    co_await reply_failure(a, errc::redirect_invalid, "more than 5 redirects", "");
                    co_return;
                }
                auto next = resolve_location(url, location);
                co_await discard_answer(h2, parser, conn, st, t, a.io);
                if (!next) {
                    co_await reply_failure(a, errc::redirect_invalid, "Location is not an http(s) URL", "");
                    co_return;
                }
                if (!same_origin(*next, url)) {
                    auth_dropped = true;  // and never re-added, even if a later hop comes back
                }
                if (same_origin(*next, route_ep->origin)) {
                    ep = *route_ep;
                } else {
                    ep = make_endpoint(*next, "", a.snap.default_tls, true);
                    if (next->scheme == "https" && !ep.tls) {
                        co_await reply_failure(a, errc::redirect_invalid, "no TLS context", "");
                        co_return;
                    }
                    ep.guard_addresses = true;
                    ep.allow_loopback = is_loopback_host(route_ep->origin.host);
                    if (!ep.allow_loopback) {
                        ep.pool_key += "#guarded";  // never reuse a connection opened under the looser rule
                    }
                }
                url = *next;
                a.rc.redirects = hops;
                continue;
            }
            if (!a.snap.cfg->follow_redirects && !location.empty()) {
                // Passed through: a relative Location must name the upstream, not us.
                if (auto abs = resolve_location(url, location); abs && location.find("://") == std::string::npos) {
                    answer().set(http::field::location, abs->str());
                }
            }
        }
        break;
    }
    a.rc.upstream_time = clock::now() - started;
    if (h2.valid()) {
        co_await relay_h2(a, h2_head, h2);
    } else {
        co_await relay_response(a, parser, conn);
    }
}

}  // namespace acp::proxy
