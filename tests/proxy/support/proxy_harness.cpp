#include "tests/proxy/support/proxy_harness.hpp"

#include "tests/proxy/support/fake_upstream.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <future>
#include <stdexcept>

namespace acp::test {

namespace net = boost::asio;
namespace beast = boost::beast;

std::shared_ptr<config::config> test_config() {
    auto cfg = std::make_shared<config::config>();
    cfg->listen = {"127.0.0.1", 0};
    cfg->admin_listen = {"127.0.0.1", 0};
    cfg->timeouts.header_read = std::chrono::milliseconds(300);
    cfg->timeouts.idle = std::chrono::seconds(5);
    cfg->timeouts.upstream_connect = std::chrono::seconds(2);
    cfg->timeouts.upstream_headers = std::chrono::seconds(2);
    cfg->timeouts.upstream_idle = std::chrono::seconds(2);
    cfg->timeouts.shutdown_grace = std::chrono::seconds(2);
    return cfg;
}

config::registry& add_http_registry(config::config& cfg, const std::string& host, const std::string& upstream_authority,
                                    config::auth_kind kind, const std::string& username, const std::string& password) {
    config::registry r;
    r.host = host;
    r.auth.kind = kind;
    r.auth.username = username;
    r.auth.password = config::secret(password);
    cfg.registries.push_back(r);
    const auto colon = upstream_authority.rfind(':');
    cfg.endpoint_overrides[host] = {"http", upstream_authority.substr(0, colon),
                                    static_cast<std::uint16_t>(std::stoi(upstream_authority.substr(colon + 1))), ""};
    return cfg.registries.back();
}

proxy_under_test::proxy_under_test(std::shared_ptr<const config::config> cfg) {
    server_ = std::make_unique<proxy::server>(ioc_, proxy::build_snapshot(std::move(cfg)));
    std::string what;
    if (auto ec = server_->listen(what)) {
        throw std::runtime_error(what + ": " + ec.message());
    }
    data_ = server_->data_endpoint();
    admin_ = server_->admin_endpoint();
    server_->start();
    thread_ = std::thread([this] { ioc_.run(); });
}

proxy_under_test::~proxy_under_test() {
    shutdown();
    thread_.join();
}

void proxy_under_test::shutdown() {
    if (stopped_) {
        return;
    }
    stopped_ = true;
    auto done = net::co_spawn(ioc_, server_->shutdown(), net::use_future);
    done.get();
}

void proxy_under_test::reload(std::shared_ptr<const config::config> cfg) {
    auto snap = proxy::build_snapshot(std::move(cfg));
    std::promise<void> applied;
    net::post(ioc_, [&] {
        server_->apply(snap);
        applied.set_value();
    });
    applied.get_future().get();
}

client::client(const tcp::endpoint& ep, std::chrono::milliseconds timeout) : stream_(ioc_), timeout_(timeout) {
    stream_.connect(ep);
}

void client::drive(const std::function<void(done_fn)>& start, bool allow_need_buffer) {
    std::optional<beast::error_code> result;
    start([&result](beast::error_code ec) { result = ec; });
    ioc_.restart();
    ioc_.run_for(timeout_);
    if (!result) {
        stream_.close();
        ioc_.restart();
        ioc_.run();
        throw std::runtime_error("client operation timed out");
    }
    if (*result && !(allow_need_buffer && *result == http::error::need_buffer)) {
        throw beast::system_error(*result);
    }
}

http::response<http::string_body> client::get(const std::string& target,
                                              const std::vector<std::pair<std::string, std::string>>& headers,
                                              http::verb method) {
    http::request<http::empty_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    for (const auto& [name, value] : headers) {
        req.insert(name, value);
    }
    drive([&](done_fn done) {
        http::async_write(stream_, req, [done](beast::error_code ec, std::size_t) { done(ec); });
    });
    return read_response(method == http::verb::head);
}

void client::send_raw(const std::string& bytes) {
    drive([&](done_fn done) {
        net::async_write(stream_, net::buffer(bytes), [done](beast::error_code ec, std::size_t) { done(ec); });
    });
}

http::response<http::string_body> client::read_response(bool head) {
    http::response_parser<http::string_body> p;
    p.body_limit(64 * 1024 * 1024);
    p.skip(head);
    drive([&](done_fn done) {
        http::async_read(stream_, buffer_, p, [done](beast::error_code ec, std::size_t) { done(ec); });
    });
    return p.release();
}

bool client::closed_by_peer(std::chrono::milliseconds within) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
        std::optional<beast::error_code> result;
        stream_.async_read_some(net::buffer(buf), [&result](beast::error_code ec, std::size_t) { result = ec; });
        ioc_.restart();
        ioc_.run_until(deadline);
        if (!result) {
            stream_.close();
            ioc_.restart();
            ioc_.run();
            return false;
        }
        if (*result == net::error::eof || *result == net::error::connection_reset) {
            return true;
        }
        if (*result) {
            return false;
        }
    }
    return false;
}

unsigned client::get_head_only(const std::string& target) {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    drive([&](done_fn done) {
        http::async_write(stream_, req, [done](beast::error_code ec, std::size_t) { done(ec); });
    });
    http::response_parser<http::empty_body> p;
    drive([&](done_fn done) {
        http::async_read_header(stream_, buffer_, p, [done](beast::error_code ec, std::size_t) { done(ec); });
    });
    return p.get().result_int();
}

std::uint64_t client::get_generated(const std::string& target, unsigned& status) {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    drive([&](done_fn done) {
        http::async_write(stream_, req, [done](beast::error_code ec, std::size_t) { done(ec); });
    });
    http::response_parser<http::buffer_body> p;
    p.body_limit(boost::none);
    drive([&](done_fn done) {
        http::async_read_header(stream_, buffer_, p, [done](beast::error_code ec, std::size_t) { done(ec); });
    });
    status = p.get().result_int();
    std::vector<char> buf(256 * 1024);
    std::uint64_t total = 0;
    while (!p.is_done()) {
        p.get().body().data = buf.data();
        p.get().body().size = buf.size();
        drive(
            [&](done_fn done) {
                http::async_read(stream_, buffer_, p, [done](beast::error_code ec, std::size_t) { done(ec); });
            },
            true);
        const auto n = buf.size() - p.get().body().size;
        for (std::size_t i = 0; i < n; ++i) {
            if (buf[i] != fake_upstream::generated_byte(total + i)) {
                throw std::runtime_error("relayed body differs at byte " + std::to_string(total + i));
            }
        }
        total += n;
    }
    return total;
}

}  // namespace acp::test
