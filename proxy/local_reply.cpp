#include "proxy/local_reply.hpp"

#include <boost/beast/http/write.hpp>

namespace acp::proxy {
namespace {

net::awaitable<error_code> write_json(beast::tcp_stream& s, http::status status, std::string body, bool allow,
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
    s.expires_after(o.timeout);
    if (o.head) {
        http::response_serializer<http::string_body> sr{res};
        auto [ec, n] = co_await http::async_write_header(s, sr, use_nothrow);
        co_return ec;
    }
    auto [ec, n] = co_await http::async_write(s, res, use_nothrow);
    co_return ec;
}

}  // namespace

net::awaitable<error_code> write_local_reply(beast::tcp_stream& s, const local_reply& r, const reply_options& o) {
    return write_json(s, r.status, r.body, r.allow_header, o.keep_alive && !r.close, o);
}

net::awaitable<error_code> write_ping(beast::tcp_stream& s, const reply_options& o) {
    return write_json(s, http::status::ok, "{}", false, o.keep_alive, o);
}

}  // namespace acp::proxy
