#include "proxy/forward.hpp"

#include "config/logging.hpp"
#include "proxy/header_policy.hpp"
#include "proxy/local_reply.hpp"
#include "proxy/redirect_policy.hpp"
#include "tokens/auth_error.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/http/write.hpp>

#include <optional>

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
                                                const config::timeout_config& t, upstream_connection*& active) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        conn = attempt == 0 ? st.pool.take(ep.pool_key) : nullptr;
        const bool reused = conn != nullptr;
        if (!conn) {
            auto made = co_await connect_upstream(ep, t.upstream_connect);
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
        st.stats.on_upstream_connection(reused);
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

// Only trivially destructible parameters: GCC 12 destroys non-trivial
// temporaries of a co_await full-expression twice, so callers pass named locals.
net::awaitable<bool> reply_failure(forward_args& a, error_code code, std::string_view detail,
                                   std::string_view credentials) {
    a.rc.error = std::string(detail);
    const auto reply = to_local_reply(code, {a.route.host, a.path.name, credentials, detail});
    a.rc.status = static_cast<unsigned>(reply.status);
    a.rc.to_headers = clock::now() - a.rc.start;
    a.keep_alive = a.keep_alive && !a.state.draining;
    const auto ec =
        co_await write_local_reply(a.downstream, reply,
                                   {a.request.version(), a.keep_alive, a.request.method() == http::verb::head, a.rc.id,
                                    a.snap.cfg->timeouts.idle});
    co_return !ec && a.keep_alive && !reply.close;
}

net::awaitable<bool> reply_failure(forward_args& a, errc code, std::string_view detail, std::string_view credentials) {
    co_return co_await reply_failure(a, make_error_code(code), detail, credentials);
}

// An auth provider's error keeps its own category (the token flow's realm
// failures map to 502/503/504/403 in to_local_reply); anything else is 503.
error_code provider_error(const error_code& ec) {
    if (ec.category() == proxy_category() || ec.category() == tokens::auth_category()) {
        return ec;
    }
    return make_error_code(errc::credentials_unavailable);
}

// Writes what the serializer has next (head and/or body) within `idle`.
net::awaitable<error_code> write_down(timed_socket& down, http::response_serializer<http::buffer_body>& sr,
                                      config::duration idle, bool head_only = false) {
    down.deadline.expires_after(idle);
    auto [ec, n] = head_only ? co_await http::async_write_header(down.socket, sr, use_nothrow)
                             : co_await http::async_write(down.socket, sr, use_nothrow);
    down.deadline.expires_never();
    if (ec == http::error::need_buffer) {
        ec = {};  // the serializer wrote all it had and waits for more body
    }
    co_return down.deadline.check(ec);
}

net::awaitable<error_code> write_down(timed_socket& down, net::const_buffer b, config::duration idle) {
    down.deadline.expires_after(idle);
    auto [ec, n] = co_await net::async_write(down.socket, b, use_nothrow);
    down.deadline.expires_never();
    co_return down.deadline.check(ec);
}

// A body of known length (blobs, manifests): the body bytes that came with the
// head go out in the same write as the response head (a manifest: one write
// for the whole answer); the rest is read straight from the upstream socket
// into one fixed buffer and written as is, each read waiting for the previous
// write, so a slow client slows the upstream read (TCP backpressure) instead
// of growing memory. Exact accounting: the connection ends early, and the
// client sees a body shorter than its Content-Length, if the upstream does.
// Returns whether the whole body went through.
net::awaitable<bool> relay_known_length(forward_args& a, http::response_serializer<http::buffer_body>& sr,
                                        http::response<http::buffer_body>& res, std::uint64_t length,
                                        upstream_connection& conn) {
    const auto& t = a.snap.cfg->timeouts;
    auto& body = res.body();
    auto& buffered = conn.buffer();
    const auto first = static_cast<std::size_t>(std::min<std::uint64_t>(length, buffered.size()));
    net::mutable_buffer head_bytes = buffered.data();
    body.data = head_bytes.data();
    body.size = first;
    body.more = first < length;
    const auto hec = co_await write_down(a.downstream, sr, t.idle);
    a.rc.status = res.result_int();
    a.rc.to_headers = clock::now() - a.rc.start;
    if (hec) {
        a.rc.error = "downstream write: " + hec.message();
        co_return false;
    }
    buffered.consume(first);
    a.rc.bytes += first;
    a.state.stats.add_relayed_bytes(a.rc.metrics_registry, first);

    std::uint64_t remaining = length - first;
    if (remaining == 0) {
        co_return true;
    }
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
        const auto wec = co_await write_down(a.downstream, net::buffer(buf.get(), n), t.idle);
        if (wec) {
            a.rc.error = "downstream write: " + wec.message();
            co_return false;
        }
        remaining -= n;
        a.rc.bytes += n;
        a.state.stats.add_relayed_bytes(a.rc.metrics_registry, n);
    }
    co_return true;
}

// A chunked body, or one delimited by the end of the connection: Beast's
// relay() pattern, the parser's body chunks through one fixed buffer.
net::awaitable<bool> relay_chunked(forward_args& a, http::response_serializer<http::buffer_body>& sr,
                                   response_parser& parser, upstream_connection& conn) {
    const auto& t = a.snap.cfg->timeouts;
    auto& res = parser.get();
    const auto hec = co_await write_down(a.downstream, sr, t.idle, true);
    a.rc.status = res.result_int();
    a.rc.to_headers = clock::now() - a.rc.start;
    if (hec) {
        a.rc.error = "downstream write: " + hec.message();
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
        if (n == 0 && !parser.is_done()) {
            continue;
        }
        res.body().data = buf.get();
        res.body().size = n;
        res.body().more = !parser.is_done();
        const auto wec = co_await write_down(a.downstream, sr, t.idle);
        if (wec) {
            a.rc.error = "downstream write: " + wec.message();
            co_return false;
        }
        a.rc.bytes += n;
        a.state.stats.add_relayed_bytes(a.rc.metrics_registry, n);
    }
    if (!sr.is_done()) {
        res.body().data = nullptr;
        res.body().size = 0;
        res.body().more = false;
        const auto wec = co_await write_down(a.downstream, sr, t.idle);
        if (wec) {
            a.rc.error = "downstream write: " + wec.message();
            co_return false;
        }
    }
    co_return true;
}

// Streams the response head and body back; the upstream connection returns to
// the pool after a complete, clean response.
net::awaitable<bool> relay_response(forward_args& a, std::optional<response_parser>& parser,
                                    std::unique_ptr<upstream_connection>& conn) {
    const auto& t = a.snap.cfg->timeouts;
    auto& res = parser->get();
    const bool head = a.request.method() == http::verb::head;
    const bool upstream_chunked = parser->chunked();
    const auto content_length = parser->content_length();
    const bool upstream_keep_alive = parser->keep_alive();
    const bool header_only = head || parser->is_done();

    strip_hop_by_hop(res);
    res.version(a.request.version());
    bool keep_alive = a.keep_alive && !a.state.draining;  // a drain may have begun while we waited
    if (!header_only && (upstream_chunked || !content_length)) {
        if (a.request.version() >= 11) {
            res.chunked(true);
        } else {
            keep_alive = false;  // HTTP/1.0 client: the end of the body is the end of the connection
        }
    }
    res.keep_alive(keep_alive);

    http::response_serializer<http::buffer_body> sr{res};
    bool ok = false;
    if (header_only) {
        const auto hec = co_await write_down(a.downstream, sr, t.idle, true);
        a.rc.status = res.result_int();
        a.rc.to_headers = clock::now() - a.rc.start;
        ok = !hec;
        if (hec) {
            a.rc.error = "downstream write: " + hec.message();
        }
    } else if (!upstream_chunked && content_length) {
        ok = co_await relay_known_length(a, sr, res, *content_length, *conn);
    } else {
        ok = co_await relay_chunked(a, sr, *parser, *conn);
    }
    a.active_upstream = nullptr;
    // A known-length body bypasses the parser: complete when relay_known_length says so.
    const bool complete = header_only || (!upstream_chunked && content_length) || parser->is_done();
    if (ok && complete && upstream_keep_alive) {
        a.state.pool.put(std::move(conn));  // only if nothing beyond the body was read
    } else {
        conn->close();
    }
    co_return ok&& keep_alive;
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

net::awaitable<bool> forward_request(forward_args a) {
    auto& st = a.state;
    const auto& t = a.snap.cfg->timeouts;
    const bool head = a.request.method() == http::verb::head;
    const auto* route_ep = a.snap.endpoint_for(a.route);
    if (route_ep == nullptr) {
        co_return co_await reply_failure(a, errc::upstream_unreachable, "no endpoint for the route", "");
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
            co_return co_await reply_failure(a, code, detail, provider->name());
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
    const auto started = clock::now();

    for (;;) {
        up.set(http::field::host, url.authority());
        up.target(url.target);
        if (auth_dropped) {
            up.erase(http::field::authorization);
        } else if (injected) {
            up.set(http::field::authorization, injected->reveal());
        }
        auto failed = co_await exchange(ep, up, head, parser, conn, st, t, a.active_upstream);
        if (failed) {
            const auto credentials = credentials_label(client_auth, auth_dropped, injected, provider.get());
            co_return co_await reply_failure(a, failed->code, failed->detail, credentials);
        }
        const unsigned status = parser->get().result_int();

        if (status == 401) {
            tokens::auth_challenge challenge{401, field_values(parser->get(), http::field::www_authenticate),
                                             injected.value_or(config::secret{})};
            co_await discard_response(parser, conn, st, t, a.active_upstream);
            if (provider && !auth_retried && !auth_dropped) {
                auth_retried = true;
                auto ask = provider->on_unauthorized(areq, std::move(challenge));
                auto retry = co_await std::move(ask);
                if (!retry) {
                    const auto detail = retry.error().detail;
                    const auto code = provider_error(retry.error().code);
                    co_return co_await reply_failure(a, code, detail, provider->name());
                }
                if (*retry) {
                    auto authorize_again = provider->authorize(areq);
                    auto again = co_await std::move(authorize_again);
                    if (!again) {
                        const auto detail = again.error().detail;
                        const auto code = provider_error(again.error().code);
                        co_return co_await reply_failure(a, code, detail, provider->name());
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
            co_return co_await reply_failure(a, errc::upstream_denied, "upstream answered 401", credentials);
        }

        if (is_redirect_status(status)) {
            const auto location = std::string(parser->get()[http::field::location]);
            if (a.snap.cfg->follow_redirects && !location.empty()) {
                if (++hops > max_redirect_hops) {
                    conn->close();
                    a.active_upstream = nullptr;
                    co_return co_await reply_failure(a, errc::redirect_invalid, "more than 5 redirects", "");
                }
                auto next = resolve_location(url, location);
                co_await discard_response(parser, conn, st, t, a.active_upstream);
                if (!next) {
                    co_return co_await reply_failure(a, errc::redirect_invalid, "Location is not an http(s) URL", "");
                }
                if (!same_origin(*next, url)) {
                    auth_dropped = true;  // and never re-added, even if a later hop comes back
                }
                if (same_origin(*next, route_ep->origin)) {
                    ep = *route_ep;
                } else {
                    ep = make_endpoint(*next, "", a.snap.default_tls, true);
                    if (next->scheme == "https" && !ep.tls) {
                        co_return co_await reply_failure(a, errc::redirect_invalid, "no TLS context", "");
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
                    parser->get().set(http::field::location, abs->str());
                }
            }
        }
        break;
    }
    a.rc.upstream_time = clock::now() - started;
    co_return co_await relay_response(a, parser, conn);
}

}  // namespace acp::proxy
