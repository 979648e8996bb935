// libFuzzer target: what an HTTP/2 client sends proxy/h2_server_codec after
// a valid start (the client preface and an empty SETTINGS). The input arrives
// in pieces of varying size, a clock advancing 7 ms a piece; between pieces
// the caller does what h2_downstream_session does: drains the writer, takes
// the events and answers each request by its stream id — a bodiless 404, a
// body pushed while the queue is at or below its bound, a body left open,
// a stream reset, a handler released without any response — and releases
// every stream whose client reset it.
// Never a crash or leak; a request event comes once per stream, a reset event
// only after its stream's request; handlers never exceed
// MAX_CONCURRENT_STREAMS; a stream's queue stays within its bound plus one
// push; the writer's buffer stays bounded; a failed receive leaves the codec
// failed (and it stops reading once its GOAWAY is out).
#include "proxy/h2_server_codec.hpp"
#include "tests/fuzz/fuzz_support.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using acp::fuzz::require;
using namespace acp::proxy;

constexpr std::uint32_t max_streams = 8;
constexpr std::size_t queue_bound = 4096;
constexpr std::size_t push_size = 3000;

struct handler {
    bool released = false;
    bool body_open = false;  // answered with a body that is still being pushed
    std::size_t pushed = 0;
};

const std::array<std::uint8_t, push_size>& body_bytes() {
    static const auto bytes = [] {
        std::array<std::uint8_t, push_size> b{};
        for (std::size_t i = 0; i < b.size(); ++i) {
            b[i] = static_cast<std::uint8_t>('a' + i % 23);
        }
        return b;
    }();
    return bytes;
}

void drain_output(h2_server_codec& c) {
    for (int i = 0; i < 64 && c.wants_write(); ++i) {
        const auto out = c.next_output();
        require(c.buffered_output() == out.size());
        require(out.size() <= 2 * 1024 * 1024);
        if (out.empty()) {
            break;
        }
        c.consumed_output(out.size());
    }
}

void release(h2_server_codec& c, std::int32_t id, handler& h) {
    if (!h.released) {
        c.release(id);
        h.released = true;
        h.body_open = false;
    }
}

// The stream may be gone already (the client reset it in the same bytes): its
// reset event follows, and every call on it fails without harm.
void start(h2_server_codec& c, std::int32_t id, handler& h, const h2_request_head& head) {
    require(!head.method.empty() || head.too_large);
    const std::array<h2_response_field, 3> fields{
        {{"Content-Type", "application/json"}, {"Connection", "close"}, {"X-Request-Id", "fuzz"}}};
    const bool open = c.writable(id);
    switch ((static_cast<std::uint32_t>(id) / 2) % 5) {
        case 0:  // a local reply
            require(c.submit_response(id, head.too_large ? 431 : 404, fields, false).has_value() == open);
            release(c, id, h);
            break;
        case 1:  // a relayed body
        case 2:  // ... that the handler abandons halfway (see pump_bodies)
            require(c.submit_response(id, 200, fields, true).has_value() == open);
            h.body_open = open;
            break;
        case 3:  // reset by the server (the client does not read)
            require(c.submit_response(id, 200, fields, true).has_value() == open);
            c.reset_stream(id, 8);
            require(!c.writable(id));
            require(!c.push_body(id, body_bytes()));
            release(c, id, h);
            break;
        default:  // still waiting for its upstream: no response yet
            break;
    }
}

void pump_bodies(h2_server_codec& c, std::map<std::int32_t, handler>& handlers) {
    for (auto& [id, h] : handlers) {
        if (!h.body_open || h.released) {
            continue;
        }
        if (!c.writable(id)) {
            continue;  // the reset event releases it
        }
        if (c.queued_bytes(id) <= queue_bound) {
            require(c.push_body(id, body_bytes()));
            h.pushed += push_size;
        }
        require(c.queued_bytes(id) <= queue_bound + push_size);
        if (h.pushed >= 5 * push_size) {
            if ((static_cast<std::uint32_t>(id) / 2) % 5 == 2) {
                release(c, id, h);  // abandoned: the codec resets it
            } else {
                require(c.end_body(id));
                release(c, id, h);
            }
        }
    }
}

void handle_events(h2_server_codec& c, std::map<std::int32_t, handler>& handlers) {
    for (const auto& ev : c.take_events()) {
        require(ev.stream > 0 && ev.stream % 2 == 1);
        if (ev.type == h2_server_event::kind::request) {
            require(handlers.count(ev.stream) == 0);
            auto& h = handlers[ev.stream];
            start(c, ev.stream, h, ev.head);
        } else {
            // Queued with the request in the same bytes, the reset may find the handler
            // already released by start() (as a session's stream coroutine finds its stop).
            auto it = handlers.find(ev.stream);
            require(it != handlers.end());
            release(c, ev.stream, it->second);
        }
    }
    static_cast<void>(c.take_drained_streams());
    require(c.active_streams() <= max_streams);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    h2_server_settings settings;
    settings.max_concurrent_streams = max_streams;
    settings.stream_queue_bound = queue_bound;
    settings.reset_burst = 20;
    settings.reset_refill_per_second = 10;
    h2_server_codec c(settings);
    std::map<std::int32_t, handler> handlers;
    auto now = h2_server_codec::clock::time_point{} + std::chrono::hours(1);

    // The client's start: the preface and an empty SETTINGS frame.
    std::string start_bytes(h2_preface);
    start_bytes.append("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
    require(
        c.receive({reinterpret_cast<const std::uint8_t*>(start_bytes.data()), start_bytes.size()}, now).has_value());
    drain_output(c);

    static constexpr std::array<std::size_t, 6> pieces{1, 9, 100, 4096, 13, 16384};
    std::span<const std::uint8_t> rest(data, size);
    bool failed = false;
    for (std::size_t round = 0; !rest.empty(); ++round) {
        const auto n = std::min(rest.size(), pieces[round % pieces.size()]);
        now += std::chrono::milliseconds(7);
        const auto r = c.receive(rest.first(n), now);
        rest = rest.subspan(n);
        if (!r.has_value()) {
            require(r.error().code == errc::malformed_http);
            require(!r.error().detail.empty() && !acp::fuzz::has_control(r.error().detail));
            failed = true;
        }
        handle_events(c, handlers);
        pump_bodies(c, handlers);
        drain_output(c);
        if (failed) {
            require(c.connection_error().has_value());
            require(!c.receive(rest.first(0), now).has_value());
            require(!c.wants_read());
            break;
        }
    }
    // Every handler stops, whatever its stream's state.
    for (auto& [id, h] : handlers) {
        release(c, id, h);
    }
    require(c.active_streams() == 0);
    drain_output(c);
    return 0;
}
