#include "tests/proxy/support/fake_upstream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

namespace acp::test {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

bool iequal(std::string_view a, std::string_view b) {
    return beast::iequals(a, b);
}

}  // namespace

std::vector<std::string> recorded_request::values(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& [n, v] : headers) {
        if (iequal(n, name)) {
            out.push_back(v);
        }
    }
    return out;
}

struct fake_upstream::state {
    handler h;
    std::shared_ptr<net::ssl::context> tls;
    mutable std::mutex mutex;
    std::vector<recorded_request> requests;
    std::atomic<std::size_t> connections{0};
};

namespace {

template <class Stream>
net::awaitable<void> serve_connection(std::shared_ptr<fake_upstream::state> st, Stream& stream, std::size_t index) {
    beast::flat_buffer buffer;
    for (;;) {
        http::request<http::string_body> req;
        auto [ec, n] = co_await http::async_read(stream, buffer, req, net::as_tuple(net::use_awaitable));
        if (ec) {
            co_return;
        }
        recorded_request rec;
        rec.method = std::string(req.method_string());
        rec.target = std::string(req.target());
        rec.connection = index;
        for (const auto& f : req) {
            rec.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
        }
        {
            std::lock_guard lock(st->mutex);
            st->requests.push_back(rec);
        }
        const auto resp = st->h(rec);
        auto ex = co_await net::this_coro::executor;
        if (resp.never_respond) {
            net::steady_timer forever(ex, std::chrono::hours(1));
            co_await forever.async_wait(net::as_tuple(net::use_awaitable));
            co_return;
        }
        if (resp.delay.count() > 0) {
            net::steady_timer t(ex, resp.delay);
            co_await t.async_wait(net::as_tuple(net::use_awaitable));
        }
        http::response<http::buffer_body> res{static_cast<http::status>(resp.status), 11};
        for (const auto& [name, value] : resp.headers) {
            res.insert(name, value);
        }
        const bool head = req.method() == http::verb::head;
        const std::uint64_t size = resp.generated_body > 0 ? resp.generated_body : resp.body.size();
        if (resp.chunked) {
            res.chunked(true);
        } else if (!res.has_content_length()) {
            res.content_length(size);
        }
        res.keep_alive(!resp.close && req.keep_alive());
        http::response_serializer<http::buffer_body> sr{res};
        auto [hec, hn] = co_await http::async_write_header(stream, sr, net::as_tuple(net::use_awaitable));
        if (hec) {
            co_return;
        }
        if (resp.body_delay.count() > 0) {
            net::steady_timer t(ex, resp.body_delay);
            co_await t.async_wait(net::as_tuple(net::use_awaitable));
        }
        if (!head && resp.status != 204 && resp.status != 304) {
            std::vector<char> chunk(64 * 1024);
            std::uint64_t sent = 0;
            while (sent < size) {
                const auto len = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), size - sent));
                for (std::size_t i = 0; i < len; ++i) {
                    chunk[i] = resp.generated_body > 0 ? fake_upstream::generated_byte(sent + i)
                                                       : resp.body[static_cast<std::size_t>(sent) + i];
                }
                res.body().data = chunk.data();
                res.body().size = len;
                res.body().more = true;
                auto [wec, wn] = co_await http::async_write(stream, sr, net::as_tuple(net::use_awaitable));
                if (wec && wec != http::error::need_buffer) {
                    co_return;
                }
                sent += len;
            }
            res.body().data = nullptr;
            res.body().size = 0;
            res.body().more = false;
            auto [fec, fn] = co_await http::async_write(stream, sr, net::as_tuple(net::use_awaitable));
            if (fec && fec != http::error::need_buffer) {
                co_return;
            }
        }
        if (!res.keep_alive()) {
            co_return;
        }
    }
}

net::awaitable<void> connection(std::shared_ptr<fake_upstream::state> st, tcp::socket socket) {
    const auto index = ++st->connections;
    if (st->tls) {
        beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *st->tls);
        auto [ec] = co_await stream.async_handshake(net::ssl::stream_base::server, net::as_tuple(net::use_awaitable));
        if (!ec) {
            co_await serve_connection(st, stream, index);
        }
        co_return;
    }
    beast::tcp_stream stream(std::move(socket));
    co_await serve_connection(st, stream, index);
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

net::awaitable<void> accept_loop(std::shared_ptr<fake_upstream::state> st, tcp::acceptor acceptor) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(net::as_tuple(net::use_awaitable));
        if (ec) {
            co_return;
        }
        // Test fake: every coroutine dies with the io_context in the destructor.
        net::co_spawn(acceptor.get_executor(), connection(st, std::move(socket)), net::detached);
    }
}

}  // namespace

fake_upstream::fake_upstream(handler h, std::shared_ptr<net::ssl::context> tls)
    : state_(std::make_shared<state>()), connections_(state_->connections) {
    state_->h = std::move(h);
    state_->tls = std::move(tls);
    tcp::acceptor acceptor(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    port_ = acceptor.local_endpoint().port();
    net::co_spawn(ioc_, accept_loop(state_, std::move(acceptor)), net::detached);
    thread_ = std::thread([this] { ioc_.run(); });
}

fake_upstream::~fake_upstream() {
    ioc_.stop();
    thread_.join();
}

std::vector<recorded_request> fake_upstream::requests() const {
    std::lock_guard lock(state_->mutex);
    return state_->requests;
}

test_certificate test_certificate::make(const std::string& common_name) {
    test_certificate out;
    char tmpl[] = "/tmp/acp-cert-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
        throw std::runtime_error("mkdtemp failed");
    }
    out.dir = tmpl;
    out.cert_file = out.dir + "/cert.pem";
    out.key_file = out.dir + "/key.pem";

    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600 * 24);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                               -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
    const std::string san = "DNS:" + common_name + ",IP:127.0.0.1";
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str());
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_EXTENSION* bc = X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, bc, -1);
    X509_EXTENSION_free(bc);
    X509_sign(x, key, EVP_sha256());

    FILE* cf = std::fopen(out.cert_file.c_str(), "w");
    PEM_write_X509(cf, x);
    std::fclose(cf);
    FILE* kf = std::fopen(out.key_file.c_str(), "w");
    PEM_write_PrivateKey(kf, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(kf);
    X509_free(x);
    EVP_PKEY_free(key);
    return out;
}

test_certificate::~test_certificate() {
    if (!dir.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
}

}  // namespace acp::test
