#include "proxy/h2_client_codec.hpp"

#include "proxy/header_policy.hpp"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <unordered_map>
#include <utility>

namespace acp::proxy {
namespace {

// Output gathered per next_output() call: a few TLS records' worth.
constexpr std::size_t output_chunk = 64 * 1024;

std::string_view as_view(const std::uint8_t* p, std::size_t n) {
    return {reinterpret_cast<const char*>(p), n};
}

nghttp2_nv make_nv(std::string_view name, std::string_view value, std::uint8_t flags) {
    // nghttp2_submit_request copies names and values; the casts only satisfy its C signature.
    return nghttp2_nv{const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(name.data())),
                      const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(value.data())), name.size(),
                      value.size(), flags};
}

// nghttp2's message for the log and the error body: what precedes any echo of
// the received field (", name: [..], value: [..]" may hold anything the peer
// sent), printable ASCII only, bounded.
std::string printable_reason(std::string_view msg) {
    if (const auto at = msg.find(", name:"); at != std::string_view::npos) {
        msg = msg.substr(0, at);
    }
    std::string out;
    for (const char c : msg.substr(0, 160)) {
        const auto u = static_cast<unsigned char>(c);
        out.push_back(u >= 0x20 && u < 0x7f ? c : '?');
    }
    return out;
}

std::string h2_error_name(std::uint32_t code) {
    return nghttp2_http2_strerror(code);
}

}  // namespace

struct h2_client_codec::impl {
    struct stream_state {
        std::deque<h2_event> events;
        std::optional<h2_response_head> pending;  // the head being decoded
        std::size_t header_bytes = 0;             // of the block being decoded (RFC 9113 §6.5.2 accounting)
        std::size_t received = 0;                 // body bytes received
        std::size_t consumed = 0;                 // body bytes consume()d (or credited back)
        std::optional<failure> local_error;       // we refused the response (bad head, over the limit)
        bool sent = false;                        // the request HEADERS went out
        bool head_done = false;                   // the final head was queued
        bool terminal = false;                    // end or reset queued
        bool closed = false;                      // nghttp2 closed the stream
        bool forgotten = false;                   // cancel()ed: kept only until nghttp2 closes it
        bool ready = false;                       // listed in ready_
    };

    nghttp2_session* session = nullptr;
    h2_settings settings;
    std::unordered_map<std::int32_t, stream_state> streams;
    std::vector<std::int32_t> ready;
    std::string out;
    std::size_t out_pos = 0;
    std::size_t open = 0;
    std::optional<std::int32_t> goaway_last;
    std::uint32_t goaway_error = 0;
    std::optional<failure> conn_error;
    bool lost = false;  // the socket is gone: nothing to read or write
    bool shut = false;
    std::uint64_t ping_sent = 0;
    std::uint64_t ping_acked = 0;
    std::string last_lib_error;  // nghttp2's words for the last connection error

    ~impl() {
        if (session != nullptr) {
            nghttp2_session_del(session);
        }
    }

    stream_state* find(std::int32_t id) {
        auto it = streams.find(id);
        return it == streams.end() ? nullptr : &it->second;
    }

    void push(std::int32_t id, stream_state& s, h2_event ev) {
        if (s.forgotten || s.terminal) {
            return;
        }
        if (ev.type == h2_event::kind::end || ev.type == h2_event::kind::reset) {
            s.terminal = true;
        }
        if (ev.type == h2_event::kind::data && !s.events.empty() && s.events.back().type == h2_event::kind::data) {
            s.events.back().data += ev.data;  // merged: one wake-up per burst, bounded by the window
        } else {
            s.events.push_back(std::move(ev));
        }
        if (!s.ready) {
            s.ready = true;
            ready.push_back(id);
        }
    }

    static h2_event end_event() {
        h2_event ev;
        ev.type = h2_event::kind::end;
        return ev;
    }

    static h2_event reset_event(errc code, std::string detail, std::uint32_t h2_error, bool retryable) {
        h2_event ev;
        ev.type = h2_event::kind::reset;
        ev.error = failure{code, std::move(detail)};
        ev.h2_error = h2_error;
        ev.retryable = retryable;
        return ev;
    }

    // Every unfinished stream ends with `f`; retryable when the server cannot have processed it.
    void fail_all(const failure& f) {
        for (auto& [id, s] : streams) {
            const bool never_processed = !s.sent || (goaway_last && id > *goaway_last);
            push(id, s, reset_event(f.code, f.detail, goaway_error, never_processed));
        }
    }

    void fail_connection(failure f) {
        if (conn_error) {
            return;
        }
        conn_error = f;
        fail_all(f);
    }

    // ---- nghttp2 callbacks ----------------------------------------------------------------------------------------

    static impl& self(void* user_data) { return *static_cast<impl*>(user_data); }

    static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        auto& me = self(user_data);
        if (frame->hd.type != NGHTTP2_HEADERS) {
            return 0;
        }
        if (auto* s = me.find(frame->hd.stream_id); s != nullptr) {
            s->header_bytes = 0;
            if (!s->head_done) {
                s->pending.emplace();
            }
        }
        return 0;
    }

    static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name, std::size_t namelen,
                         const std::uint8_t* value, std::size_t valuelen, std::uint8_t, void* user_data) {
        auto& me = self(user_data);
        auto* s = me.find(frame->hd.stream_id);
        if (s == nullptr || frame->hd.type != NGHTTP2_HEADERS) {
            return 0;
        }
        s->header_bytes += namelen + valuelen + 32;
        if (s->header_bytes > me.settings.max_header_list) {
            if (!s->local_error) {
                s->local_error =
                    failure{errc::upstream_protocol, "the upstream's HTTP/2 response header list is over " +
                                                         std::to_string(me.settings.max_header_list) + " bytes"};
            }
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets this stream only
        }
        if (s->head_done || !s->pending) {
            return 0;  // trailers: ignored
        }
        const auto n = as_view(name, namelen);
        const auto v = as_view(value, valuelen);
        if (n == ":status") {
            unsigned status = 0;
            const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), status);
            if (ec != std::errc{} || end != v.data() + v.size() || status < 100 || status > 599) {
                s->local_error = failure{errc::upstream_protocol, "the upstream sent an invalid HTTP/2 :status"};
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
            s->pending->status = status;
        } else if (!n.empty() && n.front() != ':') {
            s->pending->fields.insert(n, v);
        }
        return 0;
    }

    static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        auto& me = self(user_data);
        switch (frame->hd.type) {
            case NGHTTP2_HEADERS: {
                auto* s = me.find(frame->hd.stream_id);
                if (s == nullptr || s->forgotten) {
                    return 0;
                }
                if (!s->head_done && s->pending) {
                    if (s->pending->status == 0) {
                        s->local_error =
                            failure{errc::upstream_protocol, "the upstream's HTTP/2 response has no :status"};
                        nghttp2_submit_rst_stream(me.session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                                  NGHTTP2_PROTOCOL_ERROR);
                        return 0;
                    }
                    if (s->pending->status >= 200) {
                        h2_event ev;
                        ev.type = h2_event::kind::headers;
                        ev.head = std::move(*s->pending);
                        s->head_done = true;
                        me.push(frame->hd.stream_id, *s, std::move(ev));
                    }
                    s->pending.reset();  // 1xx: wait for the final head
                }
                if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 && s->head_done) {
                    me.push(frame->hd.stream_id, *s, end_event());
                }
                return 0;
            }
            case NGHTTP2_DATA: {
                auto* s = me.find(frame->hd.stream_id);
                if (s != nullptr && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
                    me.push(frame->hd.stream_id, *s, end_event());
                }
                return 0;
            }
            case NGHTTP2_GOAWAY:
                me.goaway_last = frame->goaway.last_stream_id;
                me.goaway_error = frame->goaway.error_code;
                return 0;
            case NGHTTP2_PING:
                if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
                    std::uint64_t seq = 0;
                    for (const auto b : frame->ping.opaque_data) {
                        seq = (seq << 8) | b;
                    }
                    if (seq <= me.ping_sent) {
                        me.ping_acked = std::max(me.ping_acked, seq);
                    }
                }
                return 0;
            default:
                return 0;
        }
    }

    static int on_data_chunk_recv(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                                  const std::uint8_t* data, std::size_t len, void* user_data) {
        auto& me = self(user_data);
        auto* s = me.find(stream_id);
        if (s == nullptr || s->forgotten || s->terminal) {
            // Nobody will write these bytes: credit them back at once.
            nghttp2_session_consume(session, stream_id, len);
            return 0;
        }
        s->received += len;
        h2_event ev;
        ev.type = h2_event::kind::data;
        ev.data.assign(reinterpret_cast<const char*>(data), len);
        me.push(stream_id, *s, std::move(ev));
        return 0;
    }

    static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t code, void* user_data) {
        auto& me = self(user_data);
        auto it = me.streams.find(stream_id);
        if (it == me.streams.end()) {
            return 0;
        }
        auto& s = it->second;
        if (!s.closed) {
            s.closed = true;
            me.open -= me.open > 0 ? 1 : 0;
        }
        if (s.forgotten) {
            me.streams.erase(it);
            return 0;
        }
        if (s.terminal) {
            return 0;
        }
        if (s.local_error) {
            me.push(stream_id, s, reset_event(s.local_error->code, s.local_error->detail, code, false));
        } else if (code == NGHTTP2_REFUSED_STREAM || (me.goaway_last && stream_id > *me.goaway_last)) {
            me.push(stream_id, s,
                    reset_event(errc::upstream_unreachable, "the upstream refused the HTTP/2 stream (not processed)",
                                code, true));
        } else if (me.conn_error) {
            me.push(stream_id, s, reset_event(me.conn_error->code, me.conn_error->detail, code, false));
        } else {
            me.push(stream_id, s,
                    reset_event(errc::upstream_unreachable,
                                "the upstream reset the HTTP/2 stream (" + h2_error_name(code) + ")", code, false));
        }
        return 0;
    }

    static int on_invalid_frame_recv(nghttp2_session*, const nghttp2_frame* frame, int lib_error, void* user_data) {
        auto& me = self(user_data);
        if (auto* s = me.find(frame->hd.stream_id); s != nullptr && !s->local_error) {
            s->local_error =
                failure{errc::upstream_protocol,
                        std::string("the upstream sent an invalid HTTP/2 response: ") + nghttp2_strerror(lib_error)};
        }
        return 0;
    }

    static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        auto& me = self(user_data);
        if (frame->hd.type == NGHTTP2_HEADERS) {
            if (auto* s = me.find(frame->hd.stream_id); s != nullptr) {
                s->sent = true;
            }
        } else if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
            // nghttp2 found a connection error in what the peer sent.
            me.fail_connection(failure{errc::upstream_protocol, me.protocol_detail()});
        }
        return 0;
    }

    static int on_error(nghttp2_session*, int, const char* msg, std::size_t len, void* user_data) {
        self(user_data).last_lib_error = printable_reason({msg, len});
        return 0;
    }

    std::string protocol_detail() const {
        return last_lib_error.empty() ? std::string("the upstream broke the HTTP/2 protocol")
                                      : "the upstream broke the HTTP/2 protocol: " + last_lib_error;
    }
};

h2_client_codec::h2_client_codec(const h2_settings& s) : impl_(std::make_unique<impl>()) {
    impl_->settings = s;
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &impl::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &impl::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &impl::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &impl::on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &impl::on_stream_close);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, &impl::on_invalid_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &impl::on_frame_send);
    nghttp2_session_callbacks_set_error_callback2(cbs, &impl::on_error);
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);  // credit follows consume()
    nghttp2_option_set_max_reserved_remote_streams(opt, 0);
    nghttp2_session_client_new2(&impl_->session, cbs, impl_.get(), opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);

    const std::array<nghttp2_settings_entry, 4> iv{{
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, s.stream_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, s.max_header_list},
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 0},  // the registry opens none (no push)
    }};
    nghttp2_submit_settings(impl_->session, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
    nghttp2_session_set_local_window_size(
        impl_->session, NGHTTP2_FLAG_NONE, 0,
        static_cast<std::int32_t>(std::min<std::uint32_t>(s.connection_window, NGHTTP2_MAX_WINDOW_SIZE)));
}

h2_client_codec::~h2_client_codec() = default;
h2_client_codec::h2_client_codec(h2_client_codec&&) noexcept = default;
h2_client_codec& h2_client_codec::operator=(h2_client_codec&&) noexcept = default;

boost::system::result<void, failure> h2_client_codec::receive(std::span<const std::uint8_t> bytes) {
    auto& m = *impl_;
    if (m.conn_error) {
        return *m.conn_error;
    }
    const auto rv = nghttp2_session_mem_recv(m.session, bytes.data(), bytes.size());
    if (rv < 0) {
        m.last_lib_error = nghttp2_strerror(static_cast<int>(rv));
        m.fail_connection(failure{errc::upstream_protocol, m.protocol_detail()});
        return *m.conn_error;
    }
    // A connection error found in these bytes: nghttp2 queued GOAWAY(error) and
    // refuses new streams, though the GOAWAY is not sent yet.
    if (!nghttp2_session_check_request_allowed(m.session) && !m.goaway_last && !m.shut) {
        m.fail_connection(failure{errc::upstream_protocol, m.protocol_detail()});
    }
    if (m.conn_error) {
        return *m.conn_error;
    }
    return {};
}

bool h2_client_codec::wants_write() const noexcept {
    const auto& m = *impl_;
    if (m.lost) {
        return false;
    }
    return m.out_pos < m.out.size() || nghttp2_session_want_write(m.session) != 0;
}

std::span<const std::uint8_t> h2_client_codec::next_output() {
    auto& m = *impl_;
    if (m.lost) {
        return {};
    }
    if (m.out_pos == m.out.size()) {
        m.out.clear();
        m.out_pos = 0;
    }
    while (m.out.size() - m.out_pos < output_chunk) {
        const std::uint8_t* data = nullptr;
        const auto n = nghttp2_session_mem_send(m.session, &data);
        if (n < 0) {
            m.last_lib_error = nghttp2_strerror(static_cast<int>(n));
            m.fail_connection(failure{errc::upstream_protocol, m.protocol_detail()});
            break;
        }
        if (n == 0) {
            break;
        }
        m.out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
    return {reinterpret_cast<const std::uint8_t*>(m.out.data()) + m.out_pos, m.out.size() - m.out_pos};
}

void h2_client_codec::consumed_output(std::size_t n) noexcept {
    auto& m = *impl_;
    m.out_pos = std::min(m.out.size(), m.out_pos + n);
}

bool h2_client_codec::wants_read() const noexcept {
    const auto& m = *impl_;
    return !m.lost && !m.conn_error && nghttp2_session_want_read(m.session) != 0;
}

bool h2_client_codec::finished() const noexcept {
    return !wants_read() && !wants_write();
}

void h2_client_codec::connection_lost(std::string_view detail) {
    auto& m = *impl_;
    m.lost = true;
    m.out.clear();
    m.out_pos = 0;
    if (!m.conn_error) {
        m.conn_error = failure{errc::upstream_unreachable, std::string(detail)};
    }
    m.fail_all(*m.conn_error);
}

boost::system::result<std::int32_t, failure> h2_client_codec::submit_request(const h2_request& r) {
    auto& m = *impl_;
    if (!can_submit()) {
        return failure{errc::upstream_unreachable, m.conn_error    ? m.conn_error->detail
                                                   : m.goaway_last ? "the upstream HTTP/2 connection is going away"
                                                                   : "no HTTP/2 stream free on this connection"};
    }
    const auto named = connection_tokens_of(r.fields);
    std::vector<std::string> names;  // lower-cased, kept alive for the nv array
    names.reserve(r.fields.size());
    std::vector<std::pair<std::size_t, std::string_view>> kept;  // (index into names, value)
    std::string_view authority = r.authority;
    for (const auto& f : r.fields) {
        auto name = lower_ascii(f.name);
        if (name == "host") {
            if (authority.empty()) {
                authority = trim_ows(f.value);
            }
            continue;
        }
        if (name == "te") {
            if (lower_ascii(trim_ows(f.value)) != "trailers") {
                continue;
            }
        } else if (is_hop_by_hop(name) || name == "content-length" || name == "expect" ||
                   std::find(named.begin(), named.end(), name) != named.end()) {
            continue;
        }
        const auto* n = reinterpret_cast<const std::uint8_t*>(name.data());
        const auto* v = reinterpret_cast<const std::uint8_t*>(f.value.data());
        if (name.empty() || name.front() == ':' || nghttp2_check_header_name(n, name.size()) == 0 ||
            nghttp2_check_header_value(v, f.value.size()) == 0) {
            return failure{errc::bad_request, "a request header field is not valid in HTTP/2"};
        }
        names.push_back(std::move(name));
        // RFC 9113 §8.2.2: TE may carry only "trailers", exactly.
        kept.emplace_back(names.size() - 1, names.back() == "te" ? std::string_view("trailers") : f.value);
    }
    if (authority.empty() || r.method.empty() || r.scheme.empty() || r.path.empty()) {
        return failure{errc::bad_request, "an HTTP/2 request needs a method, scheme, authority and path"};
    }
    std::vector<nghttp2_nv> nva;
    nva.reserve(4 + kept.size());
    nva.push_back(make_nv(":method", r.method, NGHTTP2_NV_FLAG_NONE));
    nva.push_back(make_nv(":scheme", r.scheme, NGHTTP2_NV_FLAG_NONE));
    nva.push_back(make_nv(":authority", authority, NGHTTP2_NV_FLAG_NONE));
    nva.push_back(make_nv(":path", r.path, NGHTTP2_NV_FLAG_NONE));
    for (const auto& [i, value] : kept) {
        const auto& name = names[i];
        const bool secret = name == "authorization" || name == "cookie";
        nva.push_back(make_nv(name, value, secret ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE));
    }
    const auto id = nghttp2_submit_request(m.session, nullptr, nva.data(), nva.size(), nullptr, nullptr);
    if (id < 0) {
        return failure{errc::upstream_unreachable,
                       std::string("cannot open an HTTP/2 stream: ") + nghttp2_strerror(id)};
    }
    m.streams[id] = impl::stream_state{};
    ++m.open;
    return id;
}

std::optional<h2_event> h2_client_codec::next_event(std::int32_t stream) {
    auto* s = impl_->find(stream);
    if (s == nullptr || s->forgotten || s->events.empty()) {
        return std::nullopt;
    }
    auto ev = std::move(s->events.front());
    s->events.pop_front();
    return ev;
}

std::vector<std::int32_t> h2_client_codec::take_ready_streams() {
    auto& m = *impl_;
    std::vector<std::int32_t> out;
    out.reserve(m.ready.size());
    for (const auto id : m.ready) {
        if (auto* s = m.find(id); s != nullptr && s->ready) {
            s->ready = false;
            if (!s->forgotten) {
                out.push_back(id);
            }
        }
    }
    m.ready.clear();
    return out;
}

void h2_client_codec::consume(std::int32_t stream, std::size_t n) {
    auto& m = *impl_;
    auto* s = m.find(stream);
    if (s == nullptr || m.lost) {
        return;
    }
    n = std::min(n, s->received - s->consumed);
    if (n == 0) {
        return;
    }
    s->consumed += n;
    nghttp2_session_consume(m.session, stream, n);
}

void h2_client_codec::cancel(std::int32_t stream) {
    auto& m = *impl_;
    auto it = m.streams.find(stream);
    if (it == m.streams.end() || it->second.forgotten) {
        return;
    }
    auto& s = it->second;
    const auto unconsumed = s.received - s.consumed;
    if (unconsumed > 0 && !m.lost) {
        // The stream's and the connection's credit come back (the stream's only matters while it is open).
        nghttp2_session_consume(m.session, stream, unconsumed);
    }
    s.consumed = s.received;
    s.events.clear();
    if (s.closed || m.lost) {
        if (!s.closed) {
            m.open -= m.open > 0 ? 1 : 0;
        }
        m.streams.erase(it);
        return;
    }
    s.forgotten = true;
    if (!s.terminal || nghttp2_session_get_stream_remote_close(m.session, stream) == 0) {
        nghttp2_submit_rst_stream(m.session, NGHTTP2_FLAG_NONE, stream, NGHTTP2_CANCEL);
    }
}

std::size_t h2_client_codec::unconsumed_bytes(std::int32_t stream) const noexcept {
    auto it = impl_->streams.find(stream);
    return it == impl_->streams.end() ? 0 : it->second.received - it->second.consumed;
}

std::size_t h2_client_codec::unconsumed_bytes() const noexcept {
    std::size_t total = 0;
    for (const auto& [id, s] : impl_->streams) {
        total += s.received - s.consumed;
    }
    return total;
}

bool h2_client_codec::can_submit() const noexcept {
    const auto& m = *impl_;
    return !m.lost && !m.conn_error && !m.goaway_last && !m.shut &&
           nghttp2_session_check_request_allowed(m.session) != 0 && m.open < peer_max_concurrent_streams();
}

std::size_t h2_client_codec::open_streams() const noexcept {
    return impl_->open;
}

std::uint32_t h2_client_codec::peer_max_concurrent_streams() const noexcept {
    return nghttp2_session_get_remote_settings(impl_->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

bool h2_client_codec::goaway_received() const noexcept {
    return impl_->goaway_last.has_value();
}

std::optional<std::int32_t> h2_client_codec::goaway_last_stream_id() const noexcept {
    return impl_->goaway_last;
}

const std::optional<failure>& h2_client_codec::connection_error() const noexcept {
    return impl_->conn_error;
}

std::uint64_t h2_client_codec::submit_ping() {
    auto& m = *impl_;
    const auto seq = ++m.ping_sent;
    std::array<std::uint8_t, 8> opaque{};
    for (std::size_t i = 0; i < opaque.size(); ++i) {
        opaque[i] = static_cast<std::uint8_t>(seq >> (8 * (7 - i)));
    }
    nghttp2_submit_ping(m.session, NGHTTP2_FLAG_NONE, opaque.data());
    return seq;
}

std::uint64_t h2_client_codec::ping_acked() const noexcept {
    return impl_->ping_acked;
}

void h2_client_codec::shutdown() {
    auto& m = *impl_;
    if (m.shut || m.lost) {
        return;
    }
    m.shut = true;
    // last_stream_id 0: we accept no server-initiated stream; ours finish.
    nghttp2_submit_goaway(m.session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
}

std::size_t h2_client_codec::buffered_output() const noexcept {
    return impl_->out.size() - impl_->out_pos;
}

}  // namespace acp::proxy
