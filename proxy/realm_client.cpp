#include "proxy/realm_client.hpp"

#include "acp_version.hpp"
#include "config/logging.hpp"
#include "proxy/h2_upstream.hpp"
#include "proxy/redirect_policy.hpp"
#include "proxy/snapshot.hpp"
#include "proxy/upstream_pool.hpp"

#include <array>

namespace acp::proxy {
namespace {

tokens::token_failure transport_failure(const failure& f) {
    using k = tokens::token_failure::kind;
    return {f.code == errc::upstream_timeout ? k::realm_timeout : k::realm_unreachable, f.detail};
}

using realm_result = std::variant<tokens::realm_response, tokens::token_failure>;

// The fetch as one stream on the data path's shared HTTP/2 connection.
net::awaitable<realm_result> fetch_over_h2(h2_upstream_stream& stream, const http_url& origin, std::string_view target,
                                           const config::timeout_config& timeouts) {
    using k = tokens::token_failure::kind;
    auto head = co_await stream.read_head(timeouts.upstream_headers);
    if (!head) {
        co_return transport_failure(head.error());
    }
    tokens::realm_response out;
    out.status = head->status;
    for (;;) {
        auto got = co_await stream.read_some(timeouts.upstream_headers);
        if (!got) {
            co_return transport_failure(got.error());
        }
        if (got->empty()) {
            break;
        }
        if (out.body.size() + got->size() > tokens::max_token_response_bytes) {
            co_return tokens::token_failure{k::realm_bad_response,
                                            "token realm " + origin.authority() + " sent an oversized answer"};
        }
        out.body.append(reinterpret_cast<const char*>(got->data()), got->size());
        stream.consumed(got->size());
    }
    logging::logger("proxy")->debug("token realm GET {}{} -> {} ({} bytes, HTTP/2)", origin.authority(), target,
                                    out.status, out.body.size());
    co_return out;
}

net::awaitable<realm_result> fetch_from_realm(tokens::realm_request rr, std::shared_ptr<net::ssl::context> tls,
                                              bool verify_peer, std::shared_ptr<net::ssl::context> system_tls,
                                              config::timeout_config timeouts, config::http2_mode http2,
                                              std::shared_ptr<const shared_upstreams> shared) {
    using k = tokens::token_failure::kind;
    http_url origin{rr.realm.scheme, rr.realm.host, rr.realm.port, "/"};
    if (origin.scheme == "https" && !tls) {
        tls = std::move(system_tls);  // an http registry with an https realm: the system bundle
        verify_peer = true;
    }
    if (origin.scheme == "https" && !tls) {
        co_return tokens::token_failure{k::realm_unreachable, "no TLS context for realm " + origin.authority()};
    }
    auto ep = make_endpoint(origin, "", origin.scheme == "https" ? tls : nullptr, verify_peer);
    ep.http2 = http2;
    std::unique_ptr<upstream_connection> conn;
    if (shared && shared->h2 != nullptr && shared->stats != nullptr && shared->h2->wants_h2(ep)) {
        // The same pool key as the registry's endpoint when the realm is on its host: the same connection.
        const auto authorization = rr.authorization.reveal();
        const std::string user_agent = "acr-credential-proxy/" ACP_VERSION;
        const std::array<h2_field, 3> fields{h2_field{"authorization", authorization},
                                             h2_field{"accept", "application/json"},
                                             h2_field{"user-agent", user_agent}};
        const auto authority = origin.authority();
        const h2_request req{"GET", origin.scheme, authority, rr.target, fields};
        auto opened = co_await shared->h2->open(ep, req, timeouts.upstream_connect, *shared->stats);
        if (auto* f = std::get_if<failure>(&opened)) {
            co_return transport_failure(*f);
        }
        if (auto* stream = std::get_if<h2_upstream_stream>(&opened)) {
            auto fetched = co_await fetch_over_h2(*stream, origin, rr.target, timeouts);
            co_return fetched;
        }
        if (auto* c = std::get_if<std::unique_ptr<upstream_connection>>(&opened)) {
            conn = std::move(*c);  // ALPN chose http/1.1: this connection, as below
        }
    }
    if (!conn) {
        auto made = co_await connect_upstream(ep, timeouts.upstream_connect);
        if (!made) {
            co_return transport_failure(made.error());
        }
        conn = std::move(*made);
    }

    http::request<http::empty_body> req{http::verb::get, rr.target, 11};
    req.set(http::field::host, origin.authority());
    req.set(http::field::authorization, rr.authorization.reveal());
    req.set(http::field::accept, "application/json");
    req.set(http::field::user_agent, "acr-credential-proxy/" ACP_VERSION);
    req.set(http::field::connection, "close");

    http::response_parser<http::buffer_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(tokens::max_token_response_bytes);
    conn->expires_after(timeouts.upstream_headers);
    auto [wec, wn] = co_await conn->write(req);
    if (!wec) {
        auto [rec, rn] = co_await conn->read_header(parser);
        wec = rec;
    }
    tokens::realm_response out;
    std::array<char, 8192> chunk{};
    while (!wec && !parser.is_done()) {
        parser.get().body().data = chunk.data();
        parser.get().body().size = chunk.size();
        auto [rec, rn] = co_await conn->read(parser);
        if (rec == http::error::need_buffer) {
            rec = {};
        }
        wec = rec;
        out.body.append(chunk.data(), chunk.size() - parser.get().body().size);
    }
    conn->close();
    if (wec) {
        if (wec == http::error::body_limit) {
            co_return tokens::token_failure{k::realm_bad_response,
                                            "token realm " + origin.authority() + " sent an oversized answer"};
        }
        const auto code = classify_upstream(wec);
        co_return tokens::token_failure{code == errc::upstream_timeout ? k::realm_timeout : k::realm_unreachable,
                                        "token realm " + origin.authority() + ": " + wec.message()};
    }
    out.status = parser.get().result_int();
    // The target holds service, scope and account (a user name): no secret.
    logging::logger("proxy")->debug("token realm GET {}{} -> {} ({} bytes)", origin.authority(), rr.target, out.status,
                                    out.body.size());
    co_return out;
}

}  // namespace

tokens::realm_fetch_fn make_realm_fetcher(std::shared_ptr<net::ssl::context> tls, bool verify_peer,
                                          std::shared_ptr<net::ssl::context> system_tls,
                                          config::timeout_config timeouts, config::http2_mode http2,
                                          std::shared_ptr<const shared_upstreams> shared) {
    return [tls = std::move(tls), verify_peer, system_tls = std::move(system_tls), timeouts, http2,
            shared = std::move(shared)](tokens::realm_request rr) {
        return fetch_from_realm(std::move(rr), tls, verify_peer, system_tls, timeouts, http2, shared);
    };
}

}  // namespace acp::proxy
