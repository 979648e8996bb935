// proxy/h2_upstream against a real HTTP/2 server on a loopback TLS socket:
// an in-process nghttp2 server session behind an Asio TLS acceptor with ALPN
// (h2 and http/1.1, or http/1.1 only), a throwaway self-signed certificate for
// 127.0.0.1 made by the openssl tool, and knobs for what the cases need:
// SETTINGS_MAX_CONCURRENT_STREAMS, no PING ACKs, a graceful GOAWAY (what
// nghttpx does on SIGQUIT) and dropping every connection. The server counts
// the TCP connections it accepted and the PINGs it got.
//
// Bodies: GET /size/N answers N bytes of a pattern; /hang never answers.
#include "proxy/h2_upstream.hpp"

#include "proxy/metrics.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <catch2/catch.hpp>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <spawn.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <variant>
#include <vector>

namespace {

using namespace acp::proxy;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using tls_socket = net::ssl::stream<tcp::socket>;

char body_byte(std::size_t offset) {
    return static_cast<char>('a' + offset % 23);
}

// ---- certificate
// ------------------------------------------------------------------------------------------------------

struct test_cert {
    std::string dir;
    std::string cert;
    std::string key;
};

const test_cert& cert() {
    static const test_cert c = [] {
        std::string tmpl = (std::filesystem::temp_directory_path() / "h2up-XXXXXX").string();
        if (mkdtemp(tmpl.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        test_cert t{tmpl, tmpl + "/cert.pem", tmpl + "/key.pem"};
        const std::string cmd =
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
            "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
            t.key + " -out " + t.cert + " >/dev/null 2>&1";
        if (std::system(cmd.c_str()) != 0) {
            throw std::runtime_error("openssl req failed (is the openssl tool installed?)");
        }
        return t;
    }();
    return c;
}

// ---- the server -----------------------------------------------------------------------------------------------------

struct server_options {
    bool h2 = true;   // ALPN: h2 and http/1.1; false: http/1.1 only
    bool tls = true;  // false: plain TCP, HTTP/2 with prior knowledge (h2c)
    std::uint32_t max_concurrent = 100;
    bool ping_ack = true;
};

class test_server;

class server_conn {
public:
    using socket_type = std::variant<tls_socket, tcp::socket>;
    server_conn(test_server& srv, socket_type s);
    ~server_conn() { nghttp2_session_del(session_); }
    server_conn(const server_conn&) = delete;
    server_conn& operator=(const server_conn&) = delete;

    static net::awaitable<void> run(std::shared_ptr<server_conn> self);

    // Graceful (last id: the last stream processed, as nghttpx on SIGQUIT), or above `last_id` refused.
    void goaway(std::optional<std::int32_t> last_id) {
        nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                              last_id.value_or(nghttp2_session_get_last_proc_stream_id(session_)), NGHTTP2_NO_ERROR,
                              nullptr, 0);
        signal_.cancel();
    }
    void kill() {
        error_code ec;
        raw().close(ec);
        signal_.cancel();
    }

private:
    struct stream_info {
        std::string path;
        std::size_t size = 0;
        std::size_t offset = 0;
    };

    static net::awaitable<void> read_loop(std::shared_ptr<server_conn> self);
    static net::awaitable<void> write_loop(std::shared_ptr<server_conn> self);
    static net::awaitable<void> serve_h1(std::shared_ptr<server_conn> self);
    void respond(std::int32_t id);

    static int on_header(nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* name, std::size_t namelen,
                         const std::uint8_t* value, std::size_t valuelen, std::uint8_t, void* user);
    static int on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* user);
    static int on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t, void* user);
    static ssize_t read_body(nghttp2_session*, std::int32_t id, std::uint8_t* buf, std::size_t length,
                             std::uint32_t* flags, nghttp2_data_source*, void* user);

    tcp::socket& raw() {
        if (auto* t = std::get_if<tls_socket>(&socket_)) {
            return t->next_layer();
        }
        return std::get<tcp::socket>(socket_);
    }

    test_server& srv_;
    socket_type socket_;
    nghttp2_session* session_ = nullptr;
    net::steady_timer signal_;
    std::map<std::int32_t, stream_info> streams_;
    bool closed_ = false;
};

class test_server {
public:
    test_server(net::io_context& ioc, server_options o)
        : opt_(o),
          ioc_(ioc),
          tls_(net::ssl::context::tls_server),
          acceptor_(ioc, {net::ip::make_address("127.0.0.1"), 0}) {
        tls_.use_certificate_chain_file(cert().cert);
        tls_.use_private_key_file(cert().key, net::ssl::context::pem);
        SSL_CTX_set_alpn_select_cb(tls_.native_handle(), &select_alpn, this);
        net::co_spawn(ioc_, accept_loop(this), [](std::exception_ptr) {});
    }
    ~test_server() { stop(); }
    test_server(const test_server&) = delete;
    test_server& operator=(const test_server&) = delete;

    [[nodiscard]] std::uint16_t port() const { return port_; }
    void stop() {
        error_code ec;
        acceptor_.close(ec);
        kill_all();
    }
    void kill_all() {
        for (auto& w : conns_) {
            if (auto c = w.lock()) {
                c->kill();
            }
        }
    }
    void goaway_all(std::optional<std::int32_t> last_id = std::nullopt) {
        for (auto& w : conns_) {
            if (auto c = w.lock()) {
                c->goaway(last_id);
            }
        }
    }

    server_options opt_;
    int accepted = 0;
    int pings = 0;
    int goaways_received = 0;
    int resets_received = 0;
    int requests = 0;

private:
    static int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                           unsigned inlen, void* arg) {
        static constexpr unsigned char both[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
        static constexpr unsigned char h1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
        const auto* self = static_cast<test_server*>(arg);
        unsigned char* chosen = nullptr;
        const int r = self->opt_.h2 ? SSL_select_next_proto(&chosen, outlen, both, sizeof both, in, inlen)
                                    : SSL_select_next_proto(&chosen, outlen, h1, sizeof h1, in, inlen);
        if (r != OPENSSL_NPN_NEGOTIATED) {
            return SSL_TLSEXT_ERR_NOACK;
        }
        *out = chosen;
        return SSL_TLSEXT_ERR_OK;
    }

    static net::awaitable<void> accept_loop(test_server* self) {
        self->port_ = self->acceptor_.local_endpoint().port();
        for (;;) {
            auto [ec, s] = co_await self->acceptor_.async_accept(use_nothrow);
            if (ec) {
                co_return;
            }
            ++self->accepted;
            auto c = self->opt_.tls
                         ? std::make_shared<server_conn>(
                               *self, server_conn::socket_type(std::in_place_index<0>, std::move(s), self->tls_))
                         : std::make_shared<server_conn>(
                               *self, server_conn::socket_type(std::in_place_index<1>, std::move(s)));
            self->conns_.push_back(c);
            net::co_spawn(self->ioc_, server_conn::run(c), [](std::exception_ptr) {});
        }
    }

    net::io_context& ioc_;
    net::ssl::context tls_;
    tcp::acceptor acceptor_;
    std::uint16_t port_ = acceptor_.local_endpoint().port();
    std::vector<std::weak_ptr<server_conn>> conns_;
};

server_conn::server_conn(test_server& srv, socket_type s)
    : srv_(srv), socket_(std::move(s)), signal_(raw().get_executor(), clock_type::time_point::max()) {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &on_stream_close);
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    if (!srv.opt_.ping_ack) {
        nghttp2_option_set_no_auto_ping_ack(opt, 1);
    }
    nghttp2_session_server_new2(&session_, cbs, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    const nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv.opt_.max_concurrent}};
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, 1);
}

net::awaitable<void> server_conn::run(std::shared_ptr<server_conn> self) {
    if (auto* tls = std::get_if<tls_socket>(&self->socket_)) {
        auto [ec] = co_await tls->async_handshake(net::ssl::stream_base::server, use_nothrow);
        if (ec) {
            co_return;
        }
        const unsigned char* alpn = nullptr;
        unsigned alpn_len = 0;
        SSL_get0_alpn_selected(tls->native_handle(), &alpn, &alpn_len);
        if (alpn_len != 2) {
            co_await serve_h1(self);
            co_return;
        }
    }
    if (!self->srv_.opt_.tls && !self->srv_.opt_.h2) {
        co_await serve_h1(self);  // a plain HTTP/1.1 backend (behind nghttpx)
        co_return;
    }
    net::co_spawn(self->raw().get_executor(), write_loop(self), [](std::exception_ptr) {});
    co_await read_loop(self);
}

net::awaitable<void> server_conn::serve_h1(std::shared_ptr<server_conn> self) {
    beast::flat_buffer buf;
    for (;;) {
        http::request<http::empty_body> req;
        auto [ec, n] = co_await std::visit([&](auto& sock) { return http::async_read(sock, buf, req, use_nothrow); },
                                           self->socket_);
        if (ec) {
            co_return;
        }
        ++self->srv_.requests;
        http::response<http::string_body> res{http::status::ok, 11};
        const std::string target(req.target());
        if (target.rfind("/size/", 0) == 0) {
            const auto size = std::stoul(target.substr(6));
            res.body().resize(size);
            for (std::size_t i = 0; i < size; ++i) {
                res.body()[i] = body_byte(i);
            }
        } else {
            res.body() = "h1 ok";
        }
        res.prepare_payload();
        auto [wec, wn] =
            co_await std::visit([&](auto& sock) { return http::async_write(sock, res, use_nothrow); }, self->socket_);
        if (wec) {
            co_return;
        }
    }
}

net::awaitable<void> server_conn::read_loop(std::shared_ptr<server_conn> self) {
    std::vector<std::uint8_t> buf(16 * 1024);
    for (;;) {
        const auto b = net::buffer(buf);
        auto [ec, n] =
            co_await std::visit([&](auto& sock) { return sock.async_read_some(b, use_nothrow); }, self->socket_);
        if (ec || nghttp2_session_mem_recv(self->session_, buf.data(), n) < 0) {
            self->closed_ = true;
            self->kill();
            co_return;
        }
        self->signal_.cancel();
    }
}

net::awaitable<void> server_conn::write_loop(std::shared_ptr<server_conn> self) {
    std::vector<std::uint8_t> out;
    for (;;) {
        out.clear();
        for (;;) {
            const std::uint8_t* data = nullptr;
            const auto n = nghttp2_session_mem_send(self->session_, &data);
            if (n <= 0) {
                break;
            }
            out.insert(out.end(), data, data + n);
        }
        if (!out.empty()) {
            const auto b = net::buffer(out);
            auto [ec, n] =
                co_await std::visit([&](auto& sock) { return net::async_write(sock, b, use_nothrow); }, self->socket_);
            if (ec) {
                co_return;
            }
            continue;
        }
        if (self->closed_ ||
            (nghttp2_session_want_read(self->session_) == 0 && nghttp2_session_want_write(self->session_) == 0)) {
            self->kill();
            co_return;
        }
        self->signal_.expires_at(clock_type::time_point::max());
        co_await self->signal_.async_wait(use_nothrow);
    }
}

int server_conn::on_header(nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* name, std::size_t namelen,
                           const std::uint8_t* value, std::size_t valuelen, std::uint8_t, void* user) {
    auto* self = static_cast<server_conn*>(user);
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    if (f->hd.type == NGHTTP2_HEADERS && n == ":path") {
        self->streams_[f->hd.stream_id].path.assign(reinterpret_cast<const char*>(value), valuelen);
    }
    return 0;
}

int server_conn::on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* user) {
    auto* self = static_cast<server_conn*>(user);
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
        ++self->srv_.pings;
    }
    if (f->hd.type == NGHTTP2_GOAWAY) {
        ++self->srv_.goaways_received;
    }
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        ++self->srv_.resets_received;
    }
    if (f->hd.type == NGHTTP2_HEADERS && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        ++self->srv_.requests;
        self->respond(f->hd.stream_id);
    }
    return 0;
}

int server_conn::on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t, void* user) {
    static_cast<server_conn*>(user)->streams_.erase(id);
    return 0;
}

ssize_t server_conn::read_body(nghttp2_session*, std::int32_t id, std::uint8_t* buf, std::size_t length,
                               std::uint32_t* flags, nghttp2_data_source*, void* user) {
    auto* self = static_cast<server_conn*>(user);
    auto& s = self->streams_[id];
    const auto n = std::min(length, s.size - s.offset);
    for (std::size_t i = 0; i < n; ++i) {
        buf[i] = static_cast<std::uint8_t>(body_byte(s.offset + i));
    }
    s.offset += n;
    if (s.offset == s.size) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return static_cast<ssize_t>(n);
}

void server_conn::respond(std::int32_t id) {
    auto& s = streams_[id];
    if (s.path == "/hang") {
        return;
    }
    if (s.path == "/refuse" || s.path == "/reset") {
        nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id,
                                  s.path == "/refuse" ? NGHTTP2_REFUSED_STREAM : NGHTTP2_INTERNAL_ERROR);
        signal_.cancel();
        return;
    }
    if (s.path.rfind("/size/", 0) == 0) {
        s.size = std::stoul(s.path.substr(6));
    }
    const std::string length = std::to_string(s.size);
    nghttp2_nv nv[] = {
        {const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(":status")),
         const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>("200")), 7, 3, NGHTTP2_NV_FLAG_NONE},
        {const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>("content-length")),
         const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(length.data())), 14, length.size(),
         NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider body{};
    body.read_callback = &read_body;
    nghttp2_submit_response(session_, id, nv, 2, &body);
    signal_.cancel();
}

// ---- nghttpx (Debian nghttp2-proxy): the real HTTP/2 front end registries sit behind ------------------------------

std::string nghttpx_binary() {
    for (const char* p : {"/usr/sbin/nghttpx", "/usr/local/sbin/nghttpx", "/usr/bin/nghttpx"}) {
        if (access(p, X_OK) == 0) {
            return p;
        }
    }
    return {};
}

std::uint16_t free_port() {
    net::io_context io;
    tcp::acceptor a(io, {net::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
}

bool accepts(std::uint16_t port) {
    net::io_context io;
    tcp::socket sock(io);
    error_code ec;
    sock.connect({net::ip::make_address("127.0.0.1"), port}, ec);
    return !ec;
}

// nghttpx on a free loopback port (it refuses port 0; a port taken meanwhile makes it exit and we try another),
// TLS with the test certificate, ALPN h2 and http/1.1, in front of a plain HTTP/1.1 backend.
class nghttpx_process {
public:
    nghttpx_process(std::uint16_t backend_port, const std::vector<std::string>& extra) {
        const auto bin = nghttpx_binary();
        if (bin.empty()) {
            return;
        }
        const std::string conf = cert().dir + "/nghttpx.conf";
        std::ofstream(conf) << "# empty: every option is on the command line\n";
        for (int attempt = 0; attempt < 5 && pid_ < 0; ++attempt) {
            const auto port = free_port();
            std::vector<std::string> args{bin,
                                          "--conf=" + conf,
                                          "--frontend=127.0.0.1," + std::to_string(port),
                                          "--backend=127.0.0.1," + std::to_string(backend_port) + ";/",
                                          "--workers=1",
                                          "--no-ocsp",
                                          "--no-via",
                                          "--no-server-rewrite",
                                          "--errorlog-file=" + cert().dir + "/nghttpx.log",
                                          "--accesslog-file=/dev/null"};
            args.insert(args.end(), extra.begin(), extra.end());
            args.push_back(cert().key);
            args.push_back(cert().cert);
            std::vector<char*> argv;
            for (auto& a : args) {
                argv.push_back(a.data());
            }
            argv.push_back(nullptr);
            pid_t pid = -1;
            posix_spawn_file_actions_t io{};
            posix_spawn_file_actions_init(&io);
            const std::string out = cert().dir + "/nghttpx.out";
            posix_spawn_file_actions_addopen(&io, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
            posix_spawn_file_actions_adddup2(&io, 1, 2);
            const int spawned = posix_spawn(&pid, bin.c_str(), &io, nullptr, argv.data(), environ);
            posix_spawn_file_actions_destroy(&io);
            if (spawned != 0) {
                return;
            }
            const auto until = clock_type::now() + 10s;
            while (clock_type::now() < until) {
                int status = 0;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                    pid = -1;  // exited (port taken?): another port
                    break;
                }
                if (accepts(port)) {
                    pid_ = pid;
                    port_ = port;
                    break;
                }
                usleep(20 * 1000);
            }
            if (pid_ < 0 && pid > 0) {
                kill(pid, SIGKILL);
                waitpid(pid, nullptr, 0);
            }
        }
        if (pid_ > 0) {
            std::ifstream children("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children");
            for (pid_t c = 0; children >> c;) {
                workers_.push_back(c);
            }
        }
    }
    ~nghttpx_process() { stop(); }
    nghttpx_process(const nghttpx_process&) = delete;
    nghttpx_process& operator=(const nghttpx_process&) = delete;

    [[nodiscard]] bool running() const { return pid_ > 0; }
    [[nodiscard]] std::uint16_t port() const { return port_; }

    /// Graceful shutdown (GOAWAY to clients, streams in flight finish), without waiting.
    void quit() const {
        if (pid_ > 0) {
            kill(pid_, SIGQUIT);
        }
    }
    void stop() {
        if (pid_ <= 0) {
            return;
        }
        kill(pid_, SIGQUIT);
        const auto until = clock_type::now() + 5s;
        while (waitpid(pid_, nullptr, WNOHANG) == 0) {
            if (clock_type::now() >= until) {
                kill(pid_, SIGKILL);
                waitpid(pid_, nullptr, 0);
                break;
            }
            usleep(10 * 1000);
        }
        for (const auto w : workers_) {  // only if the master died without reaping its worker
            kill(w, SIGKILL);
        }
        pid_ = -1;
    }

private:
    pid_t pid_ = -1;
    std::uint16_t port_ = 0;
    std::vector<pid_t> workers_;
};

// ---- the client side ------------------------------------------------------------------------------------------------

upstream_endpoint endpoint_for(std::uint16_t port, acp::config::http2_mode mode, bool tls_on = true) {
    static const auto tls = make_client_tls_context(cert().cert, false);
    http_url url{tls_on ? "https" : "http", "127.0.0.1", port, "/"};
    auto ep = make_endpoint(url, "", tls_on ? tls : nullptr, true);
    ep.http2 = mode;
    return ep;
}

struct get_request {
    explicit get_request(std::string p) : path(std::move(p)) {}
    std::string path;
    std::vector<h2_field> fields{{"authorization", "Bearer secret-token"}, {"accept", "*/*"}};
    [[nodiscard]] h2_request req() const { return h2_request{"GET", "https", "127.0.0.1", path, fields}; }
};

// Runs `body` on a fresh io_context beside the server; afterwards everything is closed so run() returns.
struct fixture {
    explicit fixture(server_options o = {}) : server(ioc, o), pool(ioc.get_executor()) {}
    ~fixture() { pool.close_all(); }
    fixture(const fixture&) = delete;
    fixture& operator=(const fixture&) = delete;

    void run(const std::function<net::awaitable<void>()>& body) {
        std::exception_ptr failed;
        bool done = false;
        net::co_spawn(ioc, body(), [&](std::exception_ptr e) {
            failed = e;
            done = true;
            pool.close_all();
            server.stop();
        });
        ioc.run_for(20s);
        REQUIRE(done);
        if (failed) {
            std::rethrow_exception(failed);
        }
    }

    // Polls `pred` every 10 ms until true or 5 s pass.
    template <class Pred>
    net::awaitable<bool> eventually(Pred pred) {
        const auto until = clock_type::now() + 5s;
        net::steady_timer t(ioc);
        while (!pred()) {
            if (clock_type::now() >= until) {
                co_return false;
            }
            t.expires_after(10ms);
            co_await t.async_wait(use_nothrow);
        }
        co_return true;
    }

    net::io_context ioc;
    metrics stats;
    test_server server;
    h2_upstream_pool pool;
};

h2_upstream_stream* stream_of(h2_open_result& r) {
    if (auto* f = std::get_if<failure>(&r)) {
        FAIL("open failed: " << f->detail);
    }
    auto* s = std::get_if<h2_upstream_stream>(&r);
    REQUIRE(s != nullptr);
    return s;
}

// Reads the whole body, consuming as it goes; the count of bytes and whether they match the pattern.
net::awaitable<std::pair<std::size_t, bool>> drain(h2_upstream_stream& s) {
    std::size_t total = 0;
    bool pattern = true;
    for (;;) {
        auto chunk = co_await s.read_some(5s);
        if (!chunk) {
            FAIL("read_some failed: " << chunk.error().detail);
        }
        if (chunk->empty()) {
            co_return std::pair{total, pattern};
        }
        for (std::size_t i = 0; i < chunk->size(); ++i) {
            pattern = pattern && static_cast<char>((*chunk)[i]) == body_byte(total + i);
        }
        total += chunk->size();
        s.consumed(chunk->size());
    }
}

}  // namespace

TEST_CASE("h2 upstream: ALPN picks h2 and 64 concurrent GETs on a cold key share ONE connection", "[h2_upstream]") {
    fixture f;
    const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
    REQUIRE(f.pool.wants_h2(ep));
    int ok = 0;
    f.run([&]() -> net::awaitable<void> {
        auto one = [&](int i) -> net::awaitable<void> {
            const get_request g("/size/" + std::to_string(1000 + i));
            const auto req = g.req();
            auto r = co_await f.pool.open(ep, req, 5s, f.stats);
            auto* s = stream_of(r);
            auto head = co_await s->read_head(5s);
            REQUIRE(head.has_value());
            CHECK(head->status == 200);
            auto [n, pattern] = co_await drain(*s);
            CHECK(n == static_cast<std::size_t>(1000 + i));
            CHECK(pattern);
            ++ok;
        };
        int finished = 0;
        for (int i = 0; i < 64; ++i) {
            net::co_spawn(f.ioc, one(i), [&](std::exception_ptr) { ++finished; });
        }
        const auto got1 = co_await f.eventually([&] { return finished == 64; });
        CHECK(got1);
    });
    CHECK(ok == 64);
    CHECK(f.server.accepted == 1);
    CHECK(f.stats.upstream_connections_new() == 1);
    CHECK(f.stats.upstream_connections_reused() == 63);
    CHECK(f.stats.upstream_tls_handshakes() == 1);
    CHECK(f.stats.render().find("acp_upstream_tls_handshakes_total 1\n") != std::string::npos);
}

TEST_CASE("h2 upstream: the peer's MAX_CONCURRENT_STREAMS=1 makes a second connection", "[h2_upstream]") {
    fixture f(server_options{.h2 = true, .max_concurrent = 1, .ping_ack = true});
    const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
    f.run([&]() -> net::awaitable<void> {
        const get_request g("/size/1000000");  // more than a window: the streams stay open
        const auto req = g.req();
        auto r1 = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s1 = stream_of(r1);
        auto h1 = co_await s1->read_head(5s);  // the server's SETTINGS arrived before its answer
        REQUIRE(h1.has_value());
        CHECK(f.pool.connection_count() == 1);
        auto r2 = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s2 = stream_of(r2);
        auto h2 = co_await s2->read_head(5s);
        REQUIRE(h2.has_value());
        CHECK(f.server.accepted == 2);
        CHECK(f.pool.connection_count() == 2);
        CHECK(f.stats.upstream_h2_connections() == 2);
        s1->reset();  // its connection can take a stream again once the RST_STREAM left
        const auto rst_sent = co_await f.eventually([&] { return f.server.resets_received == 1; });
        REQUIRE(rst_sent);
        auto r3 = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s3 = stream_of(r3);
        const auto head3 = co_await s3->read_head(5s);
        CHECK(head3.has_value());
        CHECK(f.server.accepted == 2);
    });
    CHECK(f.stats.upstream_h2_connections() == 0);  // close_all closed both
}

TEST_CASE("h2 upstream: automatic against an HTTP/1.1-only server falls back and remembers", "[h2_upstream]") {
    fixture f(server_options{.h2 = false});
    const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
    f.run([&]() -> net::awaitable<void> {
        const get_request g("/size/10");
        const auto req = g.req();
        h2_open_result a;
        h2_open_result b;
        int finished = 0;
        // Two opens at once on a cold key: one connect; the other is told to use HTTP/1.1.
        auto open_into = [&](h2_open_result& out) -> net::awaitable<void> {
            out = co_await f.pool.open(ep, req, 5s, f.stats);
            ++finished;
        };
        net::co_spawn(f.ioc, open_into(a), [](std::exception_ptr) {});
        net::co_spawn(f.ioc, open_into(b), [](std::exception_ptr) {});
        const auto got2 = co_await f.eventually([&] { return finished == 2; });
        REQUIRE(got2);
        CHECK(f.server.accepted == 1);
        auto* conn = std::get_if<std::unique_ptr<upstream_connection>>(&a);
        auto* told = std::get_if<h2_use_h1>(&b);
        if (conn == nullptr) {
            conn = std::get_if<std::unique_ptr<upstream_connection>>(&b);
            told = std::get_if<h2_use_h1>(&a);
        }
        REQUIRE(conn != nullptr);
        REQUIRE(told != nullptr);
        CHECK_FALSE((*conn)->negotiated_h2());
        // The fresh HTTP/1.1 connection works as upstream_pool's do.
        http::request<http::empty_body> h1req{http::verb::get, "/x", 11};
        h1req.set(http::field::host, "127.0.0.1");
        auto [wec, wn] = co_await (*conn)->write(h1req);
        REQUIRE_FALSE(wec);
        http::response_parser<http::buffer_body> p;
        auto [rec, rn] = co_await (*conn)->read_header(p);
        REQUIRE_FALSE(rec);
        CHECK(p.get().result_int() == 200);
        CHECK_FALSE(f.pool.wants_h2(ep));  // the memo
        auto again = co_await f.pool.open(ep, req, 5s, f.stats);
        CHECK(std::holds_alternative<h2_use_h1>(again));
        f.pool.clear();
        CHECK(f.pool.wants_h2(ep));  // clear() forgets it
    });
}

TEST_CASE("h2 upstream: http2 on against an HTTP/1.1-only server fails with the reason", "[h2_upstream]") {
    fixture f(server_options{.h2 = false});
    const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::on);
    f.run([&]() -> net::awaitable<void> {
        const get_request g("/size/10");
        const auto req = g.req();
        auto r = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* fail = std::get_if<failure>(&r);
        REQUIRE(fail != nullptr);
        CHECK(fail->code == errc::upstream_protocol);
        CHECK(fail->detail == "127.0.0.1 did not negotiate HTTP/2 (http2: on)");
        CHECK(fail->detail.find("secret") == std::string::npos);
    });
}

TEST_CASE("h2 upstream: a graceful GOAWAY lets the stream in flight finish; the next open makes a new connection",
          "[h2_upstream]") {
    fixture f;
    const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
    f.run([&]() -> net::awaitable<void> {
        const get_request g("/size/1000000");
        const auto req = g.req();
        auto r = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s = stream_of(r);
        const auto got3 = co_await s->read_head(5s);
        REQUIRE(got3.has_value());
        f.server.goaway_all();
        auto [n, pattern] = co_await drain(*s);
        CHECK(n == 1000000);
        CHECK(pattern);
        auto r2 = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s2 = stream_of(r2);
        const auto got4 = co_await s2->read_head(5s);
        REQUIRE(got4.has_value());
        CHECK(f.server.accepted == 2);
        s->reset();
        // The old connection closes itself once its last stream is released.
        const auto got5 = co_await f.eventually([&] { return f.stats.upstream_h2_connections() == 1; });
        CHECK(got5);
    });
}

TEST_CASE("h2 upstream: a stalled consumer holds at most the stream window", "[h2_upstream]") {
    fixture f;
    const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
    const std::size_t size = 4 * 1024 * 1024;
    const std::size_t window = h2_settings{}.stream_window;
    f.run([&]() -> net::awaitable<void> {
        const get_request g("/size/" + std::to_string(size));
        const auto req = g.req();
        auto r = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s = stream_of(r);
        const auto got6 = co_await s->read_head(5s);
        REQUIRE(got6.has_value());
        // Read without consuming until nothing more comes.
        std::size_t seen = 0;
        for (;;) {
            auto chunk = co_await s->read_some(300ms);
            if (!chunk) {
                CHECK(chunk.error().code == errc::upstream_timeout);
                break;
            }
            REQUIRE_FALSE(chunk->empty());
            seen += chunk->size();
            REQUIRE(seen <= window);
        }
        CHECK(seen > 0);
        CHECK(seen <= window);
        CHECK(s->unconsumed_bytes() <= window);
        s->consumed(seen);  // credit back: the rest flows
        auto [n, pattern] = co_await drain(*s);
        CHECK(seen + n == size);
    });
}

TEST_CASE("h2 upstream: cancel mid-body ends a pending read at once; the connection stays usable", "[h2_upstream]") {
    fixture f;
    const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
    f.run([&]() -> net::awaitable<void> {
        const get_request g("/size/4000000");
        const auto req = g.req();
        auto r = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s = stream_of(r);
        const auto got7 = co_await s->read_head(5s);
        REQUIRE(got7.has_value());
        auto first = co_await s->read_some(5s);
        REQUIRE(first.has_value());
        // Nothing consumed: the window closes and the next read waits; cancel it from the side.
        net::steady_timer later(f.ioc, 100ms);
        later.async_wait([s](const error_code&) { s->cancel(); });
        const auto start = clock_type::now();
        for (;;) {
            auto chunk = co_await s->read_some(10s);
            if (!chunk) {
                CHECK(chunk.error().code == errc::upstream_unreachable);
                break;
            }
        }
        CHECK(clock_type::now() - start < 5s);
        s->reset();  // RST_STREAM CANCEL, credit back
        auto r2 = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s2 = stream_of(r2);
        const auto got8 = co_await s2->read_head(5s);
        REQUIRE(got8.has_value());
        auto [n, pattern] = co_await drain(*s2);
        CHECK(n == 4000000);
        CHECK(f.server.accepted == 1);
    });
}

TEST_CASE("h2 upstream: an idle connection PINGs, and one whose PING goes unanswered is dropped", "[h2_upstream]") {
    SECTION("answered: the connection lives on") {
        fixture f;
        f.pool.set_ping_interval(100ms);
        f.pool.set_ping_timeout(200ms);
        const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
        f.run([&]() -> net::awaitable<void> {
            const get_request g("/size/10");
            const auto req = g.req();
            {
                auto r = co_await f.pool.open(ep, req, 5s, f.stats);
                auto* s = stream_of(r);
                const auto got9 = co_await s->read_head(5s);
                REQUIRE(got9.has_value());
            }
            const auto got10 = co_await f.eventually([&] { return f.server.pings >= 3; });
            CHECK(got10);
            CHECK(f.pool.connection_count() == 1);
        });
    }
    SECTION("unanswered: dead after the PING timeout, the next open connects again") {
        fixture f(server_options{.h2 = true, .max_concurrent = 100, .ping_ack = false});
        f.pool.set_ping_interval(100ms);
        f.pool.set_ping_timeout(200ms);
        const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
        f.run([&]() -> net::awaitable<void> {
            const get_request g("/size/10");
            const auto req = g.req();
            {
                auto r = co_await f.pool.open(ep, req, 5s, f.stats);
                auto* s = stream_of(r);
                const auto got11 = co_await s->read_head(5s);
                REQUIRE(got11.has_value());
            }
            const auto got12 = co_await f.eventually([&] { return f.pool.connection_count() == 0; });
            CHECK(got12);
            CHECK(f.server.pings >= 1);
            CHECK(f.stats.upstream_h2_connections() == 0);
            auto r = co_await f.pool.open(ep, req, 5s, f.stats);
            stream_of(r);
            CHECK(f.server.accepted == 2);
        });
    }
}

TEST_CASE("h2 upstream: a connection idle past the idle age sends GOAWAY and closes", "[h2_upstream]") {
    fixture f;
    f.pool.set_max_idle_age(200ms);
    const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
    f.run([&]() -> net::awaitable<void> {
        const get_request g("/size/10");
        const auto req = g.req();
        {
            auto r = co_await f.pool.open(ep, req, 5s, f.stats);
            auto* s = stream_of(r);
            const auto got13 = co_await s->read_head(5s);
            REQUIRE(got13.has_value());
        }
        const auto got14 = co_await f.eventually([&] { return f.pool.connection_count() == 0; });
        CHECK(got14);
        const auto got15 = co_await f.eventually([&] { return f.server.goaways_received == 1; });
        CHECK(got15);
    });
}

TEST_CASE("h2 upstream: connection loss mid-body fails read_some; a head never sent times out", "[h2_upstream]") {
    fixture f;
    const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
    f.run([&]() -> net::awaitable<void> {
        const get_request big("/size/4000000");
        const auto req = big.req();
        auto r = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s = stream_of(r);
        const auto got16 = co_await s->read_head(5s);
        REQUIRE(got16.has_value());
        auto first = co_await s->read_some(5s);
        REQUIRE(first.has_value());
        s->consumed(first->size());
        f.server.kill_all();
        std::optional<failure> failed;
        for (int i = 0; i < 10000 && !failed; ++i) {
            auto chunk = co_await s->read_some(5s);
            if (!chunk) {
                failed = chunk.error();
            } else {
                REQUIRE_FALSE(chunk->empty());
                s->consumed(chunk->size());
            }
        }
        REQUIRE(failed);
        CHECK(failed->code == errc::upstream_unreachable);
        const auto got17 = co_await f.eventually([&] { return f.pool.connection_count() == 0; });
        CHECK(got17);

        const get_request hang("/hang");
        const auto hreq = hang.req();
        auto r2 = co_await f.pool.open(ep, hreq, 5s, f.stats);
        auto* s2 = stream_of(r2);
        auto head = co_await s2->read_head(200ms);
        REQUIRE_FALSE(head.has_value());
        CHECK(head.error().code == errc::upstream_timeout);
        CHECK_FALSE(s2->retryable());
    });
}

TEST_CASE("h2 upstream: a refused or reset stream fails read_head; only the refused one is retryable",
          "[h2_upstream]") {
    struct row {
        const char* path;
        bool retryable;
    };
    const row rows[] = {{"/refuse", true}, {"/reset", false}};
    for (const auto& r : rows) {
        DYNAMIC_SECTION(r.path) {
            fixture f;
            const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
            f.run([&]() -> net::awaitable<void> {
                const get_request g(r.path);
                const auto req = g.req();
                auto o = co_await f.pool.open(ep, req, 5s, f.stats);
                auto* s = stream_of(o);
                auto head = co_await s->read_head(5s);
                REQUIRE_FALSE(head.has_value());
                CHECK(head.error().code == errc::upstream_unreachable);
                CHECK(s->retryable() == r.retryable);
                CHECK(head.error().detail.find("secret") == std::string::npos);
                CHECK(f.pool.connection_count() == 1);  // a stream's error leaves the connection alone
            });
        }
    }
}

TEST_CASE("h2 upstream: GOAWAY below a waiting stream makes it retryable; the retry opens a new connection",
          "[h2_upstream]") {
    fixture f;
    const auto ep = endpoint_for(f.server.port(), acp::config::http2_mode::automatic);
    f.run([&]() -> net::awaitable<void> {
        const get_request g("/hang");
        const auto req = g.req();
        auto o = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s = stream_of(o);
        const auto seen = co_await f.eventually([&] { return f.server.requests == 1; });
        REQUIRE(seen);
        f.server.goaway_all(0);  // stream 1 lies above the last id: never processed
        auto head = co_await s->read_head(5s);
        REQUIRE_FALSE(head.has_value());
        CHECK(s->retryable());
        const get_request g2("/size/10");
        const auto req2 = g2.req();
        auto o2 = co_await f.pool.open(ep, req2, 5s, f.stats);
        auto* s2 = stream_of(o2);
        auto head2 = co_await s2->read_head(5s);
        CHECK(head2.has_value());
        CHECK(f.server.accepted == 2);
    });
}

TEST_CASE("h2 upstream: http2 on over plain http speaks h2c with prior knowledge; automatic stays HTTP/1.1",
          "[h2_upstream]") {
    fixture f(server_options{.h2 = true, .tls = false});
    const auto on = endpoint_for(f.server.port(), acp::config::http2_mode::on, false);
    const auto automatic = endpoint_for(f.server.port(), acp::config::http2_mode::automatic, false);
    CHECK(f.pool.wants_h2(on));
    CHECK_FALSE(f.pool.wants_h2(automatic));
    f.run([&]() -> net::awaitable<void> {
        const get_request g("/size/70000");
        const auto req = g.req();
        auto o = co_await f.pool.open(on, req, 5s, f.stats);
        auto* s = stream_of(o);
        auto head = co_await s->read_head(5s);
        REQUIRE(head.has_value());
        auto [n, pattern] = co_await drain(*s);
        CHECK(n == 70000);
        CHECK(pattern);
        CHECK(f.stats.upstream_tls_handshakes() == 0);
    });
}

namespace {

// A plain HTTP/1.1 backend (the test server) behind nghttpx.
struct nghttpx_fixture : fixture {
    explicit nghttpx_fixture(std::vector<std::string> extra = {})
        : fixture(server_options{.h2 = false, .tls = false}), front(server.port(), extra) {}
    nghttpx_process front;
};

}  // namespace

TEST_CASE("h2 upstream via nghttpx: 32 concurrent GETs share one connection", "[h2_upstream][nghttpx]") {
    nghttpx_fixture f;
    // scripts/install-deps installs nghttp2-proxy: a missing nghttpx is a failure, never a silent skip.
    INFO("nghttpx (Debian nghttp2-proxy) is not installed or did not start");
    REQUIRE(f.front.running());
    const auto ep = endpoint_for(f.front.port(), acp::config::http2_mode::automatic);
    int ok = 0;
    f.run([&]() -> net::awaitable<void> {
        auto one = [&](int i) -> net::awaitable<void> {
            const get_request g("/size/" + std::to_string(20000 + i));
            const auto req = g.req();
            auto r = co_await f.pool.open(ep, req, 5s, f.stats);
            auto* s = stream_of(r);
            auto head = co_await s->read_head(5s);
            REQUIRE(head.has_value());
            CHECK(head->status == 200);
            auto [n, pattern] = co_await drain(*s);
            CHECK(n == static_cast<std::size_t>(20000 + i));
            CHECK(pattern);
            ++ok;
        };
        int finished = 0;
        for (int i = 0; i < 32; ++i) {
            net::co_spawn(f.ioc, one(i), [&](std::exception_ptr) { ++finished; });
        }
        const auto all = co_await f.eventually([&] { return finished == 32; });
        CHECK(all);
        CHECK(f.pool.connection_count() == 1);
    });
    CHECK(ok == 32);
    CHECK(f.stats.upstream_connections_new() == 1);
    CHECK(f.stats.upstream_connections_reused() == 31);
}

TEST_CASE("h2 upstream via nghttpx: --frontend-http2-max-concurrent-streams=1 makes a second connection",
          "[h2_upstream][nghttpx]") {
    nghttpx_fixture f({"--frontend-http2-max-concurrent-streams=1"});
    // scripts/install-deps installs nghttp2-proxy: a missing nghttpx is a failure, never a silent skip.
    INFO("nghttpx (Debian nghttp2-proxy) is not installed or did not start");
    REQUIRE(f.front.running());
    const auto ep = endpoint_for(f.front.port(), acp::config::http2_mode::automatic);
    f.run([&]() -> net::awaitable<void> {
        const get_request g("/size/2000000");  // more than a window: the stream stays open
        const auto req = g.req();
        auto r1 = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s1 = stream_of(r1);
        auto h1 = co_await s1->read_head(5s);
        REQUIRE(h1.has_value());
        auto r2 = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s2 = stream_of(r2);
        auto h2 = co_await s2->read_head(5s);
        REQUIRE(h2.has_value());
        CHECK(f.pool.connection_count() == 2);
        CHECK(f.stats.upstream_connections_new() == 2);
        auto [n1, p1] = co_await drain(*s1);
        auto [n2, p2] = co_await drain(*s2);
        CHECK(n1 == 2000000);
        CHECK(n2 == 2000000);
    });
}

TEST_CASE("h2 upstream via nghttpx: SIGQUIT (graceful GOAWAY) lets the stream in flight finish",
          "[h2_upstream][nghttpx]") {
    nghttpx_fixture f;
    // scripts/install-deps installs nghttp2-proxy: a missing nghttpx is a failure, never a silent skip.
    INFO("nghttpx (Debian nghttp2-proxy) is not installed or did not start");
    REQUIRE(f.front.running());
    const auto ep = endpoint_for(f.front.port(), acp::config::http2_mode::automatic);
    f.run([&]() -> net::awaitable<void> {
        const get_request g("/size/3000000");
        const auto req = g.req();
        auto r = co_await f.pool.open(ep, req, 5s, f.stats);
        auto* s = stream_of(r);
        auto head = co_await s->read_head(5s);
        REQUIRE(head.has_value());
        f.front.quit();
        auto [n, pattern] = co_await drain(*s);
        CHECK(n == 3000000);
        CHECK(pattern);
        s->reset();
        // The GOAWAY'd connection takes no new stream: the next open connects again (nghttpx is gone: refused).
        const get_request g2("/size/10");
        const auto req2 = g2.req();
        auto again = co_await f.pool.open(ep, req2, 5s, f.stats);
        CHECK(f.stats.upstream_connections_reused() == 0);
        if (auto* fail = std::get_if<failure>(&again)) {
            CHECK(fail->code == errc::upstream_unreachable);
        }
        const auto closed = co_await f.eventually([&] { return f.stats.upstream_h2_connections() <= 1; });
        CHECK(closed);
    });
}
