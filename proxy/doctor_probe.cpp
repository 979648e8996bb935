#include "proxy/doctor_probe.hpp"

#include "acp_version.hpp"
#include "config/loader.hpp"
#include "proxy/net.hpp"
#include "proxy/upstream_pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <condition_variable>
#include <mutex>
#include <netdb.h>
#include <sys/socket.h>
#include <thread>

namespace acp::proxy::doctor {

namespace {

using std::chrono::milliseconds;

/// The libcurl client with every request's timeouts clamped to --timeout
/// (the credential providers ask for 10 s on their own).
class bounded_http_client final : public tokens::http_client {
public:
    bounded_http_client(std::unique_ptr<tokens::http_client> inner, milliseconds limit)
        : inner_(std::move(inner)), limit_(limit) {}

    tokens::http_outcome perform(const tokens::http_request& req) override {
        auto bounded = req;
        bounded.timeout = std::min(bounded.timeout, limit_);
        bounded.connect_timeout = std::min(bounded.connect_timeout, limit_);
        return inner_->perform(bounded);
    }

private:
    std::unique_ptr<tokens::http_client> inner_;
    milliseconds limit_;
};

/// Runs one coroutine to completion on a private io_context.
template <class T>
T run_sync(net::awaitable<T> op) {
    net::io_context ioc;
    auto result = net::co_spawn(ioc, std::move(op), net::use_future);
    ioc.run();
    return result.get();
}

/// Connects to `ep` as the proxy does (connect_upstream: connect, SNI, peer
/// verification) and, when `target` is set, sends an unauthenticated GET.
net::awaitable<upstream_probe> probe(upstream_endpoint ep, std::string target, config::duration timeout) {
    upstream_probe out;
    auto made = co_await connect_upstream(ep, timeout);
    if (!made) {
        out.error = made.error().detail;
        co_return out;
    }
    out.connected = true;
    auto conn = std::move(*made);
    if (target.empty()) {
        conn->close();
        co_return out;
    }
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, ep.origin.authority());
    req.set(http::field::user_agent, "acr-credential-proxy/" ACP_VERSION " doctor");
    req.set(http::field::accept, "application/json");
    req.set(http::field::connection, "close");
    http::response_parser<http::buffer_body> parser;
    parser.header_limit(16 * 1024);
    conn->expires_after(timeout);
    auto [wec, wn] = co_await conn->write(req);
    if (!wec) {
        auto [rec, rn] = co_await conn->read_header(parser);
        wec = rec;
    }
    conn->close();
    if (wec) {
        out.error = "GET " + target + ": " + wec.message();
        co_return out;
    }
    out.status = parser.get().result_int();
    for (const auto& f : parser.get()) {
        if (f.name() == http::field::www_authenticate) {
            out.www_authenticate.emplace_back(f.value());
        }
    }
    co_return out;
}

}  // namespace

std::unique_ptr<tokens::http_client> make_bounded_http_client(std::unique_ptr<tokens::http_client> inner,
                                                              milliseconds limit) {
    return std::make_unique<bounded_http_client>(std::move(inner), limit);
}

lookup resolve_bounded(const std::string& host, milliseconds timeout) {
    struct state {
        std::mutex mu;
        std::condition_variable cv;
        bool done = false;
        lookup result;
    };
    auto st = std::make_shared<state>();
    std::thread([st, host] {
        lookup l;
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
        if (rc != 0) {
            l.error = ::gai_strerror(rc);  // NOLINT(concurrency-mt-unsafe): returns a static string per code
        } else {
            for (const addrinfo* p = res; p != nullptr; p = p->ai_next) {
                char buf[INET6_ADDRSTRLEN] = {};
                const void* addr = nullptr;
                if (p->ai_family == AF_INET) {
                    addr = &reinterpret_cast<const sockaddr_in*>(p->ai_addr)->sin_addr;
                } else if (p->ai_family == AF_INET6) {
                    addr = &reinterpret_cast<const sockaddr_in6*>(p->ai_addr)->sin6_addr;
                }
                if (addr != nullptr && ::inet_ntop(p->ai_family, addr, buf, sizeof buf) != nullptr &&
                    std::find(l.addresses.begin(), l.addresses.end(), buf) == l.addresses.end()) {
                    l.addresses.emplace_back(buf);
                }
            }
            ::freeaddrinfo(res);
            if (l.addresses.empty()) {
                l.error = "no address";
            }
        }
        {
            std::lock_guard lk(st->mu);
            st->result = std::move(l);
            st->done = true;
        }
        st->cv.notify_all();
    }).detach();
    std::unique_lock lk(st->mu);
    if (!st->cv.wait_for(lk, timeout, [&] { return st->done; })) {
        return {{}, "no answer within " + config::format_duration(timeout)};
    }
    return st->result;
}

bool is_ip_literal(const std::string& host) {
    error_code ec;
    (void)net::ip::make_address(host, ec);
    return !ec;
}

upstream_probe probe_upstream(const upstream_endpoint& ep, const std::string& target, milliseconds timeout) {
    return run_sync(probe(ep, target, timeout));
}

}  // namespace acp::proxy::doctor
