#include "proxy/upstream_pool.hpp"

#include "proxy/metrics.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace acp::proxy {
namespace {

std::string describe_tls_error(const error_code& ec, SSL* ssl) {
    std::string out = ec.message();
    if (ssl != nullptr) {
        const long verify = SSL_get_verify_result(ssl);
        if (verify != X509_V_OK) {
            out += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
        }
    }
    return out;
}

// ALPN protocol lists in wire format (RFC 7301 §3.1): length-prefixed names.
constexpr unsigned char alpn_h2_h1[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr unsigned char alpn_h2_only[] = {2, 'h', '2'};

}  // namespace

// Beast sizes each read by the buffer's free capacity: a buffer left at the
// size of the response head would read a blob a kilobyte at a time.
constexpr std::size_t read_buffer_capacity = 64 * 1024;

upstream_connection::upstream_connection(plain_stream s, std::string pool_key)
    : stream_(std::in_place_index<0>, std::move(s)), pool_key_(std::move(pool_key)), deadline_(raw_socket()) {
    buffer_.reserve(read_buffer_capacity);
}

upstream_connection::upstream_connection(tls_stream s, std::shared_ptr<net::ssl::context> ctx, std::string pool_key)
    : tls_ctx_(std::move(ctx)),
      stream_(std::in_place_index<1>, std::move(s)),
      pool_key_(std::move(pool_key)),
      deadline_(raw_socket()) {
    buffer_.reserve(read_buffer_capacity);
}

tcp::socket& upstream_connection::raw_socket() noexcept {
    if (auto* p = std::get_if<plain_stream>(&stream_)) {
        return *p;
    }
    return std::get<tls_stream>(stream_).next_layer();
}

// Each operation reports beast::error::timeout when the deadline cut it off.
net::awaitable<upstream_connection::io_result> upstream_connection::write(http::request<http::empty_body>& req) {
    auto [ec, n] = co_await std::visit([&](auto& s) { return http::async_write(s, req, use_nothrow); }, stream_);
    co_return io_result{deadline_.check(ec), n};
}

net::awaitable<upstream_connection::io_result> upstream_connection::read_header(
    http::response_parser<http::buffer_body>& p) {
    auto [ec, n] =
        co_await std::visit([&](auto& s) { return http::async_read_header(s, buffer_, p, use_nothrow); }, stream_);
    co_return io_result{deadline_.check(ec), n};
}

net::awaitable<upstream_connection::io_result> upstream_connection::read(http::response_parser<http::buffer_body>& p) {
    auto [ec, n] = co_await std::visit([&](auto& s) { return http::async_read(s, buffer_, p, use_nothrow); }, stream_);
    co_return io_result{deadline_.check(ec), n};
}

net::awaitable<upstream_connection::io_result> upstream_connection::read_some(
    http::response_parser<http::buffer_body>& p) {
    auto [ec, n] =
        co_await std::visit([&](auto& s) { return http::async_read_some(s, buffer_, p, use_nothrow); }, stream_);
    co_return io_result{deadline_.check(ec), n};
}

net::awaitable<upstream_connection::io_result> upstream_connection::read_some(net::mutable_buffer b) {
    auto [ec, n] = co_await std::visit([&](auto& s) { return s.async_read_some(b, use_nothrow); }, stream_);
    co_return io_result{deadline_.check(ec), n};
}

void upstream_connection::close() noexcept {
    error_code ec;
    raw_socket().shutdown(tcp::socket::shutdown_both, ec);
    raw_socket().close(ec);
}

bool upstream_connection::looks_alive() noexcept {
    return raw_socket().is_open() && buffer_.size() == 0 && !deadline_.expired();
}

upstream_transport upstream_connection::release_transport() && {
    using stream_type = decltype(upstream_transport::stream);
    if (auto* p = std::get_if<plain_stream>(&stream_)) {
        return upstream_transport{stream_type(std::in_place_index<0>, std::move(*p)), nullptr};
    }
    return upstream_transport{stream_type(std::in_place_index<1>, std::move(std::get<tls_stream>(stream_))),
                              std::move(tls_ctx_)};
}

net::awaitable<boost::system::result<std::unique_ptr<upstream_connection>, failure>> connect_upstream(
    const upstream_endpoint& ep, config::duration timeout, config::http2_mode alpn, metrics* stats) {
    auto ex = co_await net::this_coro::executor;
    const auto& host = ep.origin.host;
    const auto where = ep.origin.authority();

    std::vector<tcp::endpoint> endpoints;
    error_code ec;
    const auto literal = net::ip::make_address(host, ec);
    const bool is_ip = !ec;
    if (is_ip) {
        endpoints.emplace_back(literal, ep.origin.port);
    } else {
        tcp::resolver resolver(ex);
        auto [rec, results] = co_await resolver.async_resolve(host, std::to_string(ep.origin.port), use_nothrow);
        if (rec) {
            co_return failure{errc::upstream_unreachable, "cannot resolve " + host + ": " + rec.message()};
        }
        for (const auto& r : results) {
            endpoints.push_back(r.endpoint());
        }
    }
    if (ep.guard_addresses) {
        // A followed redirect: refuse before dialling if any address is internal.
        for (const auto& e : endpoints) {
            if (auto why = forbidden_redirect_address(e.address(), ep.allow_loopback)) {
                co_return failure{errc::redirect_invalid,
                                  "redirect to " + where + " refused: " + e.address().to_string() + " is " + *why};
            }
        }
    }

    beast::tcp_stream stream(ex);
    stream.expires_after(timeout);
    auto [cec, connected] = co_await stream.async_connect(endpoints, use_nothrow);
    if (cec) {
        const auto code = cec == beast::error::timeout ? errc::upstream_timeout : errc::upstream_unreachable;
        co_return failure{code, "connect to " + where + ": " + cec.message()};
    }
    stream.socket().set_option(tcp::no_delay(true), ec);
    stream.expires_never();
    tcp::socket socket = stream.release_socket();

    if (!ep.is_tls()) {
        auto plain = std::make_unique<upstream_connection>(std::move(socket), ep.pool_key);
        plain->set_negotiated_h2(alpn == config::http2_mode::on);  // h2c with prior knowledge
        co_return plain;
    }

    upstream_connection::tls_stream tls(std::move(socket), *ep.tls);
    SSL* ssl = tls.native_handle();
    // SSL_set_tlsext_host_name is a macro with a C cast; call what it expands to.
    if (!is_ip &&
        SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(host.c_str())) != 1) {
        co_return failure{errc::upstream_tls, "cannot set SNI for " + host};
    }
    if (alpn != config::http2_mode::off) {
        const bool h2_only = alpn == config::http2_mode::on;
        const unsigned char* protos = h2_only ? alpn_h2_only : alpn_h2_h1;
        const auto len = static_cast<unsigned>(h2_only ? sizeof alpn_h2_only : sizeof alpn_h2_h1);
        if (SSL_set_alpn_protos(ssl, protos, len) != 0) {  // 0 is success here
            co_return failure{errc::upstream_tls, "cannot set ALPN for " + host};
        }
    }
    if (ep.verify_peer) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        const int set = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                              : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
        if (set != 1) {
            co_return failure{errc::upstream_tls, "cannot set the expected peer name " + host};
        }
    }
    error_code hec;
    {
        lazy_deadline handshake_deadline(tls.next_layer());
        handshake_deadline.expires_after(timeout);
        auto [e] = co_await tls.async_handshake(net::ssl::stream_base::client, use_nothrow);
        hec = handshake_deadline.check(e);
    }
    if (hec) {
        if (hec == beast::error::timeout) {
            co_return failure{errc::upstream_timeout, "TLS handshake with " + where + " timed out"};
        }
        co_return failure{errc::upstream_tls, "TLS handshake with " + where + ": " + describe_tls_error(hec, ssl)};
    }
    if (stats != nullptr) {
        stats->on_upstream_tls_handshake();
    }
    const unsigned char* selected = nullptr;
    unsigned selected_len = 0;
    SSL_get0_alpn_selected(ssl, &selected, &selected_len);
    const bool h2 = selected_len == 2 && selected[0] == 'h' && selected[1] == '2';
    if (alpn == config::http2_mode::on && !h2) {
        co_return failure{errc::upstream_protocol, host + " did not negotiate HTTP/2 (http2: on)"};
    }
    auto conn = std::make_unique<upstream_connection>(std::move(tls), ep.tls, ep.pool_key);
    conn->set_negotiated_h2(h2);
    co_return conn;
}

std::unique_ptr<upstream_connection> upstream_pool::take(const std::string& key) {
    auto it = idle_.find(key);
    if (it == idle_.end()) {
        return nullptr;
    }
    auto& q = it->second;
    const auto now = std::chrono::steady_clock::now();
    while (!q.empty()) {
        auto c = std::move(q.back());  // most recently used first: likeliest to be alive
        q.pop_back();
        if (now - c->idle_since < max_idle_age_ && c->looks_alive()) {
            c->reused = true;
            return c;
        }
        c->close();
    }
    idle_.erase(it);
    return nullptr;
}

void upstream_pool::put(std::unique_ptr<upstream_connection> c) {
    if (!c || c->generation != generation_ || !c->looks_alive()) {
        if (c) {
            c->close();
        }
        return;
    }
    auto& q = idle_[c->pool_key()];
    if (q.size() >= max_idle_per_origin_) {
        c->close();
        return;
    }
    c->expires_never();
    c->idle_since = std::chrono::steady_clock::now();
    q.push_back(std::move(c));
}

void upstream_pool::clear() {
    for (auto& [key, q] : idle_) {
        for (auto& c : q) {
            c->close();
        }
    }
    idle_.clear();
    ++generation_;
}

std::size_t upstream_pool::idle_count() const noexcept {
    std::size_t n = 0;
    for (const auto& [key, q] : idle_) {
        n += q.size();
    }
    return n;
}

}  // namespace acp::proxy
