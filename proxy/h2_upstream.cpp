#include "proxy/h2_upstream.hpp"

#include "config/logging.hpp"
#include "proxy/metrics.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <optional>

namespace acp::proxy {
namespace {

using clock = std::chrono::steady_clock;

constexpr std::size_t read_chunk = 64 * 1024;
constexpr std::size_t write_batch = 64 * 1024;  // output gathered into one write

struct liveness {
    config::duration ping_interval;
    config::duration ping_timeout;
    config::duration max_idle_age;
};

std::string millis(config::duration d) {
    return std::to_string(d.count()) + " ms";
}

}  // namespace

// One HTTP/2 connection: the transport, the codec and the three coroutines
// (reader, writer, liveness keeper), each holding the shared_ptr.
class h2_upstream_connection {
public:
    h2_upstream_connection(const net::any_io_executor& ex, upstream_transport t, const h2_settings& s,
                           const liveness& l, metrics* stats, std::string authority)
        : ex_(ex),
          transport_(std::move(t)),
          codec_(s),
          live_(l),
          stats_(stats),
          authority_(std::move(authority)),
          write_signal_(ex, clock::time_point::max()),
          keeper_(ex),
          idle_since_(clock::now()) {
        if (stats_ != nullptr) {
            stats_->h2_connection_opened();
        }
    }
    ~h2_upstream_connection() { close("connection released"); }
    h2_upstream_connection(const h2_upstream_connection&) = delete;
    h2_upstream_connection& operator=(const h2_upstream_connection&) = delete;

    static void start(const std::shared_ptr<h2_upstream_connection>& self) {
        auto log_escape = [](std::exception_ptr e) {
            if (!e) {
                return;
            }
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                logging::logger("proxy")->error("h2 upstream coroutine failed: {}", ex.what());
            }
        };
        net::co_spawn(self->ex_, read_loop(self), log_escape);
        net::co_spawn(self->ex_, write_loop(self), log_escape);
        net::co_spawn(self->ex_, keep_loop(self), log_escape);
    }

    [[nodiscard]] bool can_submit() const noexcept { return !closed_ && !closing_ && codec_.can_submit(); }
    [[nodiscard]] bool closed() const noexcept { return closed_; }
    [[nodiscard]] const std::string& authority() const noexcept { return authority_; }

    boost::system::result<std::int32_t, failure> submit(const h2_request& r) {
        if (closed_ || closing_) {
            return failure{errc::upstream_unreachable, "HTTP/2 connection to " + authority_ + " is closing"};
        }
        auto id = codec_.submit_request(r);
        if (id) {
            ++streams_;
            kick_writer();
        }
        return id;
    }

    /// Graceful: GOAWAY, the open streams finish, then the connection closes.
    void shutdown() {
        if (closed_ || closing_) {
            return;
        }
        closing_ = true;
        codec_.shutdown();
        kick_writer();
    }

    /// Now: every stream still open gets a reset event (upstream_unreachable) and wakes.
    void close(std::string_view why) noexcept {
        if (closed_) {
            return;
        }
        closed_ = true;
        try {
            std::string detail = "HTTP/2 connection to " + authority_ + " " + std::string(why);
            codec_.connection_lost(detail);
        } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory while closing; the waiters still wake
        }
        error_code ec;
        auto& sock = raw_socket();
        sock.shutdown(tcp::socket::shutdown_both, ec);
        sock.close(ec);
        write_signal_.cancel();
        keeper_.cancel();
        for (auto& [id, timer] : waiters_) {
            timer->cancel();
        }
        if (stats_ != nullptr) {
            stats_->h2_connection_closed();
            stats_ = nullptr;
        }
    }

    // ---- the stream side ----------------------------------------------------------------------------------------

    std::optional<h2_event> next_event(std::int32_t id) { return codec_.next_event(id); }
    void wait_on(std::int32_t id, net::steady_timer* t) { waiters_[id] = t; }
    void stop_waiting(std::int32_t id) { waiters_.erase(id); }
    void wake(std::int32_t id) {
        if (auto it = waiters_.find(id); it != waiters_.end()) {
            it->second->cancel();
        }
    }
    void consume(std::int32_t id, std::size_t n) {
        if (closed_) {
            return;
        }
        codec_.consume(id, n);
        kick_writer();
    }
    void release(std::int32_t id) {
        waiters_.erase(id);
        codec_.cancel(id);
        if (streams_ > 0 && --streams_ == 0) {
            idle_since_ = clock::now();
        }
        kick_writer();
    }
    [[nodiscard]] std::size_t unconsumed(std::int32_t id) const noexcept { return codec_.unconsumed_bytes(id); }

    net::any_io_executor ex_;

private:
    tcp::socket& raw_socket() noexcept {
        if (auto* p = std::get_if<0>(&transport_.stream)) {
            return *p;
        }
        return std::get<1>(transport_.stream).next_layer();
    }

    void kick_writer() { write_signal_.cancel(); }

    void wake_ready() {
        for (const auto id : codec_.take_ready_streams()) {
            wake(id);
        }
    }

    static net::awaitable<void> read_loop(std::shared_ptr<h2_upstream_connection> self) {
        std::vector<std::uint8_t> buf(read_chunk);
        for (;;) {
            const auto b = net::buffer(buf);
            auto [ec, n] = co_await std::visit([&](auto& s) { return s.async_read_some(b, use_nothrow); },
                                               self->transport_.stream);
            if (self->closed_) {
                co_return;
            }
            if (ec) {
                const std::string why = ec == net::error::eof ? "closed by the peer" : "lost: " + ec.message();
                self->close(why);
                co_return;
            }
            auto r = self->codec_.receive({buf.data(), n});
            self->wake_ready();
            self->kick_writer();  // SETTINGS/PING ACKs, WINDOW_UPDATEs, or finished()
            if (!r) {
                logging::logger("proxy")->warn("HTTP/2 upstream {}: {}", self->authority_, r.error().detail);
                self->closing_ = true;  // the writer flushes the GOAWAY the codec queued, then closes
                co_return;
            }
        }
    }

    static net::awaitable<void> write_loop(std::shared_ptr<h2_upstream_connection> self) {
        std::vector<std::uint8_t> out;
        out.reserve(write_batch);
        for (;;) {
            if (self->closed_) {
                co_return;
            }
            // Copied out: next_output()'s span dies with the reader's next receive() during the write.
            out.clear();
            while (out.size() < write_batch && self->codec_.wants_write()) {
                const auto s = self->codec_.next_output();
                if (s.empty()) {
                    break;
                }
                out.insert(out.end(), s.begin(), s.end());
                self->codec_.consumed_output(s.size());
            }
            if (!out.empty()) {
                const auto b = net::buffer(out);
                auto [ec, n] = co_await std::visit([&](auto& s) { return net::async_write(s, b, use_nothrow); },
                                                   self->transport_.stream);
                if (ec && !self->closed_) {
                    self->close("lost on write: " + ec.message());
                }
                continue;
            }
            const bool no_streams = self->streams_ == 0;
            if (self->codec_.finished() || ((self->closing_ || self->codec_.goaway_received()) && no_streams) ||
                (self->closing_ && !self->codec_.wants_read())) {
                self->close("closed");
                co_return;
            }
            self->write_signal_.expires_at(clock::time_point::max());
            co_await self->write_signal_.async_wait(use_nothrow);
        }
    }

    // PING on idle, GOAWAY after max_idle_age idle.
    static net::awaitable<void> keep_loop(std::shared_ptr<h2_upstream_connection> self) {
        const auto shortest = std::min({self->live_.ping_interval, self->live_.ping_timeout, self->live_.max_idle_age});
        const auto tick =
            std::clamp<config::duration>(shortest / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
        std::uint64_t ping_seq = 0;
        clock::time_point ping_sent{};
        for (;;) {
            self->keeper_.expires_after(tick);
            co_await self->keeper_.async_wait(use_nothrow);
            if (self->closed_) {
                co_return;
            }
            const auto now = clock::now();
            if (ping_seq > self->codec_.ping_acked()) {
                if (now - ping_sent >= self->live_.ping_timeout) {
                    self->close("dead: no PING ACK within " + millis(self->live_.ping_timeout));
                    co_return;
                }
                continue;
            }
            if (self->closing_ || self->streams_ > 0) {
                continue;
            }
            if (now - self->idle_since_ >= self->live_.max_idle_age) {
                self->shutdown();  // GOAWAY, then the writer closes
                co_return;
            }
            const auto since = std::max(self->idle_since_, ping_sent);
            if (now - since >= self->live_.ping_interval) {
                ping_seq = self->codec_.submit_ping();
                ping_sent = now;
                self->kick_writer();
            }
        }
    }

    upstream_transport transport_;
    h2_client_codec codec_;
    liveness live_;
    metrics* stats_;
    std::string authority_;
    net::steady_timer write_signal_;  // never expires: cancel() wakes the writer
    net::steady_timer keeper_;
    std::unordered_map<std::int32_t, net::steady_timer*> waiters_;  // a stream's pending read
    std::size_t streams_ = 0;                                       // live stream handles
    clock::time_point idle_since_;
    bool closing_ = false;
    bool closed_ = false;
};

// ---- h2_upstream_stream ---------------------------------------------------------------------------------------------

h2_upstream_stream::h2_upstream_stream(std::shared_ptr<h2_upstream_connection> c, std::int32_t id)
    : conn_(std::move(c)), id_(id) {}

h2_upstream_stream::~h2_upstream_stream() {
    reset();
}

h2_upstream_stream::h2_upstream_stream(h2_upstream_stream&& o) noexcept
    : conn_(std::move(o.conn_)),
      id_(o.id_),
      chunk_(std::move(o.chunk_)),
      failed_(std::move(o.failed_)),
      retryable_(o.retryable_),
      done_(o.done_),
      cancelled_(o.cancelled_) {
    o.conn_ = nullptr;
}

h2_upstream_stream& h2_upstream_stream::operator=(h2_upstream_stream&& o) noexcept {
    if (this != &o) {
        reset();
        conn_ = std::move(o.conn_);
        o.conn_ = nullptr;
        id_ = o.id_;
        chunk_ = std::move(o.chunk_);
        failed_ = std::move(o.failed_);
        retryable_ = o.retryable_;
        done_ = o.done_;
        cancelled_ = o.cancelled_;
    }
    return *this;
}

void h2_upstream_stream::reset() noexcept {
    if (!conn_) {
        return;
    }
    try {
        conn_->release(id_);
    } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory queueing RST_STREAM; the connection goes on
    }
    conn_ = nullptr;
}

void h2_upstream_stream::cancel() noexcept {
    cancelled_ = true;
    if (conn_) {
        conn_->wake(id_);
    }
}

void h2_upstream_stream::consumed(std::size_t n) {
    if (conn_ && n > 0) {
        conn_->consume(id_, n);
    }
}

std::size_t h2_upstream_stream::unconsumed_bytes() const noexcept {
    return conn_ ? conn_->unconsumed(id_) : 0;
}

net::awaitable<boost::system::result<h2_event, failure>> h2_upstream_stream::next_event(config::duration timeout,
                                                                                        const char* what) {
    if (!conn_) {
        co_return failure{errc::upstream_unreachable, "HTTP/2 stream already released"};
    }
    const auto deadline = clock::now() + timeout;
    net::steady_timer timer(conn_->ex_);
    for (;;) {
        if (cancelled_) {
            co_return failure{errc::upstream_unreachable, "request to " + conn_->authority() + " cancelled"};
        }
        if (auto ev = conn_->next_event(id_)) {
            co_return std::move(*ev);
        }
        if (conn_->closed()) {
            co_return failure{errc::upstream_unreachable, "HTTP/2 connection to " + conn_->authority() + " closed"};
        }
        if (clock::now() >= deadline) {
            co_return failure{errc::upstream_timeout,
                              std::string("no ") + what + " from " + conn_->authority() + " within " + millis(timeout)};
        }
        timer.expires_at(deadline);
        conn_->wait_on(id_, &timer);
        co_await timer.async_wait(use_nothrow);
        conn_->stop_waiting(id_);
    }
}

net::awaitable<boost::system::result<h2_response_head, failure>> h2_upstream_stream::read_head(
    config::duration timeout) {
    auto ev = co_await next_event(timeout, "response head");
    if (!ev) {
        co_return ev.error();
    }
    switch (ev->type) {
        case h2_event::kind::headers:
            co_return std::move(ev->head);
        case h2_event::kind::reset:
            retryable_ = ev->retryable;
            failed_ = ev->error;
            co_return std::move(ev->error);
        default:
            failed_ = failure{errc::upstream_protocol, "HTTP/2 response without a head"};
            co_return *failed_;
    }
}

// What else the connection already queued for this stream joins the chunk (up
// to max_coalesced bytes): one downstream write and one wake-up for several
// DATA frames instead of one per frame. An end or a reset right behind the
// data is kept for the next read_some.
void h2_upstream_stream::coalesce_queued() {
    constexpr std::size_t max_coalesced = 256 * 1024;
    while (chunk_.size() < max_coalesced) {
        auto ev = conn_->next_event(id_);
        if (!ev) {
            return;
        }
        switch (ev->type) {
            case h2_event::kind::data:
                chunk_.append(ev->data);
                break;
            case h2_event::kind::end:
                done_ = true;
                return;
            case h2_event::kind::reset:
                failed_ = ev->error;
                return;
            default:
                failed_ = failure{errc::upstream_protocol, "HTTP/2 response head twice"};
                return;
        }
    }
}

net::awaitable<boost::system::result<std::span<const std::uint8_t>, failure>> h2_upstream_stream::read_some(
    config::duration idle) {
    chunk_.clear();
    for (;;) {
        if (failed_) {
            co_return *failed_;
        }
        if (done_) {
            co_return std::span<const std::uint8_t>{};
        }
        auto ev = co_await next_event(idle, "response body bytes");
        if (!ev) {
            co_return ev.error();
        }
        switch (ev->type) {
            case h2_event::kind::data:
                if (ev->data.empty()) {
                    continue;
                }
                chunk_ = std::move(ev->data);
                coalesce_queued();
                co_return std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(chunk_.data()),
                                                        chunk_.size());
            case h2_event::kind::end:
                done_ = true;
                co_return std::span<const std::uint8_t>{};
            case h2_event::kind::reset:
                failed_ = ev->error;
                co_return std::move(ev->error);
            default:
                failed_ = failure{errc::upstream_protocol, "HTTP/2 response head twice"};
                co_return *failed_;
        }
    }
}

// ---- h2_upstream_pool -----------------------------------------------------------------------------------------------

struct h2_upstream_pool::pending_connect {
    explicit pending_connect(const net::any_io_executor& ex) : done(ex, clock::time_point::max()) {}
    net::steady_timer done;  // never expires: cancel() wakes the waiters
    bool finished = false;
    bool h1 = false;
    std::optional<failure> error;
};

h2_upstream_pool::h2_upstream_pool(net::any_io_executor ex) : ex_(std::move(ex)) {}

h2_upstream_pool::~h2_upstream_pool() {
    close_all();
}

bool h2_upstream_pool::wants_h2(const upstream_endpoint& ep) const {
    switch (ep.http2) {
        case config::http2_mode::on:
            return true;
        case config::http2_mode::off:
            return false;
        case config::http2_mode::automatic:
            break;
    }
    if (!ep.is_tls()) {
        return false;
    }
    const auto it = h1_only_.find(ep.pool_key);
    return it == h1_only_.end() || clock::now() - it->second >= h1_memo_age_;
}

void h2_upstream_pool::prune(const std::string& key) {
    auto it = conns_.find(key);
    if (it == conns_.end()) {
        return;
    }
    std::erase_if(it->second, [](const auto& c) { return c->closed(); });
    if (it->second.empty()) {
        conns_.erase(it);
    }
}

net::awaitable<h2_open_result> h2_upstream_pool::open(const upstream_endpoint& ep, const h2_request& req,
                                                      config::duration connect_timeout, metrics& stats) {
    const std::string key = ep.pool_key;
    int waits = 0;
    for (;;) {
        prune(key);
        if (auto it = conns_.find(key); it != conns_.end()) {
            const auto candidates = it->second;  // a copy: submit never suspends, but keep it simple
            for (const auto& c : candidates) {
                if (!c->can_submit()) {
                    continue;
                }
                auto id = c->submit(req);
                if (id) {
                    stats.on_upstream_connection(true);
                    co_return h2_upstream_stream(c, *id);
                }
                if (id.error().code == errc::bad_request) {
                    co_return id.error();  // the request itself, not the connection
                }
            }
        }
        if (!wants_h2(ep)) {
            co_return h2_use_h1{};
        }
        // A connect under way for the key: wait for its outcome (a few times at most,
        // then connect ourselves rather than queue behind other requests forever).
        if (auto pit = connecting_.find(key); pit != connecting_.end() && waits < 4) {
            const auto pending = pit->second;
            ++waits;
            while (!pending->finished) {
                co_await pending->done.async_wait(use_nothrow);
            }
            if (pending->error) {
                co_return *pending->error;
            }
            if (pending->h1) {
                co_return h2_use_h1{};
            }
            continue;
        }

        auto pending = std::make_shared<pending_connect>(ex_);
        connecting_[key] = pending;
        const auto generation = generation_;
        const auto offer = ep.http2 == config::http2_mode::on ? config::http2_mode::on : config::http2_mode::automatic;
        auto connected = co_await connect_upstream(ep, connect_timeout, offer, &stats);
        if (auto pit = connecting_.find(key); pit != connecting_.end() && pit->second == pending) {
            connecting_.erase(pit);
        }
        pending->finished = true;
        auto wake = [&pending] {
            pending->done.cancel();
        };
        if (!connected) {
            pending->error = connected.error();
            wake();
            co_return connected.error();
        }
        if (generation < closed_generation_) {  // close_all() meanwhile
            (*connected)->close();
            failure f{errc::upstream_unreachable, "shutting down: connection to " + ep.origin.authority() + " dropped"};
            pending->error = f;
            wake();
            co_return f;
        }
        auto conn = std::move(*connected);
        stats.on_upstream_connection(false);
        if (!conn->negotiated_h2()) {
            h1_only_[key] = clock::now();
            pending->h1 = true;
            wake();
            co_return std::move(conn);
        }
        auto h2 = std::make_shared<h2_upstream_connection>(ex_, std::move(*conn).release_transport(), settings_,
                                                           liveness{ping_interval_, ping_timeout_, max_idle_age_},
                                                           &stats, ep.origin.authority());
        h2_upstream_connection::start(h2);
        if (generation == generation_) {
            conns_[key].push_back(h2);
        }
        wake();
        auto id = h2->submit(req);
        if (generation != generation_) {
            h2->shutdown();  // reloaded meanwhile: this request only, then GOAWAY
        }
        if (!id) {
            co_return id.error();
        }
        co_return h2_upstream_stream(h2, *id);
    }
}

void h2_upstream_pool::clear() {
    ++generation_;
    h1_only_.clear();
    for (auto& [key, list] : conns_) {
        for (auto& c : list) {
            c->shutdown();
        }
    }
    conns_.clear();
}

void h2_upstream_pool::close_all() {
    ++generation_;
    closed_generation_ = generation_;
    h1_only_.clear();
    for (auto& [key, list] : conns_) {
        for (auto& c : list) {
            c->close("closed: shutting down");
        }
    }
    conns_.clear();
    for (auto& [key, pending] : connecting_) {
        pending->finished = true;
        pending->error = failure{errc::upstream_unreachable, "shutting down"};
        pending->done.cancel();
    }
    connecting_.clear();
}

std::size_t h2_upstream_pool::connection_count() const {
    std::size_t n = 0;
    for (const auto& [key, list] : conns_) {
        n += static_cast<std::size_t>(
            std::count_if(list.begin(), list.end(), [](const auto& c) { return !c->closed(); }));
    }
    return n;
}

}  // namespace acp::proxy
