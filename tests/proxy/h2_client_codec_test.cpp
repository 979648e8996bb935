// proxy/h2_client_codec against a real nghttp2 SERVER session, in memory: the
// bytes each side writes are fed to the other until both are quiet. The test
// server answers requests (status, fields, a body of N bytes in DATA frames)
// and can hold answers, send GOAWAY, reset streams, limit concurrent streams,
// send a huge header block and answer PING; it records what it decoded,
// HPACK flags included.
#include "proxy/h2_client_codec.hpp"

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

struct received_field {
    std::string name;
    std::string value;
    std::uint8_t flags = 0;
};

struct server_stream {
    std::vector<received_field> fields;
    bool complete = false;  // the request's END_STREAM arrived
    std::size_t body_left = 0;
    std::size_t body_offset = 0;
    std::uint32_t close_code = 0;
    bool closed = false;
};

// The byte at `offset` of every test body: a pattern that catches reordering.
char body_byte(std::size_t offset) {
    return static_cast<char>('a' + offset % 23);
}

class test_server {
public:
    struct options {
        std::uint32_t max_concurrent = 100;
        bool auto_respond = true;
        unsigned status = 200;
        std::size_t body_size = 0;
        std::vector<std::pair<std::string, std::string>> response_fields{{"content-type", "application/json"}};
    };

    explicit test_server(options o) : opt_(std::move(o)) {
        nghttp2_session_callbacks* cbs = nullptr;
        nghttp2_session_callbacks_new(&cbs);
        nghttp2_session_callbacks_set_on_header_callback(cbs, &on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &on_frame_recv);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &on_stream_close);
        nghttp2_option* o2 = nullptr;
        nghttp2_option_new(&o2);
        nghttp2_option_set_max_send_header_block_length(o2, 1024 * 1024);
        nghttp2_session_server_new2(&session_, cbs, this, o2);
        nghttp2_option_del(o2);
        nghttp2_session_callbacks_del(cbs);
        const std::array<nghttp2_settings_entry, 1> iv{
            {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, opt_.max_concurrent}}};
        nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
    }
    ~test_server() { nghttp2_session_del(session_); }
    test_server(const test_server&) = delete;
    test_server& operator=(const test_server&) = delete;

    nghttp2_session* session() { return session_; }
    std::map<std::int32_t, server_stream>& streams() { return streams_; }
    options& opts() { return opt_; }

    // Answers a request: status, the configured fields (plus `extra`), a body of `body_size` bytes.
    void respond(std::int32_t id, unsigned status, std::size_t body_size,
                 const std::vector<std::pair<std::string, std::string>>& extra = {}) {
        auto& st = streams_[id];
        st.body_left = body_size;
        const auto status_text = std::to_string(status);
        std::vector<std::pair<std::string, std::string>> all{{":status", status_text}};
        all.insert(all.end(), opt_.response_fields.begin(), opt_.response_fields.end());
        all.insert(all.end(), extra.begin(), extra.end());
        all.emplace_back("content-length", std::to_string(body_size));
        submit(id, all, body_size > 0);
    }

    // Sends exactly these fields as the response head (no :status added).
    void submit(std::int32_t id, const std::vector<std::pair<std::string, std::string>>& fields, bool with_body) {
        std::vector<nghttp2_nv> nva;
        for (const auto& [n, v] : fields) {
            nva.push_back(nghttp2_nv{const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(n.data())),
                                     const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(v.data())),
                                     n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
        }
        nghttp2_data_provider prd{};
        prd.read_callback = &read_body;
        REQUIRE(nghttp2_submit_response(session_, id, nva.data(), nva.size(), with_body ? &prd : nullptr) == 0);
    }

    void goaway(std::int32_t last_stream_id, std::uint32_t code = NGHTTP2_NO_ERROR) {
        REQUIRE(nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last_stream_id, code, nullptr, 0) == 0);
    }
    void reset(std::int32_t id, std::uint32_t code) {
        REQUIRE(nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, code) == 0);
    }

    std::vector<std::int32_t> completed_requests() const {
        std::vector<std::int32_t> out;
        for (const auto& [id, s] : streams_) {
            if (s.complete) {
                out.push_back(id);
            }
        }
        return out;
    }

private:
    static test_server& self(void* p) { return *static_cast<test_server*>(p); }

    static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name, std::size_t namelen,
                         const std::uint8_t* value, std::size_t valuelen, std::uint8_t flags, void* user_data) {
        self(user_data).streams_[frame->hd.stream_id].fields.push_back(
            {std::string(reinterpret_cast<const char*>(name), namelen),
             std::string(reinterpret_cast<const char*>(value), valuelen), flags});
        return 0;
    }

    static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        auto& me = self(user_data);
        if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
            me.streams_[frame->hd.stream_id].complete = true;
            if (me.opt_.auto_respond) {
                me.respond(frame->hd.stream_id, me.opt_.status, me.opt_.body_size);
            }
        }
        return 0;
    }

    static int on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t code, void* user_data) {
        auto& s = self(user_data).streams_[id];
        s.closed = true;
        s.close_code = code;
        return 0;
    }

    static ssize_t read_body(nghttp2_session*, std::int32_t id, std::uint8_t* buf, std::size_t length,
                             std::uint32_t* data_flags, nghttp2_data_source*, void* user_data) {
        auto& s = self(user_data).streams_[id];
        const auto n = std::min(length, s.body_left);
        for (std::size_t i = 0; i < n; ++i) {
            buf[i] = static_cast<std::uint8_t>(body_byte(s.body_offset + i));
        }
        s.body_offset += n;
        s.body_left -= n;
        if (s.body_left == 0) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        }
        return static_cast<ssize_t>(n);
    }

    options opt_;
    nghttp2_session* session_ = nullptr;
    std::map<std::int32_t, server_stream> streams_;
};

// Moves bytes both ways until neither side has anything to say. Returns false
// when the client codec reported a connection error.
bool pump(h2_client_codec& client, test_server& server, int max_rounds = 100000) {
    bool ok = true;
    for (int round = 0; round < max_rounds; ++round) {
        bool moved = false;
        while (client.wants_write()) {
            auto out = client.next_output();
            if (out.empty()) {
                break;
            }
            const auto n = nghttp2_session_mem_recv(server.session(), out.data(), out.size());
            REQUIRE(n == static_cast<ssize_t>(out.size()));
            client.consumed_output(out.size());
            moved = true;
        }
        for (;;) {
            const std::uint8_t* data = nullptr;
            const auto n = nghttp2_session_mem_send(server.session(), &data);
            REQUIRE(n >= 0);
            if (n == 0) {
                break;
            }
            if (!client.receive({data, static_cast<std::size_t>(n)}).has_value()) {
                ok = false;
            }
            moved = true;
        }
        if (!moved) {
            return ok;
        }
    }
    FAIL("pump did not settle");
    return ok;
}

// Everything a stream delivered, consuming body bytes as they come when `consume` is set.
struct collected {
    std::optional<h2_response_head> head;
    std::string body;
    bool ended = false;
    std::optional<h2_event> reset;
    std::size_t events = 0;
};

void drain(h2_client_codec& c, std::int32_t id, collected& out, bool consume = true) {
    while (auto ev = c.next_event(id)) {
        ++out.events;
        REQUIRE_FALSE(out.ended);
        REQUIRE_FALSE(out.reset);
        switch (ev->type) {
            case h2_event::kind::headers:
                REQUIRE_FALSE(out.head);
                out.head = std::move(ev->head);
                break;
            case h2_event::kind::data:
                REQUIRE(out.head);
                out.body += ev->data;
                if (consume) {
                    c.consume(id, ev->data.size());
                }
                break;
            case h2_event::kind::end:
                out.ended = true;
                break;
            case h2_event::kind::reset:
                out.reset = std::move(ev);
                break;
        }
    }
}

bool is_pattern(const std::string& body, std::size_t offset = 0) {
    for (std::size_t i = 0; i < body.size(); ++i) {
        if (body[i] != body_byte(offset + i)) {
            return false;
        }
    }
    return true;
}

h2_request get(std::string_view path, std::span<const h2_field> fields = {}) {
    return h2_request{"GET", "https", "registry.example", path, fields};
}

const received_field* find_field(const server_stream& s, std::string_view name) {
    for (const auto& f : s.fields) {
        if (f.name == name) {
            return &f;
        }
    }
    return nullptr;
}

std::int32_t opened(const boost::system::result<std::int32_t, failure>& r) {
    REQUIRE(r.has_value());
    return *r;
}

// Runs streams to completion, consuming as data comes; returns what each delivered.
std::map<std::int32_t, collected> run(h2_client_codec& c, test_server& s, const std::vector<std::int32_t>& ids) {
    std::map<std::int32_t, collected> out;
    for (int i = 0; i < 10000; ++i) {
        pump(c, s);
        const auto ready = c.take_ready_streams();
        if (ready.empty()) {
            break;
        }
        for (const auto id : ready) {
            drain(c, id, out[id]);
        }
    }
    for (const auto id : ids) {
        out[id];
    }
    return out;
}

}  // namespace

TEST_CASE("h2 codec: the preface is SETTINGS first and a connection WINDOW_UPDATE", "[h2_client_codec]") {
    h2_client_codec c;
    REQUIRE(c.wants_write());
    const auto out = c.next_output();
    const std::string_view magic = NGHTTP2_CLIENT_MAGIC;
    REQUIRE(out.size() > magic.size() + 9);
    CHECK(std::string_view(reinterpret_cast<const char*>(out.data()), magic.size()) == magic);
    CHECK(out[magic.size() + 3] == NGHTTP2_SETTINGS);
    test_server s({});
    pump(c, s);
    CHECK(c.can_submit());
    CHECK(c.open_streams() == 0);
    CHECK(c.peer_max_concurrent_streams() == 100);
    // The server sees our stream window and the raised connection window.
    CHECK(nghttp2_session_get_remote_settings(s.session(), NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE) == 256 * 1024);
    CHECK(nghttp2_session_get_remote_settings(s.session(), NGHTTP2_SETTINGS_ENABLE_PUSH) == 0);
    CHECK(nghttp2_session_get_remote_window_size(s.session()) == 16 * 1024 * 1024);
}

TEST_CASE("h2 codec: one GET round trip delivers headers, the body and the end", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({.body_size = 100000});
    const std::array<h2_field, 2> fields{{{"Accept", "application/vnd.oci.image.manifest.v1+json"},
                                          {"Accept", "application/vnd.docker.distribution.manifest.v2+json"}}};
    auto id = c.submit_request(get("/v2/library/alpine/manifests/3.19", fields));
    REQUIRE(id.has_value());
    CHECK(*id == 1);
    CHECK(c.open_streams() == 1);
    auto got = run(c, s, {*id});
    auto& r = got[*id];
    REQUIRE(r.head);
    CHECK(r.head->status == 200);
    CHECK(r.head->fields["content-type"] == "application/json");
    CHECK(r.head->fields["content-length"] == "100000");
    CHECK(r.body.size() == 100000);
    CHECK(is_pattern(r.body));
    CHECK(r.ended);
    CHECK_FALSE(r.reset);
    CHECK(c.unconsumed_bytes() == 0);
    CHECK(c.open_streams() == 0);
    c.release(*id);
    CHECK_FALSE(c.next_event(*id));

    // The server saw the pseudo-headers and both Accept lines, in order.
    const auto& req = s.streams()[1];
    REQUIRE(req.fields.size() == 6);
    CHECK(req.fields[0].name == ":method");
    CHECK(req.fields[0].value == "GET");
    CHECK(req.fields[1].value == "https");
    CHECK(req.fields[2].name == ":authority");
    CHECK(req.fields[2].value == "registry.example");
    CHECK(req.fields[3].value == "/v2/library/alpine/manifests/3.19");
    CHECK(req.fields[4].name == "accept");
    CHECK(req.fields[4].value == "application/vnd.oci.image.manifest.v1+json");
    CHECK(req.fields[5].value == "application/vnd.docker.distribution.manifest.v2+json");
}

TEST_CASE("h2 codec: HEAD and a bodiless answer end right after the headers", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({.status = 404, .body_size = 0});
    auto id = c.submit_request(h2_request{"HEAD", "https", "registry.example", "/v2/x/blobs/sha256:00", {}});
    REQUIRE(id.has_value());
    auto got = run(c, s, {*id});
    REQUIRE(got[*id].head);
    CHECK(got[*id].head->status == 404);
    CHECK(got[*id].ended);
    CHECK(got[*id].events == 2);
}

TEST_CASE("h2 codec: ten concurrent streams interleave and each gets its own body", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({.auto_respond = false});
    std::vector<std::int32_t> ids;
    for (int i = 0; i < 10; ++i) {
        auto id = c.submit_request(get("/v2/r/blobs/sha256:" + std::to_string(i)));
        REQUIRE(id.has_value());
        ids.push_back(*id);
    }
    CHECK(c.open_streams() == 10);
    pump(c, s);
    REQUIRE(s.completed_requests().size() == 10);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        s.respond(ids[i], 200, 50000 + i * 7919);
    }
    // One pump round: several streams become ready together (interleaved DATA frames).
    pump(c, s);
    const auto ready = c.take_ready_streams();
    CHECK(ready.size() == 10);
    std::map<std::int32_t, collected> got;
    for (const auto id : ready) {
        drain(c, id, got[id]);
    }
    auto rest = run(c, s, ids);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        auto& r = got[ids[i]];
        const auto& more = rest[ids[i]];
        r.body += more.body;
        r.ended = r.ended || more.ended;
        CAPTURE(ids[i]);
        REQUIRE(r.head);
        CHECK(r.body.size() == 50000 + i * 7919);
        CHECK(is_pattern(r.body));
        CHECK(r.ended);
    }
    CHECK(c.open_streams() == 0);
}

TEST_CASE("h2 codec: a 4 MiB body stalls at the stream window until the consumer consumes", "[h2_client_codec]") {
    constexpr std::size_t body = 4 * 1024 * 1024;
    constexpr std::size_t window = 256 * 1024;
    h2_client_codec c;
    test_server s({.body_size = body});
    auto id = c.submit_request(get("/v2/r/blobs/sha256:big"));
    REQUIRE(id.has_value());
    pump(c, s);
    collected r;
    c.take_ready_streams();
    drain(c, *id, r, /*consume=*/false);
    REQUIRE(r.head);
    // The server cannot send more: exactly one window is queued, the rest waits upstream.
    CHECK(r.body.size() == window);
    CHECK(c.unconsumed_bytes(*id) == window);
    CHECK(s.streams()[*id].body_left == body - window);
    CHECK(nghttp2_session_get_stream_remote_window_size(s.session(), *id) == 0);
    pump(c, s);  // still nothing moves
    CHECK(c.take_ready_streams().empty());
    CHECK(s.streams()[*id].body_left == body - window);

    // Consuming releases it, one half window at a time; queued bytes never exceed the window.
    std::size_t max_unconsumed = 0;
    c.consume(*id, r.body.size());
    for (int i = 0; i < 1000 && !r.ended; ++i) {
        pump(c, s);
        c.take_ready_streams();
        const auto before = r.body.size();
        drain(c, *id, r, /*consume=*/false);
        max_unconsumed = std::max(max_unconsumed, c.unconsumed_bytes(*id));
        CHECK(c.unconsumed_bytes() <= window);
        c.consume(*id, r.body.size() - before);
    }
    CHECK(r.ended);
    CHECK(r.body.size() == body);
    CHECK(is_pattern(r.body));
    CHECK(max_unconsumed <= window);
    CHECK(c.unconsumed_bytes() == 0);
}

TEST_CASE("h2 codec: GOAWAY — streams above the last id are retryable, the others complete", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({.auto_respond = false});
    std::vector<std::int32_t> ids;
    for (int i = 0; i < 3; ++i) {
        ids.push_back(opened(c.submit_request(get("/v2/r/manifests/" + std::to_string(i)))));
    }
    pump(c, s);
    REQUIRE(ids == std::vector<std::int32_t>{1, 3, 5});
    s.goaway(3);
    s.respond(1, 200, 1000);
    s.respond(3, 200, 70000);
    auto got = run(c, s, ids);
    CHECK(c.goaway_received());
    CHECK(c.goaway_last_stream_id() == 3);
    CHECK_FALSE(c.can_submit());
    for (const auto id : {1, 3}) {
        CAPTURE(id);
        CHECK(got[id].ended);
        CHECK_FALSE(got[id].reset);
    }
    CHECK(got[3].body.size() == 70000);
    REQUIRE(got[5].reset);
    CHECK(got[5].reset->retryable);
    CHECK(got[5].reset->error.code == errc::upstream_unreachable);
    CHECK_FALSE(got[5].head);
    // No new stream on a connection going away: the pool opens another.
    auto refused = c.submit_request(get("/v2/r/manifests/late"));
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().code == errc::upstream_unreachable);
    CHECK(c.open_streams() == 0);
    CHECK(c.finished());
}

TEST_CASE("h2 codec: requests queued but never sent when GOAWAY arrives are retryable", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({.auto_respond = false});
    pump(c, s);
    s.goaway(0);
    // The GOAWAY is in flight while the caller submits: the request never leaves.
    const std::uint8_t* data = nullptr;
    std::string from_server;
    for (auto n = nghttp2_session_mem_send(s.session(), &data); n > 0;
         n = nghttp2_session_mem_send(s.session(), &data)) {
        from_server.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
    auto id = c.submit_request(get("/v2/r/manifests/a"));
    REQUIRE(id.has_value());
    REQUIRE(c.receive({reinterpret_cast<const std::uint8_t*>(from_server.data()), from_server.size()}).has_value());
    pump(c, s);
    collected r;
    drain(c, *id, r);
    REQUIRE(r.reset);
    CHECK(r.reset->retryable);
    CHECK(s.completed_requests().empty());
}

TEST_CASE("h2 codec: RST_STREAM ends the stream with its error code", "[h2_client_codec]") {
    struct row {
        const char* name;
        std::uint32_t code;
        bool after_headers;
        bool retryable;
    };
    const std::array<row, 4> rows{{
        {"INTERNAL_ERROR before headers", NGHTTP2_INTERNAL_ERROR, false, false},
        {"CANCEL mid-body", NGHTTP2_CANCEL, true, false},
        {"REFUSED_STREAM: never processed", NGHTTP2_REFUSED_STREAM, false, true},
        {"PROTOCOL_ERROR mid-body", NGHTTP2_PROTOCOL_ERROR, true, false},
    }};
    for (const auto& t : rows) {
        SECTION(t.name) {
            h2_client_codec c;
            test_server s({.auto_respond = false});
            auto a = opened(c.submit_request(get("/v2/r/blobs/a")));
            auto b = opened(c.submit_request(get("/v2/r/blobs/b")));
            pump(c, s);
            if (t.after_headers) {
                s.respond(a, 200, 1000000);
                pump(c, s);
            }
            s.reset(a, t.code);
            s.respond(b, 200, 10);
            auto got = run(c, s, {a, b});
            REQUIRE(got[a].reset);
            CHECK(got[a].head.has_value() == t.after_headers);
            CHECK(got[a].reset->h2_error == t.code);
            CHECK(got[a].reset->retryable == t.retryable);
            CHECK(got[a].reset->error.code == errc::upstream_unreachable);
            CHECK_FALSE(got[a].reset->error.detail.empty());
            // The other stream is untouched and the connection stays usable.
            CHECK(got[b].ended);
            CHECK(c.can_submit());
            CHECK(c.unconsumed_bytes() == 0);
        }
    }
}

TEST_CASE("h2 codec: SETTINGS_MAX_CONCURRENT_STREAMS is honoured", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({.max_concurrent = 1, .auto_respond = false});
    pump(c, s);
    CHECK(c.peer_max_concurrent_streams() == 1);
    REQUIRE(c.can_submit());
    auto a = opened(c.submit_request(get("/v2/r/manifests/a")));
    CHECK(c.open_streams() == 1);
    CHECK_FALSE(c.can_submit());
    auto second = c.submit_request(get("/v2/r/manifests/b"));
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().code == errc::upstream_unreachable);
    pump(c, s);
    s.respond(a, 200, 5);
    auto got = run(c, s, {a});
    CHECK(got[a].ended);
    c.release(a);
    CHECK(c.open_streams() == 0);
    CHECK(c.can_submit());
    auto b = c.submit_request(get("/v2/r/manifests/b"));
    REQUIRE(b.has_value());
    pump(c, s);
    CHECK(s.completed_requests().size() == 2);
}

TEST_CASE("h2 codec: Authorization and Cookie are sent never-indexed", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({});
    const std::array<h2_field, 3> fields{
        {{"Authorization", "Bearer not-for-any-table"}, {"Cookie", "session=abc"}, {"Accept", "application/json"}}};
    // Twice: a field that was indexed the first time would be sent as an index the second.
    for (int i = 0; i < 2; ++i) {
        auto id = opened(c.submit_request(get("/v2/r/manifests/a", fields)));
        pump(c, s);
        const auto& req = s.streams()[id];
        const auto* auth = find_field(req, "authorization");
        const auto* cookie = find_field(req, "cookie");
        const auto* accept = find_field(req, "accept");
        REQUIRE(auth);
        REQUIRE(cookie);
        REQUIRE(accept);
        CHECK(auth->value == "Bearer not-for-any-table");
        CHECK((auth->flags & NGHTTP2_NV_FLAG_NO_INDEX) != 0);
        CHECK((cookie->flags & NGHTTP2_NV_FLAG_NO_INDEX) != 0);
        CHECK((accept->flags & NGHTTP2_NV_FLAG_NO_INDEX) == 0);
        c.release(id);
    }
}

TEST_CASE("h2 codec: hop-by-hop fields are never sent and Host becomes :authority", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({});
    const std::array<h2_field, 12> fields{{
        {"Connection", "keep-alive, X-Private-Hop"},
        {"Keep-Alive", "timeout=5"},
        {"Proxy-Connection", "keep-alive"},
        {"Transfer-Encoding", "chunked"},
        {"Upgrade", "h2c"},
        {"TE", "gzip"},
        {"X-Private-Hop", "1"},
        {"Host", "mirror.example:5000"},
        {"Content-Length", "0"},
        {"Proxy-Authorization", "Basic c2VjcmV0"},
        {"User-Agent", "containerd/2.0"},
        {"X-Request-ID", "r1"},
    }};
    auto id = opened(c.submit_request(h2_request{"GET", "https", "", "/v2/r/manifests/a", fields}));
    pump(c, s);
    const auto& req = s.streams()[id];
    std::vector<std::string> names;
    for (const auto& f : req.fields) {
        names.push_back(f.name);
    }
    CHECK(names == std::vector<std::string>{":method", ":scheme", ":authority", ":path", "user-agent", "x-request-id"});
    CHECK(find_field(req, ":authority")->value == "mirror.example:5000");

    // TE: trailers is the one TE value HTTP/2 allows.
    const std::array<h2_field, 1> te{{{"TE", " Trailers "}}};
    auto id2 = opened(c.submit_request(get("/v2/r/manifests/b", te)));
    pump(c, s);
    const auto* kept = find_field(s.streams()[id2], "te");
    REQUIRE(kept);
    CHECK(kept->value == "trailers");
}

TEST_CASE("h2 codec: request fields HTTP/2 cannot carry are refused", "[h2_client_codec]") {
    h2_client_codec c;
    const std::array<h2_field, 1> bad_value{{{"X-A", "line\r\nbreak"}}};
    const std::array<h2_field, 1> bad_name{{{"X A", "v"}}};
    const std::array<h2_field, 1> pseudo{{{":path", "/other"}}};
    for (auto f : {std::span<const h2_field>(bad_value), std::span<const h2_field>(bad_name),
                   std::span<const h2_field>(pseudo)}) {
        auto r = c.submit_request(get("/v2/r/manifests/a", f));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::bad_request);
    }
    auto no_authority = c.submit_request(h2_request{"GET", "https", "", "/v2/", {}});
    REQUIRE_FALSE(no_authority.has_value());
    CHECK(c.open_streams() == 0);
}

TEST_CASE("h2 codec: cancel resets the stream and gives its window credit back", "[h2_client_codec]") {
    // A connection window of two stream windows: two leaked cancels would starve the third stream.
    h2_settings small;
    small.connection_window = 2 * small.stream_window;
    h2_client_codec c(small);
    test_server s({.body_size = 1024 * 1024});
    pump(c, s);
    for (int i = 0; i < 3; ++i) {
        auto id = opened(c.submit_request(get("/v2/r/blobs/" + std::to_string(i))));
        pump(c, s);
        collected r;
        c.take_ready_streams();
        drain(c, id, r, /*consume=*/false);
        CHECK(r.body.size() == small.stream_window);
        c.cancel(id);
        CHECK(c.unconsumed_bytes() == 0);
        pump(c, s);
        CHECK(s.streams()[id].closed);
        CHECK(s.streams()[id].close_code == NGHTTP2_CANCEL);
        CHECK_FALSE(c.next_event(id));
        CHECK(c.open_streams() == 0);
    }
    auto id = opened(c.submit_request(get("/v2/r/blobs/last")));
    auto got = run(c, s, {id});
    CHECK(got[id].ended);
    CHECK(got[id].body.size() == 1024 * 1024);
    CHECK(nghttp2_session_get_remote_window_size(s.session()) > 0);
}

TEST_CASE("h2 codec: cancelling a finished stream whose body was never consumed returns the credit",
          "[h2_client_codec]") {
    h2_settings small;
    small.connection_window = small.stream_window;
    h2_client_codec c(small);
    test_server s({.body_size = 100000});
    for (int i = 0; i < 4; ++i) {
        auto id = opened(c.submit_request(get("/v2/r/manifests/m")));
        pump(c, s);
        collected r;
        drain(c, id, r, /*consume=*/false);
        CHECK(r.ended);
        CHECK(c.unconsumed_bytes(id) == 100000);
        c.cancel(id);
        pump(c, s);
        CHECK(s.streams()[id].close_code == NGHTTP2_NO_ERROR);  // no RST for a finished stream
    }
}

TEST_CASE("h2 codec: a response without a valid :status is a protocol error for that stream", "[h2_client_codec]") {
    const std::array<std::vector<std::pair<std::string, std::string>>, 3> heads{{
        {{"content-type", "text/plain"}},
        {{":status", "abc"}},
        {{":status", "2000"}},
    }};
    for (const auto& head : heads) {
        h2_client_codec c;
        test_server s({.auto_respond = false});
        auto a = opened(c.submit_request(get("/v2/r/manifests/a")));
        auto b = opened(c.submit_request(get("/v2/r/manifests/b")));
        pump(c, s);
        s.submit(a, head, false);
        s.respond(b, 200, 3);
        auto got = run(c, s, {a, b});
        REQUIRE(got[a].reset);
        CHECK(got[a].reset->error.code == errc::upstream_protocol);
        CHECK_FALSE(got[a].head);
        CHECK(got[b].ended);
        CHECK(c.can_submit());
    }
}

TEST_CASE("h2 codec: 1xx heads are skipped and trailers ignored", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({.auto_respond = false});
    auto id = opened(c.submit_request(get("/v2/r/manifests/a")));
    pump(c, s);
    const std::array<nghttp2_nv, 1> early{{nghttp2_nv{
        const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(":status")),
        const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>("103")), 7, 3, NGHTTP2_NV_FLAG_NONE}}};
    REQUIRE(nghttp2_submit_headers(s.session(), NGHTTP2_FLAG_NONE, id, nullptr, early.data(), early.size(), nullptr) >=
            0);
    s.respond(id, 200, 10);
    auto got = run(c, s, {id});
    REQUIRE(got[id].head);
    CHECK(got[id].head->status == 200);
    CHECK(got[id].body.size() == 10);
    CHECK(got[id].ended);
}

TEST_CASE("h2 codec: a header list over the limit resets only that stream", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({.auto_respond = false});
    auto a = opened(c.submit_request(get("/v2/r/manifests/a")));
    auto b = opened(c.submit_request(get("/v2/r/manifests/b")));
    pump(c, s);
    std::vector<std::pair<std::string, std::string>> many;
    for (int i = 0; i < 100; ++i) {
        many.emplace_back("x-field-" + std::to_string(i), std::string(1000, 'h'));  // ~100 KiB in all
    }
    s.respond(a, 200, 0, many);
    s.respond(b, 200, 3);
    auto got = run(c, s, {a, b});
    REQUIRE(got[a].reset);
    CHECK(got[a].reset->error.code == errc::upstream_protocol);
    CHECK(got[a].reset->error.detail.find("over 65536 bytes") != std::string::npos);
    CHECK_FALSE(got[a].head);
    CHECK(got[b].ended);
    CHECK(c.can_submit());
}

TEST_CASE("h2 codec: one header field over HPACK's limit is a connection error", "[h2_client_codec]") {
    // nghttp2's decoder refuses a field over 64 KiB before any callback sees it (COMPRESSION_ERROR).
    h2_client_codec c;
    test_server s({.auto_respond = false});
    auto a = opened(c.submit_request(get("/v2/r/manifests/a")));
    pump(c, s);
    s.respond(a, 200, 0, {{"x-huge", std::string(100 * 1024, 'h')}});
    CHECK_FALSE(pump(c, s));
    collected r;
    drain(c, a, r);
    REQUIRE(r.reset);
    CHECK(r.reset->error.code == errc::upstream_protocol);
    REQUIRE(c.connection_error());
    CHECK(c.connection_error()->code == errc::upstream_protocol);
    CHECK_FALSE(c.can_submit());
}

TEST_CASE("h2 codec: PING is acknowledged", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({});
    pump(c, s);
    CHECK(c.ping_acked() == 0);
    const auto first = c.submit_ping();
    const auto second = c.submit_ping();
    CHECK(first == 1);
    CHECK(second == 2);
    pump(c, s);
    CHECK(c.ping_acked() == 2);
}

TEST_CASE("h2 codec: garbage from the server is a connection protocol error, never a crash", "[h2_client_codec]") {
    SECTION("instead of the server preface") {
        h2_client_codec c;
        c.consumed_output(c.next_output().size());
        auto id = opened(c.submit_request(get("/v2/r/manifests/a")));
        c.consumed_output(c.next_output().size());
        const std::string junk = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        auto r = c.receive({reinterpret_cast<const std::uint8_t*>(junk.data()), junk.size()});
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::upstream_protocol);
        collected got;
        drain(c, id, got);
        REQUIRE(got.reset);
        CHECK(got.reset->error.code == errc::upstream_protocol);
        CHECK_FALSE(c.can_submit());
        CHECK_FALSE(c.wants_read());
        // Further bytes keep failing the same way.
        CHECK_FALSE(c.receive({reinterpret_cast<const std::uint8_t*>(junk.data()), junk.size()}).has_value());
    }
    SECTION("after a good handshake") {
        h2_client_codec c;
        test_server s({.auto_respond = false});
        auto id = opened(c.submit_request(get("/v2/r/manifests/a")));
        pump(c, s);
        // A frame header for an unknown frame on stream 0 is fine; a DATA frame on stream 0 is not.
        const std::array<std::uint8_t, 13> data_on_zero{0, 0, 4, NGHTTP2_DATA, 0, 0, 0, 0, 0, 'a', 'b', 'c', 'd'};
        auto r = c.receive(data_on_zero);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::upstream_protocol);
        collected got;
        drain(c, id, got);
        REQUIRE(got.reset);
        CHECK(got.reset->error.code == errc::upstream_protocol);
        // A GOAWAY naming the error is queued for the writer.
        CHECK(c.wants_write());
        auto out = c.next_output();
        REQUIRE(out.size() >= 9);
        CHECK(out[3] == NGHTTP2_GOAWAY);
    }
}

TEST_CASE("h2 codec: connection loss ends every open stream as unreachable", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({.auto_respond = false});
    auto a = opened(c.submit_request(get("/v2/r/manifests/a")));
    pump(c, s);
    s.respond(a, 200, 1000000);
    pump(c, s);
    auto b = opened(c.submit_request(get("/v2/r/manifests/b")));  // never sent
    c.connection_lost("the upstream closed the connection");
    collected ga;
    collected gb;
    drain(c, a, ga);
    drain(c, b, gb);
    REQUIRE(ga.reset);
    REQUIRE(gb.reset);
    CHECK(ga.head);
    CHECK(ga.reset->error.code == errc::upstream_unreachable);
    CHECK_FALSE(ga.reset->retryable);
    CHECK(gb.reset->retryable);
    CHECK_FALSE(c.wants_write());
    CHECK_FALSE(c.wants_read());
    CHECK(c.finished());
    c.cancel(a);
    c.cancel(b);
    CHECK(c.open_streams() == 0);
}

TEST_CASE("h2 codec: shutdown lets open streams finish and opens none", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({.auto_respond = false});
    auto a = opened(c.submit_request(get("/v2/r/manifests/a")));
    pump(c, s);
    c.shutdown();
    CHECK_FALSE(c.can_submit());
    pump(c, s);
    s.respond(a, 200, 20);
    auto got = run(c, s, {a});
    CHECK(got[a].ended);
    CHECK(c.finished());
}

TEST_CASE("h2 codec: the codec moves without losing its session", "[h2_client_codec]") {
    h2_client_codec first;
    test_server s({.body_size = 10});
    auto id = opened(first.submit_request(get("/v2/r/manifests/a")));
    h2_client_codec c = std::move(first);
    auto got = run(c, s, {id});
    CHECK(got[id].ended);
}

TEST_CASE("h2 codec: a stream cancelled before its request left never reaches the server", "[h2_client_codec]") {
    h2_client_codec c;
    test_server s({.body_size = 10});
    pump(c, s);
    auto a = opened(c.submit_request(get("/v2/r/manifests/a")));
    auto b = opened(c.submit_request(get("/v2/r/manifests/b")));
    c.cancel(a);
    auto got = run(c, s, {b});
    CHECK(s.completed_requests() == std::vector<std::int32_t>{b});
    CHECK_FALSE(c.next_event(a));
    CHECK(got[b].ended);
    c.release(b);
    CHECK(c.open_streams() == 0);
    CHECK(c.can_submit());
}
