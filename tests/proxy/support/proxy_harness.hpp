// Runs the real proxy::server on 127.0.0.1 port 0 in its own thread, with a
// config the test builds, and a small blocking HTTP client with socket
// timeouts so a broken test fails instead of hanging.
#pragma once

#include "config/config.hpp"
#include "proxy/server.hpp"
#include "proxy/snapshot.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

namespace acp::test {

namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

/// Defaults for tests: loopback port 0 everywhere, short timeouts.
std::shared_ptr<config::config> test_config();

/// A registry route for `host` reaching `upstream_authority` over http.
config::registry& add_http_registry(config::config& cfg, const std::string& host, const std::string& upstream_authority,
                                    config::auth_kind kind = config::auth_kind::anonymous,
                                    const std::string& username = "", const std::string& password = "");

class proxy_under_test {
public:
    explicit proxy_under_test(std::shared_ptr<const config::config> cfg);
    ~proxy_under_test();  // graceful shutdown, then joins

    [[nodiscard]] tcp::endpoint data() const { return data_; }
    [[nodiscard]] tcp::endpoint admin() const { return admin_; }
    /// Applies a new config on the server thread and waits for it.
    void reload(std::shared_ptr<const config::config> cfg);
    /// Runs the graceful shutdown now and waits until it has finished.
    void shutdown();

private:
    boost::asio::io_context ioc_;
    std::unique_ptr<proxy::server> server_;
    tcp::endpoint data_;
    tcp::endpoint admin_;
    std::thread thread_;
    bool stopped_ = false;
};

/// A blocking client connection with a receive/send timeout.
class client {
public:
    explicit client(const tcp::endpoint& ep, std::chrono::milliseconds timeout = std::chrono::seconds(5));

    /// Sends a GET/HEAD etc. with the given extra header lines and reads the response.
    http::response<http::string_body> get(const std::string& target,
                                          const std::vector<std::pair<std::string, std::string>>& headers = {},
                                          http::verb method = http::verb::get);
    /// Sends a GET and reads only the response head; returns the status.
    unsigned get_head_only(const std::string& target);
    /// Writes raw bytes.
    void send_raw(const std::string& bytes);
    /// Reads one response (HEAD: pass head=true so no body is expected).
    http::response<http::string_body> read_response(bool head = false);
    /// True when the peer closes the connection before `within` (reads and discards any bytes).
    bool closed_by_peer(std::chrono::milliseconds within);
    /// Bytes of the response body counted and checked against the fake's generator; returns the body size.
    std::uint64_t get_generated(const std::string& target, unsigned& status);

private:
    using done_fn = std::function<void(boost::beast::error_code)>;
    /// Starts an async operation and runs it for at most the timeout; throws on error or timeout.
    void drive(const std::function<void(done_fn)>& start, bool allow_need_buffer = false);

    boost::asio::io_context ioc_;
    boost::beast::tcp_stream stream_;
    boost::beast::flat_buffer buffer_;
    std::chrono::milliseconds timeout_;
};

/// Polls `pred` until it holds or `within` passes.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds within = std::chrono::seconds(3)) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return pred();
}

}  // namespace acp::test
