#include "proxy/h2_downstream_session.hpp"

#include "config/logging.hpp"
#include "proxy/deadline.hpp"
#include "proxy/error.hpp"
#include "proxy/local_reply.hpp"
#include "proxy/request_context.hpp"
#include "proxy/request_handler.hpp"
#include "proxy/response_writer.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <unordered_map>
#include <vector>

namespace acp::proxy {
namespace {

using clock = std::chrono::steady_clock;

constexpr std::size_t read_chunk = 16 * 1024;

// One request stream's state, shared by its coroutine and the connection.
struct stream_slot {
    explicit stream_slot(const net::any_io_executor& ex, std::int32_t stream) : id(stream), wake(ex) {}

    std::int32_t id;
    net::steady_timer wake;  // the stream's writer waits here for room in its queue
    request_io io;           // what serve_request is using (upstream, scope wait)
    bool stopped = false;    // reset by the client, or the connection stopped

    void stop() noexcept {
        stopped = true;
        io.stop();
        wake.cancel();
    }
};

template <class Stream>
tcp::socket& lowest(Stream& s) {
    return beast::get_lowest_layer(s);
}

// The connection: codec, socket, the writer's wake-up and the stream slots.
// Held by shared_ptr by the session frame and every coroutine it spawns.
template <class Stream>
class h2_connection {
public:
    h2_connection(std::shared_ptr<server_state> st, Stream s, std::shared_ptr<task_group::entry> e,
                  const h2_server_settings& settings, config::duration idle)
        : state(std::move(st)),
          entry(std::move(e)),
          stream(std::move(s)),
          deadline(lowest(stream)),
          codec(settings),
          idle_timeout(idle),
          queue_bound(settings.stream_queue_bound),
          writer_wake(stream.get_executor()),
          done_wake(stream.get_executor()) {}

    std::shared_ptr<server_state> state;
    std::shared_ptr<task_group::entry> entry;
    Stream stream;
    lazy_deadline deadline;
    h2_server_codec codec;
    config::duration idle_timeout;
    std::size_t queue_bound;
    net::steady_timer writer_wake;
    net::steady_timer done_wake;  // the session waits here for its coroutines
    std::unordered_map<std::int32_t, std::shared_ptr<stream_slot>> slots;
    std::size_t tasks = 0;  // spawned coroutines not yet complete (the writer and the streams)
    bool closed = false;    // the socket is closed (or closing): nothing more goes out
    bool writing = false;
    clock::time_point write_started{};

    void wake_writer() { writer_wake.cancel(); }

    void wake_drained() {
        for (const auto id : codec.take_drained_streams()) {
            if (auto it = slots.find(id); it != slots.end()) {
                it->second->wake.cancel();
            }
        }
    }

    // The one deadline of the socket: a write in progress gets `idle` to
    // complete; a connection with no stream gets `idle` to send one; a
    // connection with streams has none (their writers time out per stream).
    void rearm() {
        entry->busy = codec.active_streams() > 0;
        if (closed) {
            return;
        }
        if (writing) {
            deadline.expires_at(write_started + idle_timeout);
        } else if (codec.active_streams() == 0) {
            deadline.expires_after(idle_timeout);
        } else {
            deadline.expires_never();
        }
    }

    void drain() {
        codec.shutdown();
        wake_writer();
    }

    void stop_streams() {
        // Copy: stopping may complete a coroutine that erases its slot.
        std::vector<std::shared_ptr<stream_slot>> all;
        all.reserve(slots.size());
        for (const auto& [id, s] : slots) {
            all.push_back(s);
        }
        for (const auto& s : all) {
            s->stop();
        }
    }

    void close() {
        if (closed) {
            return;
        }
        closed = true;
        deadline.expires_never();
        error_code ec;
        lowest(stream).shutdown(tcp::socket::shutdown_both, ec);
        lowest(stream).close(ec);
        stop_streams();
        wake_writer();
    }

    void task_done() {
        --tasks;
        done_wake.cancel();
    }
};

// The answer to one request on one HTTP/2 stream.
template <class Stream>
class h2_stream_writer final : public response_writer {
public:
    h2_stream_writer(h2_connection<Stream>& c, stream_slot& slot) : c_(c), slot_(slot) {}

    net::awaitable<error_code> write_local(const local_reply& r, bool head, std::string_view request_id) override {
        // The same head and body as over HTTP/1.1 (names lower-cased, Connection dropped by the codec).
        auto res = make_local_response(r, 11, true, request_id);
        const bool with_body = !head && !r.body.empty();
        const body_shape shape{!with_body, r.body.size()};
        auto wrote = write_head(res.base(), shape, net::buffer(res.body()));
        if (auto ec = co_await std::move(wrote)) {
            co_return ec;
        }
        if (!with_body) {
            co_return error_code{};
        }
        auto finished = finish();
        co_return co_await std::move(finished);
    }

    net::awaitable<error_code> write_head(http::response_header<>& head, body_shape shape,
                                          net::const_buffer first) override {
        std::vector<h2_response_field> fields;
        bool has_length = false;
        for (const auto& f : head) {
            fields.push_back({f.name_string(), f.value()});
            has_length = has_length || f.name() == http::field::content_length;
        }
        std::string length;
        if (!shape.none && shape.length && !has_length) {
            length = std::to_string(*shape.length);
            fields.push_back({"content-length", length});
        }
        if (auto ec = submit(head.result_int(), fields, !shape.none)) {
            co_return ec;
        }
        if (shape.none) {
            c_.wake_writer();
            co_return error_code{};
        }
        auto body = write_body(first);
        co_return co_await std::move(body);
    }

    net::awaitable<error_code> write_body(net::const_buffer bytes) override {
        if (auto ec = gone()) {
            co_return ec;
        }
        if (bytes.size() != 0 && !c_.codec.push_body(slot_.id, as_bytes(bytes.data(), bytes.size()))) {
            co_return fail(net::error::connection_reset);
        }
        c_.wake_writer();
        auto room = wait_for_room();
        co_return co_await std::move(room);
    }

    net::awaitable<error_code> finish() override {
        if (auto ec = gone()) {
            co_return ec;
        }
        if (!c_.codec.end_body(slot_.id)) {
            co_return fail(net::error::connection_reset);
        }
        c_.wake_writer();
        co_return error_code{};
    }

    void abort() noexcept override {
        c_.codec.reset_stream(slot_.id, NGHTTP2_INTERNAL_ERROR);
        c_.wake_writer();
        failed_ = true;
    }

    [[nodiscard]] bool keeps_connection() const noexcept override { return true; }

private:
    static std::span<const std::uint8_t> as_bytes(const void* p, std::size_t n) {
        return {static_cast<const std::uint8_t*>(p), n};
    }

    error_code fail(error_code ec) {
        failed_ = true;
        return ec;
    }

    // The stream or the connection can take no more.
    error_code gone() {
        if (c_.closed) {
            return fail(net::error::operation_aborted);
        }
        if (failed_ || slot_.stopped || !c_.codec.writable(slot_.id)) {
            return fail(net::error::connection_reset);
        }
        return {};
    }

    error_code submit(unsigned status, const std::vector<h2_response_field>& fields, bool has_body) {
        if (auto ec = gone()) {
            return ec;
        }
        if (!c_.codec.submit_response(slot_.id, status, fields, has_body)) {
            return fail(net::error::connection_reset);
        }
        return {};
    }

    // Backpressure: until the client's window has taken the stream's queue
    // down to the bound. No progress for `idle`: the stream is reset.
    net::awaitable<error_code> wait_for_room() {
        auto deadline = clock::now() + c_.idle_timeout;
        auto last = c_.codec.queued_bytes(slot_.id);
        for (;;) {
            if (auto ec = gone()) {
                co_return ec;
            }
            const auto queued = c_.codec.queued_bytes(slot_.id);
            if (queued <= c_.queue_bound) {
                co_return error_code{};
            }
            if (queued < last) {
                last = queued;
                deadline = clock::now() + c_.idle_timeout;  // the client is reading
            }
            if (clock::now() >= deadline) {
                c_.codec.reset_stream(slot_.id, NGHTTP2_CANCEL);
                c_.wake_writer();
                co_return fail(beast::error::timeout);
            }
            slot_.wake.expires_at(deadline);
            auto [ec] = co_await slot_.wake.async_wait(use_nothrow);
            static_cast<void>(ec);  // woken (cancel) or expired: the loop looks again
        }
    }

    h2_connection<Stream>& c_;
    stream_slot& slot_;
    bool failed_ = false;
};

http::request<http::empty_body> to_request(const h2_request_head& h) {
    http::request<http::empty_body> req;
    req.method_string(h.method);
    req.target(h.path);
    req.version(11);
    req.set(http::field::host, h.authority);
    for (const auto& [name, value] : h.fields) {
        if (name != "host") {
            req.insert(name, value);
        }
    }
    return req;
}

// One request stream, from its head to the end of its response.
template <class Stream>
net::awaitable<void> serve_stream(std::shared_ptr<h2_connection<Stream>> c, std::shared_ptr<stream_slot> slot,
                                  h2_request_head head) {
    if (slot->stopped) {
        // Reset by the client before it started (the rapid-reset pattern): no
        // upstream work, no access log line per stream.
        co_return;
    }
    auto& st = *c->state;
    const auto snap = st.snapshots.load();  // taken now, kept for the whole request
    request_context rc;
    rc.id = st.next_request_id();
    h2_stream_writer<Stream> writer(*c, *slot);
    if (head.too_large) {
        rc.method = head.method.substr(0, 16);
        const reply_context ctx{"", "", "", "request header list over 16 KiB or 100 fields"};
        const auto reply = to_local_reply(make_error_code(errc::header_too_large), ctx);
        rc.status = static_cast<unsigned>(reply.status);
        rc.to_headers = clock::now() - rc.start;
        rc.error = std::string(ctx.detail);
        auto write = writer.write_local(reply, head.method == "HEAD", rc.id);
        const auto ec = co_await std::move(write);
        static_cast<void>(ec);
    } else {
        const auto req = to_request(head);
        auto serve = serve_request(st, *snap, req, head.has_body, writer, rc, slot->io);
        co_await std::move(serve);
    }
    record_request(st, rc);
}

// The ONE writer: drains the codec's output to the socket; closes the
// connection once the codec has nothing more to read or write.
template <class Stream>
net::awaitable<void> write_loop(std::shared_ptr<h2_connection<Stream>> c) {
    while (!c->closed) {
        if (c->codec.wants_write()) {
            const auto out = c->codec.next_output();
            c->wake_drained();
            if (!out.empty()) {
                c->writing = true;
                c->write_started = clock::now();
                c->rearm();
                auto [ec, n] = co_await net::async_write(c->stream, net::buffer(out.data(), out.size()), use_nothrow);
                c->writing = false;
                if (ec) {
                    c->close();
                    break;
                }
                c->codec.consumed_output(n);
                c->rearm();
                continue;
            }
        }
        if (c->codec.finished()) {
            c->close();  // GOAWAY sent and every stream done, or a connection error flushed
            break;
        }
        c->writer_wake.expires_at(clock::time_point::max());
        auto [ec] = co_await c->writer_wake.async_wait(use_nothrow);
        static_cast<void>(ec);
    }
}

template <class Stream>
void spawn_tracked(const std::shared_ptr<h2_connection<Stream>>& c, net::awaitable<void> task, std::int32_t stream_id) {
    ++c->tasks;
    net::co_spawn(c->stream.get_executor(), std::move(task), [c, stream_id](std::exception_ptr ep) {
        if (ep) {
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& ex) {
                logging::logger("proxy")->error("h2 stream {} ended by an exception: {}", stream_id, ex.what());
            }
        }
        if (stream_id != 0) {
            c->codec.release(stream_id);
            c->slots.erase(stream_id);
            c->rearm();
            c->wake_writer();
        }
        c->task_done();
    });
}

// Events from the codec after a receive: new streams start, reset ones stop.
template <class Stream>
void dispatch(const std::shared_ptr<h2_connection<Stream>>& c) {
    for (auto& ev : c->codec.take_events()) {
        if (ev.type == h2_server_event::kind::request) {
            auto slot = std::make_shared<stream_slot>(c->stream.get_executor(), ev.stream);
            c->slots[ev.stream] = slot;
            auto task = serve_stream<Stream>(c, slot, std::move(ev.head));
            spawn_tracked(c, std::move(task), ev.stream);
        } else if (auto it = c->slots.find(ev.stream); it != c->slots.end()) {
            it->second->stop();  // the client reset it: stop the upstream, fail the writes
        }
    }
    c->wake_drained();
}

template <class Stream>
bool feed(const std::shared_ptr<h2_connection<Stream>>& c, std::span<const std::uint8_t> bytes) {
    const auto got = c->codec.receive(bytes);
    if (c->state->draining) {
        c->codec.shutdown();
    }
    dispatch(c);
    c->rearm();
    c->wake_writer();
    if (!got) {
        logging::logger("proxy")->debug("h2 connection error: {}", got.error().detail);
        c->stop_streams();
        return false;
    }
    return true;
}

// Clears the stop hooks when the session ends (they hold the connection).
struct hook_guard {
    task_group::entry& entry;
    ~hook_guard() {
        entry.stop = nullptr;
        entry.on_drain = nullptr;
        entry.busy = false;
    }
};

template <class Stream>
net::awaitable<void> run_session(std::shared_ptr<server_state> state, Stream s, beast::flat_buffer already_read,
                                 std::shared_ptr<task_group::entry> entry) {
    const auto snap = state->snapshots.load();
    h2_server_settings settings;
    settings.max_concurrent_streams = snap->cfg->limits.max_concurrent_streams;
    error_code nodelay_ec;
    lowest(s).set_option(tcp::no_delay(true), nodelay_ec);
    auto c = std::make_shared<h2_connection<Stream>>(state, std::move(s), entry, settings, snap->cfg->timeouts.idle);
    state->stats.connection_opened();
    struct closed_counter {
        metrics& m;
        ~closed_counter() { m.connection_closed(); }
    } counter{state->stats};
    entry->stop = [c] {
        c->close();
    };
    entry->on_drain = [c] {
        c->drain();
    };
    hook_guard guard{*entry};
    if (state->draining) {
        c->codec.shutdown();
    }
    spawn_tracked(c, write_loop(c), 0);

    // The ONE reader.
    bool ok = true;
    if (already_read.size() != 0) {
        const auto data = already_read.data();
        ok = feed(c, {static_cast<const std::uint8_t*>(data.data()), data.size()});
        already_read.consume(already_read.size());
    }
    c->rearm();
    beast::flat_buffer buffer;
    while (ok && !c->closed && c->codec.wants_read()) {
        auto [ec, n] = co_await c->stream.async_read_some(buffer.prepare(read_chunk), use_nothrow);
        if (ec) {
            c->close();  // closed, reset, idle timeout or stopped
            break;
        }
        buffer.commit(n);
        const auto data = buffer.data();
        ok = feed(c, {static_cast<const std::uint8_t*>(data.data()), data.size()});
        buffer.consume(n);
    }
    // The writer flushes what is left (a GOAWAY, the streams' last bytes) and
    // closes; every coroutine ends before the session does.
    while (c->tasks > 0) {
        c->done_wake.expires_at(clock::time_point::max());
        auto [ec] = co_await c->done_wake.async_wait(use_nothrow);
        if (ec != net::error::operation_aborted) {
            break;
        }
    }
    c->close();
}

}  // namespace

net::awaitable<void> run_h2_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                    beast::flat_buffer already_read, std::shared_ptr<task_group::entry> entry) {
    return run_session(std::move(state), std::move(socket), std::move(already_read), std::move(entry));
}

net::awaitable<void> run_h2_session(std::shared_ptr<server_state> state, beast::ssl_stream<tcp::socket> stream,
                                    beast::flat_buffer already_read, std::shared_ptr<task_group::entry> entry) {
    return run_session(std::move(state), std::move(stream), std::move(already_read), std::move(entry));
}

}  // namespace acp::proxy
