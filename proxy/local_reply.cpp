#include "proxy/local_reply.hpp"

#include <boost/beast/http/write.hpp>

namespace acp::proxy {

http::response<http::string_body> make_local_response(const local_reply& r, unsigned version, bool keep_alive,
                                                      std::string_view request_id) {
    http::response<http::string_body> res{r.status, version};
    res.set(http::field::content_type, "application/json");
    res.set("Docker-Distribution-API-Version", "registry/2.0");
    if (!request_id.empty()) {
        res.set("X-Request-Id", request_id);
    }
    if (r.allow_header) {
        res.set(http::field::allow, "GET, HEAD");
    }
    res.keep_alive(keep_alive);
    res.body() = r.body;
    res.prepare_payload();
    return res;
}

namespace {

net::awaitable<error_code> write_json(timed_socket& s, local_reply r, bool keep_alive, const reply_options& o) {
    auto res = make_local_response(r, o.version, keep_alive, o.request_id);
    s.deadline.expires_after(o.timeout);
    error_code ec;
    if (o.head) {
        http::response_serializer<http::string_body> sr{res};
        auto [hec, n] = co_await http::async_write_header(s.socket, sr, use_nothrow);
        ec = hec;
    } else {
        auto [wec, n] = co_await http::async_write(s.socket, res, use_nothrow);
        ec = wec;
    }
    s.deadline.expires_never();
    co_return s.deadline.check(ec);
}

}  // namespace

net::awaitable<error_code> write_local_reply(timed_socket& s, const local_reply& r, const reply_options& o) {
    return write_json(s, r, o.keep_alive && !r.close, o);
}

}  // namespace acp::proxy
