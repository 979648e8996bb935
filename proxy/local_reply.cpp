#include "proxy/local_reply.hpp"

#include <boost/beast/http/write.hpp>

namespace acp::proxy {
namespace {

net::awaitable<error_code> write_json(timed_socket& s, http::status status, std::string body, bool allow,
                                      bool keep_alive, const reply_options& o) {
    http::response<http::string_body> res{status, o.version};
    res.set(http::field::content_type, "application/json");
    res.set("Docker-Distribution-API-Version", "registry/2.0");
    if (!o.request_id.empty()) {
        res.set("X-Request-Id", o.request_id);
    }
    if (allow) {
        res.set(http::field::allow, "GET, HEAD");
    }
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
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
    return write_json(s, r.status, r.body, r.allow_header, o.keep_alive && !r.close, o);
}

net::awaitable<error_code> write_ping(timed_socket& s, const reply_options& o) {
    return write_json(s, http::status::ok, "{}", false, o.keep_alive, o);
}

}  // namespace acp::proxy
