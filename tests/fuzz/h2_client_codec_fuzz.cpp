// libFuzzer target: what an HTTP/2 upstream sends proxy/h2_client_codec after
// a valid handshake (our preface, the server's empty SETTINGS) with three
// requests open. The input arrives in pieces of varying size; between pieces
// the caller does what forward.cpp will: drains the writer, pops every ready
// stream's events, consumes body bytes (stream 1 and new ones), never
// consumes stream 5's (the slow client), cancels stream 3 at its first body
// bytes, pings, and opens a stream whenever can_submit() says so.
// Never a crash or leak; each stream's events are well-ordered (headers, then
// data, then one end/reset, nothing after); unconsumed bytes stay within the
// stream window; the writer's buffer stays bounded; a failed receive leaves
// the connection refusing new streams.
#include "proxy/h2_client_codec.hpp"
#include "tests/fuzz/fuzz_support.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <span>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using acp::fuzz::require;
using namespace acp::proxy;

struct tracker {
    bool head = false;
    bool terminal = false;
    std::size_t body = 0;
};

constexpr std::size_t stream_window = 256 * 1024;

void drain_output(h2_client_codec& c) {
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

void handle_events(h2_client_codec& c, std::map<std::int32_t, tracker>& streams) {
    for (const auto id : c.take_ready_streams()) {
        auto it = streams.find(id);
        require(it != streams.end());
        auto& t = it->second;
        while (auto ev = c.next_event(id)) {
            require(!t.terminal);
            switch (ev->type) {
                case h2_event::kind::headers:
                    require(!t.head);
                    require(ev->head.status >= 200 && ev->head.status <= 599);
                    t.head = true;
                    break;
                case h2_event::kind::data:
                    require(t.head && !ev->data.empty());
                    t.body += ev->data.size();
                    if (id == 3) {
                        c.cancel(id);  // the downstream went away
                        require(c.unconsumed_bytes(id) == 0);
                        require(!c.next_event(id));
                        t.terminal = true;
                    } else if (id != 5) {
                        c.consume(id, ev->data.size());
                    }
                    break;
                case h2_event::kind::end:
                    require(t.head);
                    t.terminal = true;
                    break;
                case h2_event::kind::reset:
                    require(ev->error.code == errc::upstream_unreachable || ev->error.code == errc::upstream_protocol);
                    require(!ev->error.detail.empty() && !acp::fuzz::has_control(ev->error.detail));
                    t.terminal = true;
                    break;
            }
            if (t.terminal) {
                break;
            }
        }
        require(c.unconsumed_bytes(id) <= stream_window);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    h2_client_codec c;
    std::map<std::int32_t, tracker> streams;
    const std::array<h2_field, 3> fields{{{"Accept", "application/vnd.oci.image.manifest.v1+json"},
                                          {"Authorization", "Bearer fuzz"},
                                          {"Connection", "close"}}};
    for (int i = 0; i < 3; ++i) {
        auto id = c.submit_request(h2_request{"GET", "https", "registry.example", "/v2/a/manifests/b", fields});
        require(id.has_value());
        streams[*id] = tracker{};
    }
    drain_output(c);
    // The server's preface: an empty SETTINGS frame.
    const std::array<std::uint8_t, 9> settings{0, 0, 0, 4, 0, 0, 0, 0, 0};
    require(c.receive(settings).has_value());

    static constexpr std::array<std::size_t, 6> pieces{1, 9, 100, 4096, 13, 16384};
    std::span<const std::uint8_t> rest(data, size);
    bool failed = false;
    for (std::size_t round = 0; !rest.empty(); ++round) {
        const auto n = std::min(rest.size(), pieces[round % pieces.size()]);
        const auto r = c.receive(rest.first(n));
        rest = rest.subspan(n);
        if (!r.has_value()) {
            require(r.error().code == errc::upstream_protocol || r.error().code == errc::upstream_unreachable);
            failed = true;
        }
        handle_events(c, streams);
        drain_output(c);
        if (failed) {
            require(!c.can_submit());
            require(!c.submit_request(h2_request{"GET", "https", "registry.example", "/v2/", {}}).has_value());
            break;
        }
        if (round % 4 == 3) {
            c.submit_ping();
        }
        if (c.can_submit() && streams.size() < 16) {
            auto id = c.submit_request(h2_request{"HEAD", "https", "registry.example", "/v2/a/blobs/c", {}});
            require(id.has_value());
            streams[*id] = tracker{};
        }
        require(c.open_streams() <= streams.size());
        require(c.unconsumed_bytes() <= streams.size() * stream_window);
    }
    // Every stream is released, whatever its state; a dead connection says so to all of them.
    c.connection_lost("fuzz input ended");
    handle_events(c, streams);
    for (const auto& [id, t] : streams) {
        c.cancel(id);
        require(c.unconsumed_bytes(id) == 0);
    }
    require(c.unconsumed_bytes() == 0);
    require(!c.wants_write());
    return 0;
}
