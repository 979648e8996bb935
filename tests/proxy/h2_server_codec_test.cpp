// proxy/h2_server_codec against a real nghttp2 CLIENT session, in memory: the
// bytes each side writes are fed to the other until both are quiet. The test
// client sends requests (fields, an optional body), resets streams, can hold
// back WINDOW_UPDATE, and records what it decoded per stream (status, fields,
// body, how the stream closed) and any GOAWAY.
#include "proxy/h2_server_codec.hpp"

#include <catch2/catch.hpp>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace acp::proxy;
using clock_type = std::chrono::steady_clock;

struct client_stream {
    unsigned status = 0;
    std::vector<std::pair<std::string, std::string>> fields;
    std::string body;
    bool closed = false;
    std::uint32_t close_code = 0;
    bool got_rst = false;
};

class test_client {
public:
    /// `auto_window_update` false: the client never returns flow-control credit by itself.
    explicit test_client(bool auto_window_update = true) {
        nghttp2_session_callbacks* cbs = nullptr;
        nghttp2_session_callbacks_new(&cbs);
        nghttp2_session_callbacks_set_on_header_callback(cbs, &on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &on_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &on_stream_close);
        nghttp2_option* opt = nullptr;
        nghttp2_option_new(&opt);
        nghttp2_option_set_no_auto_window_update(opt, auto_window_update ? 0 : 1);
        nghttp2_option_set_max_send_header_block_length(opt, 1024 * 1024);
        nghttp2_session_client_new2(&session_, cbs, this, opt);
        nghttp2_option_del(opt);
        nghttp2_session_callbacks_del(cbs);
        nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
    }
    ~test_client() { nghttp2_session_del(session_); }
    test_client(const test_client&) = delete;
    test_client& operator=(const test_client&) = delete;

    nghttp2_session* session() { return session_; }
    std::map<std::int32_t, client_stream>& streams() { return streams_; }
    client_stream& stream(std::int32_t id) { return streams_[id]; }

    std::int32_t get(std::string_view path, std::vector<std::pair<std::string, std::string>> extra = {},
                     std::string body = {}) {
        std::vector<std::pair<std::string, std::string>> all{{":method", body.empty() ? "GET" : "POST"},
                                                             {":scheme", "http"},
                                                             {":authority", "127.0.0.1:5005"},
                                                             {":path", std::string(path)}};
        all.insert(all.end(), extra.begin(), extra.end());
        std::vector<nghttp2_nv> nva;
        for (const auto& [n, v] : all) {
            nva.push_back(nghttp2_nv{const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(n.data())),
                                     const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(v.data())),
                                     n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
        }
        request_body_ = std::move(body);
        nghttp2_data_provider prd{};
        prd.read_callback = &read_body;
        const auto id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                               request_body_.empty() ? nullptr : &prd, nullptr);
        REQUIRE(id > 0);
        streams_[id];
        return id;
    }

    void reset(std::int32_t id, std::uint32_t code = NGHTTP2_CANCEL) {
        REQUIRE(nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, code) == 0);
    }

    std::optional<std::uint32_t> goaway_error;
    std::int32_t goaway_last = -1;

private:
    static test_client& self(void* p) { return *static_cast<test_client*>(p); }

    static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name, std::size_t namelen,
                         const std::uint8_t* value, std::size_t valuelen, std::uint8_t, void* user_data) {
        auto& s = self(user_data).streams_[frame->hd.stream_id];
        const std::string n(reinterpret_cast<const char*>(name), namelen);
        const std::string v(reinterpret_cast<const char*>(value), valuelen);
        if (n == ":status") {
            s.status = static_cast<unsigned>(std::stoi(v));
        } else {
            s.fields.emplace_back(n, v);
        }
        return 0;
    }

    static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        auto& me = self(user_data);
        if (frame->hd.type == NGHTTP2_GOAWAY) {
            me.goaway_error = frame->goaway.error_code;
            me.goaway_last = frame->goaway.last_stream_id;
        } else if (frame->hd.type == NGHTTP2_RST_STREAM) {
            me.streams_[frame->hd.stream_id].got_rst = true;
        }
        return 0;
    }

    static int on_data(nghttp2_session*, std::uint8_t, std::int32_t id, const std::uint8_t* data, std::size_t len,
                       void* user_data) {
        self(user_data).streams_[id].body.append(reinterpret_cast<const char*>(data), len);
        return 0;
    }

    static int on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t code, void* user_data) {
        auto& s = self(user_data).streams_[id];
        s.closed = true;
        s.close_code = code;
        return 0;
    }

    static ssize_t read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length,
                             std::uint32_t* data_flags, nghttp2_data_source*, void* user_data) {
        auto& me = self(user_data);
        const auto n = std::min(length, me.request_body_.size());
        std::copy_n(me.request_body_.data(), n, buf);
        me.request_body_.erase(0, n);
        if (me.request_body_.empty()) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        }
        return static_cast<ssize_t>(n);
    }

    nghttp2_session* session_ = nullptr;
    std::map<std::int32_t, client_stream> streams_;
    std::string request_body_;
};

// The server side of a test: the codec, the events it delivered, a fixed clock.
struct test_server {
    explicit test_server(h2_server_settings s = {}) : codec(s) {}

    h2_server_codec codec;
    std::map<std::int32_t, h2_request_head> requests;
    std::vector<h2_server_event> resets;
    std::vector<std::int32_t> drained;
    clock_type::time_point now = clock_type::now();
    bool failed = false;

    void take() {
        for (auto& ev : codec.take_events()) {
            if (ev.type == h2_server_event::kind::request) {
                REQUIRE(requests.count(ev.stream) == 0);
                requests[ev.stream] = std::move(ev.head);
            } else {
                resets.push_back(std::move(ev));
            }
        }
        for (const auto id : codec.take_drained_streams()) {
            drained.push_back(id);
        }
    }

    void feed(std::span<const std::uint8_t> bytes) {
        if (!codec.receive(bytes, now).has_value()) {
            failed = true;
        }
        take();
    }
};

// Client bytes → server only.
void client_to_server(test_client& c, test_server& s) {
    for (;;) {
        const std::uint8_t* data = nullptr;
        const auto n = nghttp2_session_mem_send(c.session(), &data);
        REQUIRE(n >= 0);
        if (n == 0) {
            return;
        }
        s.feed({data, static_cast<std::size_t>(n)});
    }
}

// Moves bytes both ways until neither side has anything to say.
void pump(test_client& c, test_server& s, int max_rounds = 100000) {
    for (int round = 0; round < max_rounds; ++round) {
        bool moved = false;
        for (;;) {
            const std::uint8_t* data = nullptr;
            const auto n = nghttp2_session_mem_send(c.session(), &data);
            REQUIRE(n >= 0);
            if (n == 0) {
                break;
            }
            s.feed({data, static_cast<std::size_t>(n)});
            moved = true;
        }
        while (s.codec.wants_write()) {
            const auto out = s.codec.next_output();
            if (out.empty()) {
                break;
            }
            const auto n = nghttp2_session_mem_recv(c.session(), out.data(), out.size());
            REQUIRE(n == static_cast<ssize_t>(out.size()));
            s.codec.consumed_output(out.size());
            s.take();
            moved = true;
        }
        if (!moved) {
            return;
        }
    }
    FAIL("pump did not settle");
}

std::string pattern(std::size_t n, std::size_t offset = 0) {
    std::string out(n, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        out[i] = static_cast<char>('a' + (offset + i) % 23);
    }
    return out;
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// Answers a request with `body` (Content-Length set) and releases the handler.
void answer(test_server& s, std::int32_t id, unsigned status, std::string_view body,
            std::vector<h2_response_field> extra = {}) {
    const auto length = std::to_string(body.size());
    std::vector<h2_response_field> fields{{"Content-Type", "application/json"}, {"Content-Length", length}};
    fields.insert(fields.end(), extra.begin(), extra.end());
    REQUIRE(s.codec.submit_response(id, status, fields, !body.empty()).has_value());
    if (!body.empty()) {
        REQUIRE(s.codec.push_body(id, bytes_of(body)));
        REQUIRE(s.codec.end_body(id));
    }
    s.codec.release(id);
}

const std::string* field(const client_stream& st, std::string_view name) {
    for (const auto& [n, v] : st.fields) {
        if (n == name) {
            return &v;
        }
    }
    return nullptr;
}

}  // namespace

TEST_CASE("h2 preface detection: a prefix or the whole preface, nothing else", "[h2_server_codec]") {
    struct row {
        std::string_view bytes;
        bool h2;
    };
    const std::array rows{
        row{"", true},
        row{"P", true},
        row{"PRI * HTTP/2.0\r\n", true},
        row{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true},
        row{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", true},
        row{"GET /v2/ HTTP/1.1\r\n", false},
        row{"PRI * HTTP/1.1\r\n", false},
        row{"PUT", false},
    };
    for (const auto& r : rows) {
        INFO(r.bytes);
        CHECK(starts_like_h2_preface(r.bytes) == r.h2);
    }
}

TEST_CASE("h2 server: a request head arrives whole and its response goes back without hop-by-hop fields",
          "[h2_server_codec]") {
    test_client c;
    test_server s;
    const auto id = c.get("/v2/library/alpine/manifests/3.19?ns=docker.io",
                          {{"accept", "application/vnd.oci.image.index.v1+json"}, {"user-agent", "containerd/1.7"}});
    pump(c, s);
    REQUIRE(s.requests.count(id) == 1);
    const auto& head = s.requests[id];
    CHECK(head.method == "GET");
    CHECK(head.scheme == "http");
    CHECK(head.authority == "127.0.0.1:5005");
    CHECK(head.path == "/v2/library/alpine/manifests/3.19?ns=docker.io");
    CHECK_FALSE(head.has_body);
    CHECK_FALSE(head.too_large);
    REQUIRE(head.fields.size() == 2);
    CHECK(head.fields[0] == std::pair<std::string, std::string>{"accept", "application/vnd.oci.image.index.v1+json"});
    CHECK(s.codec.active_streams() == 1);

    answer(s, id, 200, R"({"schemaVersion":2})",
           {{"Docker-Content-Digest", "sha256:abc"},
            {"Connection", "keep-alive, X-Hop"},
            {"X-Hop", "1"},
            {"Keep-Alive", "timeout=5"},
            {"Transfer-Encoding", "chunked"},
            {"Upgrade", "h2c"},
            {"Proxy-Connection", "close"},
            {"Bad\nName", "x"}});
    pump(c, s);
    const auto& st = c.stream(id);
    CHECK(st.status == 200);
    CHECK(st.body == R"({"schemaVersion":2})");
    CHECK(st.closed);
    CHECK(st.close_code == NGHTTP2_NO_ERROR);
    REQUIRE(field(st, "docker-content-digest") != nullptr);
    CHECK(*field(st, "docker-content-digest") == "sha256:abc");
    for (const auto* name : {"connection", "x-hop", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"}) {
        INFO(name);
        CHECK(field(st, name) == nullptr);
    }
    CHECK(s.codec.active_streams() == 0);
    CHECK(s.codec.completed_responses() == 1);
    CHECK(s.codec.queued_bytes() == 0);
    CHECK(s.resets.empty());
}

TEST_CASE("h2 server: a request with a body says so; a bodiless response ends on its HEADERS", "[h2_server_codec]") {
    test_client c;
    test_server s;
    const auto id = c.get("/v2/", {}, "some body");
    pump(c, s);
    REQUIRE(s.requests.count(id) == 1);
    CHECK(s.requests[id].method == "POST");
    CHECK(s.requests[id].has_body);
    answer(s, id, 405, "");
    pump(c, s);
    CHECK(c.stream(id).status == 405);
    CHECK(c.stream(id).closed);
    CHECK(c.stream(id).body.empty());
}

TEST_CASE("h2 server: fifty streams at once, each answered with its own body", "[h2_server_codec]") {
    test_client c;
    test_server s;
    std::vector<std::int32_t> ids;
    for (int i = 0; i < 50; ++i) {
        ids.push_back(c.get("/v2/r/blobs/sha256:" + std::to_string(i)));
    }
    pump(c, s);
    REQUIRE(s.requests.size() == 50);
    CHECK(s.codec.active_streams() == 50);
    // Answered in reverse order, bodies up to 100 KB (over the 64 KiB windows: WINDOW_UPDATE needed).
    for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
        answer(s, *it, 200, pattern(static_cast<std::size_t>(*it) * 1000, static_cast<std::size_t>(*it)));
    }
    pump(c, s);
    for (const auto id : ids) {
        INFO(id);
        const auto& st = c.stream(id);
        CHECK(st.status == 200);
        CHECK(st.closed);
        CHECK(st.body == pattern(static_cast<std::size_t>(id) * 1000, static_cast<std::size_t>(id)));
    }
    CHECK(s.codec.active_streams() == 0);
    CHECK(s.codec.completed_responses() == 50);
}

TEST_CASE("h2 server: a client that never returns window credit holds the relay at the queue bound",
          "[h2_server_codec]") {
    test_client c(false);
    h2_server_settings cfg;
    cfg.stream_queue_bound = 32 * 1024;
    test_server s(cfg);
    const auto id = c.get("/v2/r/blobs/sha256:big");
    pump(c, s);
    REQUIRE(s.requests.count(id) == 1);
    REQUIRE(s.codec.submit_response(id, 200, {}, true).has_value());
    // The writer's loop: push 16 KiB while the queue is at or below the bound, else wait for a drain notice.
    const std::string chunk = pattern(16 * 1024);
    std::size_t pushed = 0;
    for (int i = 0; i < 200; ++i) {
        if (s.codec.queued_bytes(id) <= cfg.stream_queue_bound) {
            REQUIRE(s.codec.push_body(id, bytes_of(chunk)));
            pushed += chunk.size();
        }
        CHECK(s.codec.queued_bytes(id) <= cfg.stream_queue_bound + chunk.size());
        pump(c, s);
    }
    // The client got its initial window (65,535 bytes) and no more; the rest waits in the bounded queue.
    CHECK(c.stream(id).body.size() == 65535);
    CHECK(pushed == c.stream(id).body.size() + s.codec.queued_bytes(id));
    CHECK(s.codec.queued_bytes(id) <= cfg.stream_queue_bound + chunk.size());
    CHECK(s.codec.buffered_output() == 0);

    // The client reads: credit goes back, the queue drains and the writer hears of it.
    s.drained.clear();
    const auto got = c.stream(id).body.size();
    nghttp2_session_consume(c.session(), id, got);
    pump(c, s);
    CHECK(c.stream(id).body.size() > got);
    CHECK(std::find(s.drained.begin(), s.drained.end(), id) != s.drained.end());
    std::string expected;
    while (expected.size() < c.stream(id).body.size()) {
        expected += chunk;
    }
    CHECK(c.stream(id).body == expected.substr(0, c.stream(id).body.size()));
}

TEST_CASE("h2 server: a header list over 16 KiB marks that stream only; the connection goes on", "[h2_server_codec]") {
    test_client c;
    test_server s;
    const auto big = c.get("/v2/", {{"x-big", std::string(20 * 1024, 'a')}});
    const auto many_fields = [] {
        std::vector<std::pair<std::string, std::string>> f;
        for (int i = 0; i < 150; ++i) {
            f.emplace_back("x-f" + std::to_string(i), "1");
        }
        return f;
    }();
    const auto many = c.get("/v2/", many_fields);
    const auto fine = c.get("/v2/");
    pump(c, s);
    REQUIRE(s.requests.count(big) == 1);
    CHECK(s.requests[big].too_large);
    CHECK(s.requests[big].fields.empty());
    REQUIRE(s.requests.count(many) == 1);
    CHECK(s.requests[many].too_large);
    CHECK(s.requests[many].fields.size() <= 100);
    REQUIRE(s.requests.count(fine) == 1);
    CHECK_FALSE(s.requests[fine].too_large);
    answer(s, big, 431, "{}");
    answer(s, many, 431, "{}");
    answer(s, fine, 200, "{}");
    pump(c, s);
    CHECK(c.stream(big).status == 431);
    CHECK(c.stream(many).status == 431);
    CHECK(c.stream(fine).status == 200);
    CHECK_FALSE(c.goaway_error);
    CHECK_FALSE(s.failed);
}

TEST_CASE(
    "h2 server: streams beyond MAX_CONCURRENT_STREAMS are refused, and reset streams whose handlers run "
    "still count",
    "[h2_server_codec]") {
    h2_server_settings cfg;
    cfg.max_concurrent_streams = 2;
    test_client c;
    test_server s(cfg);
    // Sent before the client saw our SETTINGS: the third is over the limit.
    const auto a = c.get("/v2/a");
    const auto b = c.get("/v2/b");
    const auto over = c.get("/v2/c");
    pump(c, s);
    CHECK(s.requests.count(a) == 1);
    CHECK(s.requests.count(b) == 1);
    CHECK(s.requests.count(over) == 0);
    CHECK(c.stream(over).closed);
    CHECK(c.stream(over).close_code == NGHTTP2_REFUSED_STREAM);

    // The client resets both; nghttp2 forgets them, but our two handlers have not stopped yet.
    c.reset(a);
    c.reset(b);
    pump(c, s);
    CHECK(s.resets.size() == 2);
    CHECK_FALSE(s.codec.writable(a));
    CHECK_FALSE(s.codec.push_body(a, bytes_of("x")));
    const auto d = c.get("/v2/d");
    pump(c, s);
    CHECK(s.requests.count(d) == 0);
    CHECK(c.stream(d).close_code == NGHTTP2_REFUSED_STREAM);

    // Once a handler stops, a new stream is served.
    s.codec.release(a);
    const auto e = c.get("/v2/e");
    pump(c, s);
    REQUIRE(s.requests.count(e) == 1);
    answer(s, e, 200, "{}");
    s.codec.release(b);
    pump(c, s);
    CHECK(c.stream(e).status == 200);
    CHECK(s.codec.active_streams() == 0);
    CHECK_FALSE(c.goaway_error);
}

TEST_CASE("h2 server: the client resetting a stream in flight stops only that stream", "[h2_server_codec]") {
    test_client c;
    test_server s;
    const auto gone = c.get("/v2/r/blobs/sha256:1");
    const auto kept = c.get("/v2/r/blobs/sha256:2");
    pump(c, s);
    REQUIRE(s.codec.submit_response(gone, 200, {}, true).has_value());
    REQUIRE(s.codec.push_body(gone, bytes_of("partial")));
    pump(c, s);
    c.reset(gone);
    pump(c, s);
    REQUIRE(s.resets.size() == 1);
    CHECK(s.resets[0].stream == gone);
    CHECK(s.resets[0].h2_error == NGHTTP2_CANCEL);
    CHECK(std::find(s.drained.begin(), s.drained.end(), gone) != s.drained.end());
    CHECK_FALSE(s.codec.push_body(gone, bytes_of("more")));
    CHECK_FALSE(s.codec.end_body(gone));
    s.codec.release(gone);
    answer(s, kept, 200, "whole");
    pump(c, s);
    CHECK(c.stream(kept).body == "whole");
    CHECK(s.codec.premature_resets() == 1);
    CHECK_FALSE(c.goaway_error);
}

TEST_CASE("h2 server: a handler that stops before its response is complete resets its stream", "[h2_server_codec]") {
    test_client c;
    test_server s;
    const auto id = c.get("/v2/r/blobs/sha256:1");
    pump(c, s);
    REQUIRE(s.codec.submit_response(id, 200, {}, true).has_value());
    REQUIRE(s.codec.push_body(id, bytes_of("half")));
    pump(c, s);
    s.codec.release(id);
    pump(c, s);
    CHECK(c.stream(id).status == 200);
    CHECK(c.stream(id).closed);
    CHECK(c.stream(id).close_code == NGHTTP2_INTERNAL_ERROR);
    CHECK(s.codec.active_streams() == 0);
}

TEST_CASE("h2 server: the server resets a stream whose client does not take the bytes", "[h2_server_codec]") {
    test_client c;
    test_server s;
    const auto id = c.get("/v2/r/blobs/sha256:1");
    pump(c, s);
    REQUIRE(s.codec.submit_response(id, 200, {}, true).has_value());
    s.codec.reset_stream(id, NGHTTP2_CANCEL);
    CHECK_FALSE(s.codec.writable(id));
    s.codec.release(id);
    pump(c, s);
    CHECK(c.stream(id).close_code == NGHTTP2_CANCEL);
    CHECK(s.resets.empty());  // our own reset is no event
}

TEST_CASE("h2 server: rapid reset (HEADERS + RST_STREAM pairs) ends in GOAWAY ENHANCE_YOUR_CALM", "[h2_server_codec]") {
    test_client c;
    test_server s;
    pump(c, s);
    int pairs = 0;
    for (; pairs < 1000 && !s.failed; ++pairs) {
        const auto id = c.get("/v2/x");
        client_to_server(c, s);
        c.reset(id);
        client_to_server(c, s);
        // The handlers stop at once, as the session's do when their stream is reset.
        for (const auto& ev : s.resets) {
            s.codec.release(ev.stream);
        }
        s.resets.clear();
    }
    CHECK(s.failed);
    CHECK(pairs == 201);  // the burst of 200, then the bucket is empty (the clock stood still)
    REQUIRE(s.codec.connection_error());
    CHECK(s.codec.connection_error()->code == errc::malformed_http);
    pump(c, s);
    REQUIRE(c.goaway_error);
    CHECK(*c.goaway_error == NGHTTP2_ENHANCE_YOUR_CALM);
    CHECK_FALSE(s.codec.wants_read());
}

TEST_CASE("h2 server: resets spread over time refill the bucket", "[h2_server_codec]") {
    test_client c;
    test_server s;
    pump(c, s);
    for (int i = 0; i < 1000; ++i) {
        s.now += std::chrono::milliseconds(20);  // 50 resets a second: under the 100 a second refill
        const auto id = c.get("/v2/x");
        client_to_server(c, s);
        c.reset(id);
        client_to_server(c, s);
        for (const auto& ev : s.resets) {
            s.codec.release(ev.stream);
        }
        s.resets.clear();
    }
    CHECK_FALSE(s.failed);
    CHECK(s.codec.premature_resets() == 1000);
    pump(c, s);
    CHECK_FALSE(c.goaway_error);
}

TEST_CASE("h2 server: bytes that are not HTTP/2 end the connection with a protocol error", "[h2_server_codec]") {
    struct row {
        std::string name;
        std::string bytes;
    };
    const std::string preface(h2_preface);
    const std::string settings("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
    const std::vector<row> rows{
        {"HTTP/1.1 instead of the preface", "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"},
        {"DATA on stream 0", preface + settings + std::string("\x00\x00\x01\x00\x00\x00\x00\x00\x00x", 10)},
        {"a frame before SETTINGS", preface + std::string("\x00\x00\x08\x06\x00\x00\x00\x00\x00", 9) + "12345678"},
        {"HEADERS on an even stream", preface + settings + std::string("\x00\x00\x01\x01\x05\x00\x00\x00\x02\x82", 10)},
    };
    for (const auto& r : rows) {
        INFO(r.name);
        h2_server_codec codec;
        const auto got = codec.receive(bytes_of(r.bytes));
        bool failed = !got.has_value();
        while (codec.wants_write()) {
            const auto out = codec.next_output();
            if (out.empty()) {
                break;
            }
            codec.consumed_output(out.size());
        }
        failed = failed || codec.connection_error().has_value();
        CHECK(failed);
        REQUIRE(codec.connection_error());
        CHECK(codec.connection_error()->code == errc::malformed_http);
        CHECK_FALSE(codec.wants_read());
        CHECK(codec.finished());
    }
}

TEST_CASE("h2 server: shutdown sends GOAWAY NO_ERROR and lets the stream in flight finish", "[h2_server_codec]") {
    test_client c;
    test_server s;
    const auto id = c.get("/v2/r/manifests/1");
    pump(c, s);
    REQUIRE(s.requests.count(id) == 1);
    s.codec.shutdown();
    pump(c, s);
    REQUIRE(c.goaway_error);
    CHECK(*c.goaway_error == NGHTTP2_NO_ERROR);
    CHECK(c.goaway_last == id);
    CHECK_FALSE(s.codec.finished());
    answer(s, id, 200, "{}");
    pump(c, s);
    CHECK(c.stream(id).status == 200);
    CHECK(c.stream(id).body == "{}");
    CHECK(s.codec.finished());
}

TEST_CASE("h2 server: bytes handed to the writer stay put while the reader feeds more", "[h2_server_codec]") {
    test_client c;
    test_server s;
    const auto id = c.get("/v2/r/blobs/sha256:1");
    pump(c, s);
    REQUIRE(s.codec.submit_response(id, 200, {}, true).has_value());
    const std::string body = pattern(40 * 1024);
    REQUIRE(s.codec.push_body(id, bytes_of(body)));
    // The writer takes its bytes and starts a write...
    const auto out = s.codec.next_output();
    REQUIRE_FALSE(out.empty());
    const std::string in_flight(reinterpret_cast<const char*>(out.data()), out.size());
    // ... while the reader feeds PINGs and a new request, whose answers are framed aside.
    for (int i = 0; i < 200; ++i) {
        const std::array<std::uint8_t, 8> opaque{};
        REQUIRE(nghttp2_submit_ping(c.session(), NGHTTP2_FLAG_NONE, opaque.data()) == 0);
    }
    const auto second = c.get("/v2/");
    client_to_server(c, s);
    CHECK(s.requests.count(second) == 1);
    CHECK(std::string(reinterpret_cast<const char*>(out.data()), out.size()) == in_flight);
    CHECK(s.codec.buffered_output() > out.size());  // the PING ACKs wait behind the bytes in flight
    // The write completes: everything reaches the client in order.
    const auto n = nghttp2_session_mem_recv(c.session(), out.data(), out.size());
    REQUIRE(n == static_cast<ssize_t>(out.size()));
    s.codec.consumed_output(out.size());
    answer(s, second, 200, "{}");
    REQUIRE(s.codec.end_body(id));
    s.codec.release(id);
    pump(c, s);
    CHECK(c.stream(id).body == body);
    CHECK(c.stream(second).status == 200);
    CHECK_FALSE(c.goaway_error);
}
