#include "proxy/h2_server_codec.hpp"

#include "proxy/header_policy.hpp"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_map>

namespace acp::proxy {
namespace {

// Output gathered per next_output() call: a few TLS records' worth.
constexpr std::size_t output_chunk = 64 * 1024;

// RFC 9113 §6.5.2: a field's size is its name and value plus 32.
constexpr std::size_t field_overhead = 32;

std::string_view as_view(const std::uint8_t* p, std::size_t n) {
    return {reinterpret_cast<const char*>(p), n};
}

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
    // nghttp2_submit_response copies names and values; the casts only satisfy its C signature.
    return nghttp2_nv{const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(name.data())),
                      const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(value.data())), name.size(),
                      value.size(), NGHTTP2_NV_FLAG_NONE};
}

// nghttp2's message for the log: what precedes any echo of a received field,
// printable ASCII only, bounded (the client chose those bytes).
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

}  // namespace

bool starts_like_h2_preface(std::string_view bytes) noexcept {
    const auto n = std::min(bytes.size(), h2_preface.size());
    return bytes.substr(0, n) == h2_preface.substr(0, n);
}

struct h2_server_codec::impl {
    struct stream_state {
        h2_request_head head;
        std::size_t header_bytes = 0;  // of the request block, RFC 9113 §6.5.2 accounting
        std::size_t field_count = 0;
        std::string queue;  // body bytes not yet framed, from queue_pos
        std::size_t queue_pos = 0;
        bool delivered = false;      // the request event was queued: counts as active until released
        bool released = false;       // the caller's handler stopped
        bool responded = false;      // submit_response happened
        bool has_body = false;       // ... with a body
        bool body_ended = false;     // END_STREAM is scheduled (end_body, or a bodiless response)
        bool deferred = false;       // the data provider returned NGHTTP2_ERR_DEFERRED
        bool response_done = false;  // the frame with END_STREAM went out
        bool closed = false;         // nghttp2 closed the stream
        bool reset = false;          // reset by either side: no more response bytes
        bool above_bound = false;    // queued more than the bound since the last drain notice

        [[nodiscard]] std::size_t queued() const noexcept { return queue.size() - queue_pos; }
    };

    nghttp2_session* session = nullptr;
    h2_server_settings settings;
    std::unordered_map<std::int32_t, stream_state> streams;
    std::vector<h2_server_event> events;
    std::vector<std::int32_t> drained;
    std::string out;  // handed to the writer by next_output(): never touched while it writes
    std::size_t out_pos = 0;
    std::string pending;  // framed by receive() while the writer may be writing `out`
    std::size_t active = 0;
    std::optional<failure> conn_error;
    bool shut = false;
    std::uint64_t premature = 0;
    std::uint64_t completed = 0;
    // The rapid-reset bucket.
    double reset_tokens = 0;
    clock::time_point reset_refilled{};
    clock::time_point now{};
    std::string last_lib_error;

    ~impl() {
        if (session != nullptr) {
            nghttp2_session_del(session);
        }
    }

    static impl& self(void* p) { return *static_cast<impl*>(p); }

    stream_state* find(std::int32_t id) {
        auto it = streams.find(id);
        return it == streams.end() ? nullptr : &it->second;
    }

    void fail_connection(failure f, std::uint32_t code) {
        if (conn_error) {
            return;
        }
        conn_error = std::move(f);
        nghttp2_session_terminate_session(session, code);
    }

    std::string protocol_detail() const {
        return last_lib_error.empty() ? std::string("the client broke the HTTP/2 protocol")
                                      : "the client broke the HTTP/2 protocol: " + last_lib_error;
    }

    void notify_drained(std::int32_t id) {
        if (std::find(drained.begin(), drained.end(), id) == drained.end()) {
            drained.push_back(id);
        }
    }

    // A premature reset: one token, or the connection when the bucket is empty.
    void take_reset_token() {
        ++premature;
        const auto elapsed = std::chrono::duration<double>(now - reset_refilled).count();
        reset_refilled = now;
        if (elapsed > 0) {
            reset_tokens = std::min(static_cast<double>(settings.reset_burst),
                                    reset_tokens + elapsed * settings.reset_refill_per_second);
        }
        if (reset_tokens < 1) {
            fail_connection(failure{errc::malformed_http, "the client reset HTTP/2 streams too fast (rapid reset)"},
                            NGHTTP2_ENHANCE_YOUR_CALM);
            return;
        }
        reset_tokens -= 1;
    }

    void forget_if_done(std::int32_t id) {
        auto it = streams.find(id);
        if (it != streams.end() && it->second.closed && (it->second.released || !it->second.delivered)) {
            streams.erase(it);
        }
    }

    static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            self(user_data).streams[frame->hd.stream_id] = stream_state{};
        }
        return 0;
    }

    static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name, std::size_t namelen,
                         const std::uint8_t* value, std::size_t valuelen, std::uint8_t, void* user_data) {
        auto& me = self(user_data);
        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
            return 0;  // trailers: ignored (a request body is refused anyway)
        }
        auto* s = me.find(frame->hd.stream_id);
        if (s == nullptr) {
            return 0;
        }
        s->header_bytes += namelen + valuelen + field_overhead;
        ++s->field_count;
        if (s->head.too_large || s->header_bytes > me.settings.max_header_list ||
            s->field_count > me.settings.max_header_fields) {
            s->head.too_large = true;  // stop storing: what the client sends beyond the limit costs us nothing
            return 0;
        }
        const auto n = as_view(name, namelen);
        const auto v = as_view(value, valuelen);
        if (n == ":method") {
            s->head.method = v;
        } else if (n == ":scheme") {
            s->head.scheme = v;
        } else if (n == ":authority") {
            s->head.authority = v;
        } else if (n == ":path") {
            s->head.path = v;
        } else if (!n.empty() && n.front() != ':') {
            s->head.fields.emplace_back(n, v);
        }
        return 0;
    }

    void on_request(std::int32_t id, stream_state& s, bool end_stream) {
        s.head.has_body = !end_stream;
        if (s.head.authority.empty()) {
            for (const auto& [n, v] : s.head.fields) {
                if (n == "host") {
                    s.head.authority = trim_ows(v);
                    break;
                }
            }
        }
        if (active >= settings.max_concurrent_streams) {
            // nghttp2 forgot the streams the client reset; their handlers may still be running.
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
            s.reset = true;
            return;
        }
        s.delivered = true;
        ++active;
        h2_server_event ev;
        ev.type = h2_server_event::kind::request;
        ev.stream = id;
        ev.head = std::move(s.head);
        s.head = {};
        events.push_back(std::move(ev));
    }

    static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        auto& me = self(user_data);
        const auto id = frame->hd.stream_id;
        if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            if (auto* s = me.find(id); s != nullptr) {
                me.on_request(id, *s, (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
            }
        } else if (frame->hd.type == NGHTTP2_RST_STREAM) {
            auto* s = me.find(id);
            if (s != nullptr && s->delivered && !s->response_done) {
                me.take_reset_token();
            }
        }
        return 0;
    }

    static int on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t code, void* user_data) {
        auto& me = self(user_data);
        auto* s = me.find(id);
        if (s == nullptr) {
            return 0;
        }
        s->closed = true;
        s->queue.clear();
        s->queue_pos = 0;
        if (s->delivered && !s->released) {
            if (!s->response_done && !s->reset) {
                h2_server_event ev;
                ev.type = h2_server_event::kind::reset;
                ev.stream = id;
                ev.h2_error = code;
                me.events.push_back(std::move(ev));
            }
            s->reset = s->reset || !s->response_done;
            me.notify_drained(id);  // a writer waiting for room wakes and finds the stream gone
        }
        me.forget_if_done(id);
        return 0;
    }

    static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
        auto& me = self(user_data);
        const auto type = frame->hd.type;
        if ((type == NGHTTP2_HEADERS || type == NGHTTP2_DATA) && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
            if (auto* s = me.find(frame->hd.stream_id); s != nullptr && !s->response_done) {
                s->response_done = true;
                ++me.completed;
            }
        } else if (type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR && !me.conn_error) {
            // nghttp2 found a connection error in what the client sent.
            me.conn_error = failure{errc::malformed_http, me.protocol_detail()};
        }
        return 0;
    }

    static int on_error(nghttp2_session*, int, const char* msg, std::size_t len, void* user_data) {
        self(user_data).last_lib_error = printable_reason({msg, len});
        return 0;
    }

    static ssize_t read_body(nghttp2_session*, std::int32_t id, std::uint8_t* buf, std::size_t length,
                             std::uint32_t* data_flags, nghttp2_data_source*, void* user_data) {
        auto& me = self(user_data);
        auto* s = me.find(id);
        if (s == nullptr || s->reset) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
        }
        const auto n = std::min(length, s->queued());
        if (n == 0 && !s->body_ended) {
            s->deferred = true;
            return NGHTTP2_ERR_DEFERRED;
        }
        std::memcpy(buf, s->queue.data() + s->queue_pos, n);
        s->queue_pos += n;
        if (s->queue_pos == s->queue.size()) {
            s->queue.clear();
            s->queue_pos = 0;
        } else if (s->queue_pos > s->queue.size() / 2) {
            s->queue.erase(0, s->queue_pos);
            s->queue_pos = 0;
        }
        if (s->body_ended && s->queued() == 0) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        }
        if (s->above_bound) {
            // Every take counts as progress for a writer waiting on this stream
            // (its idle timeout runs from the last one); the wait ends at the bound.
            s->above_bound = s->queued() > me.settings.stream_queue_bound;
            me.notify_drained(id);
        }
        return static_cast<ssize_t>(n);
    }

    // Renders frames into `into` until it holds about one chunk.
    void fill(std::string& into, std::size_t already) {
        while (into.size() - already < output_chunk) {
            const std::uint8_t* data = nullptr;
            const auto n = nghttp2_session_mem_send(session, &data);
            if (n < 0) {
                last_lib_error = nghttp2_strerror(static_cast<int>(n));
                if (!conn_error) {
                    conn_error = failure{errc::malformed_http, protocol_detail()};
                }
                break;
            }
            if (n == 0) {
                break;
            }
            into.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
        }
    }

    // The writer's bytes: what it was handed and did not write yet, then
    // what receive() framed meanwhile, then more.
    void fill_output() {
        if (out_pos == out.size()) {
            out.clear();
            out_pos = 0;
        }
        out += pending;
        pending.clear();
        fill(out, out_pos);
    }

    void resume(std::int32_t id, stream_state& s) {
        if (s.deferred) {
            s.deferred = false;
            nghttp2_session_resume_data(session, id);
        }
    }
};

h2_server_codec::h2_server_codec(const h2_server_settings& s) : impl_(std::make_unique<impl>()) {
    auto& m = *impl_;
    m.settings = s;
    m.reset_tokens = s.reset_burst;
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &impl::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &impl::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &impl::on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &impl::on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &impl::on_frame_send);
    nghttp2_session_callbacks_set_error_callback2(cbs, &impl::on_error);
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    // A request body is refused (400) and never read: nghttp2 returns its window credit itself.
    nghttp2_option_set_max_reserved_remote_streams(opt, 0);
    nghttp2_session_server_new2(&m.session, cbs, impl_.get(), opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);

    const std::array<nghttp2_settings_entry, 2> iv{{
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s.max_concurrent_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, s.max_header_list},
    }};
    nghttp2_submit_settings(m.session, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
}

h2_server_codec::~h2_server_codec() = default;
h2_server_codec::h2_server_codec(h2_server_codec&&) noexcept = default;
h2_server_codec& h2_server_codec::operator=(h2_server_codec&&) noexcept = default;

boost::system::result<void, failure> h2_server_codec::receive(std::span<const std::uint8_t> bytes,
                                                              clock::time_point now) {
    auto& m = *impl_;
    if (m.conn_error) {
        return *m.conn_error;
    }
    if (m.reset_refilled == clock::time_point{}) {
        m.reset_refilled = now;
    }
    m.now = now;
    const auto rv = nghttp2_session_mem_recv(m.session, bytes.data(), bytes.size());
    if (rv < 0) {
        m.last_lib_error = nghttp2_strerror(static_cast<int>(rv));
        m.fail_connection(failure{errc::malformed_http, m.protocol_detail()}, NGHTTP2_PROTOCOL_ERROR);
        return *m.conn_error;
    }
    // A connection error nghttp2 found in these bytes shows only when its
    // GOAWAY is framed: frame what is pending now (aside, not into the bytes
    // the writer may be sending).
    if (m.pending.size() < output_chunk) {
        m.fill(m.pending, 0);
    }
    if (m.conn_error) {
        return *m.conn_error;
    }
    return {};
}

bool h2_server_codec::wants_write() const noexcept {
    const auto& m = *impl_;
    return m.out_pos < m.out.size() || !m.pending.empty() || nghttp2_session_want_write(m.session) != 0;
}

std::span<const std::uint8_t> h2_server_codec::next_output() {
    auto& m = *impl_;
    m.fill_output();
    return {reinterpret_cast<const std::uint8_t*>(m.out.data()) + m.out_pos, m.out.size() - m.out_pos};
}

void h2_server_codec::consumed_output(std::size_t n) noexcept {
    auto& m = *impl_;
    m.out_pos = std::min(m.out.size(), m.out_pos + n);
}

bool h2_server_codec::wants_read() const noexcept {
    const auto& m = *impl_;
    return !m.conn_error && nghttp2_session_want_read(m.session) != 0;
}

bool h2_server_codec::finished() const noexcept {
    return !wants_read() && !wants_write();
}

std::vector<h2_server_event> h2_server_codec::take_events() {
    return std::exchange(impl_->events, {});
}

std::vector<std::int32_t> h2_server_codec::take_drained_streams() {
    return std::exchange(impl_->drained, {});
}

boost::system::result<void, failure> h2_server_codec::submit_response(std::int32_t stream, unsigned status,
                                                                      std::span<const h2_response_field> fields,
                                                                      bool has_body) {
    auto& m = *impl_;
    auto* s = m.find(stream);
    if (s == nullptr || !s->delivered || s->released || s->responded || s->reset || s->closed || m.conn_error) {
        return failure{errc::bad_request, "the HTTP/2 stream cannot take a response"};
    }
    if (status < 200 || status > 999) {
        return failure{errc::bad_request, "not a final HTTP status"};
    }
    const auto named = connection_tokens_of(fields);
    std::vector<std::string> names;  // lower-cased, kept alive for the nv array
    names.reserve(fields.size());
    std::vector<std::pair<std::size_t, std::string_view>> kept;
    for (const auto& f : fields) {
        auto name = lower_ascii(f.name);
        if (is_hop_by_hop(name) || std::find(named.begin(), named.end(), name) != named.end()) {
            continue;
        }
        const auto* n = reinterpret_cast<const std::uint8_t*>(name.data());
        const auto* v = reinterpret_cast<const std::uint8_t*>(f.value.data());
        if (name.empty() || name.front() == ':' || nghttp2_check_header_name(n, name.size()) == 0 ||
            nghttp2_check_header_value(v, f.value.size()) == 0) {
            continue;  // an upstream's field HTTP/2 cannot carry
        }
        names.push_back(std::move(name));
        kept.emplace_back(names.size() - 1, f.value);
    }
    const auto status_text = std::to_string(status);
    std::vector<nghttp2_nv> nva;
    nva.reserve(1 + kept.size());
    nva.push_back(make_nv(":status", status_text));
    for (const auto& [i, value] : kept) {
        nva.push_back(make_nv(names[i], value));
    }
    nghttp2_data_provider provider{};
    provider.read_callback = &impl::read_body;
    const auto rv = nghttp2_submit_response(m.session, stream, nva.data(), nva.size(), has_body ? &provider : nullptr);
    if (rv != 0) {
        return failure{errc::bad_request, std::string("cannot submit the HTTP/2 response: ") + nghttp2_strerror(rv)};
    }
    s->responded = true;
    s->has_body = has_body;
    s->body_ended = !has_body;
    return {};
}

bool h2_server_codec::push_body(std::int32_t stream, std::span<const std::uint8_t> bytes) {
    auto& m = *impl_;
    auto* s = m.find(stream);
    if (s == nullptr || !s->responded || !s->has_body || s->body_ended || s->reset || s->closed || m.conn_error) {
        return false;
    }
    if (bytes.empty()) {
        return true;
    }
    s->queue.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (s->queued() > m.settings.stream_queue_bound) {
        s->above_bound = true;
    }
    m.resume(stream, *s);
    return true;
}

bool h2_server_codec::end_body(std::int32_t stream) {
    auto& m = *impl_;
    auto* s = m.find(stream);
    if (s == nullptr || !s->responded || s->reset || s->closed || m.conn_error) {
        return false;
    }
    s->body_ended = true;
    m.resume(stream, *s);
    return true;
}

std::size_t h2_server_codec::queued_bytes(std::int32_t stream) const noexcept {
    auto it = impl_->streams.find(stream);
    return it == impl_->streams.end() ? 0 : it->second.queued();
}

bool h2_server_codec::writable(std::int32_t stream) const noexcept {
    const auto& m = *impl_;
    auto it = m.streams.find(stream);
    return it != m.streams.end() && !it->second.reset && !it->second.closed && !m.conn_error;
}

void h2_server_codec::reset_stream(std::int32_t stream, std::uint32_t code) {
    auto& m = *impl_;
    auto* s = m.find(stream);
    if (s == nullptr || s->closed || s->reset || s->response_done) {
        return;
    }
    s->reset = true;
    s->queue.clear();
    s->queue_pos = 0;
    nghttp2_submit_rst_stream(m.session, NGHTTP2_FLAG_NONE, stream, code);
    m.notify_drained(stream);
}

void h2_server_codec::release(std::int32_t stream) {
    auto& m = *impl_;
    auto* s = m.find(stream);
    if (s == nullptr || !s->delivered || s->released) {
        return;
    }
    s->released = true;
    m.active -= m.active > 0 ? 1 : 0;
    if (!s->closed && !s->reset && !s->body_ended) {
        // The handler stopped without completing its response.
        reset_stream(stream, NGHTTP2_INTERNAL_ERROR);
    }
    m.forget_if_done(stream);
}

void h2_server_codec::shutdown() {
    auto& m = *impl_;
    if (m.shut || m.conn_error) {
        return;
    }
    m.shut = true;
    nghttp2_submit_goaway(m.session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(m.session),
                          NGHTTP2_NO_ERROR, nullptr, 0);
}

std::size_t h2_server_codec::active_streams() const noexcept {
    return impl_->active;
}

std::uint64_t h2_server_codec::premature_resets() const noexcept {
    return impl_->premature;
}

std::uint64_t h2_server_codec::completed_responses() const noexcept {
    return impl_->completed;
}

const std::optional<failure>& h2_server_codec::connection_error() const noexcept {
    return impl_->conn_error;
}

std::size_t h2_server_codec::buffered_output() const noexcept {
    return impl_->out.size() - impl_->out_pos + impl_->pending.size();
}

std::size_t h2_server_codec::queued_bytes() const noexcept {
    std::size_t total = 0;
    for (const auto& [id, s] : impl_->streams) {
        total += s.queued();
    }
    return total;
}

}  // namespace acp::proxy
