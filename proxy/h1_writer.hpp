// The HTTP/1.1 response_writer: the answer to one request on a downstream
// HTTP/1.1 connection, plain (tcp::socket) or TLS (ssl_stream). Keep-alive as
// HTTP/1.1 wants it: a body of unknown length goes chunked (HTTP/1.0: until
// the close), a drain or a local reply's `close` ends the connection after
// the response, a relay cut short closes it short of its length.
//
// Owns: the response head being written and its serializer. Thread affinity:
// the session's io_context thread. Every write is bounded by `idle` through
// the connection's lazy deadline (beast::error::timeout when it passed).
#pragma once

#include "config/config.hpp"
#include "proxy/deadline.hpp"
#include "proxy/local_reply.hpp"
#include "proxy/response_writer.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/http/write.hpp>

#include <optional>
#include <string_view>

namespace acp::proxy {

template <class Stream>
class h1_response_writer final : public response_writer {
public:
    /// `keep_alive`: the client asked for it and the proxy may keep it;
    /// `draining` is read at each response head (a drain that began meanwhile closes).
    h1_response_writer(Stream& stream, lazy_deadline& deadline, unsigned version, bool keep_alive, const bool& draining,
                       config::duration idle)
        : stream_(stream),
          deadline_(deadline),
          version_(version),
          keep_alive_(keep_alive),
          draining_(draining),
          idle_(idle) {}

    net::awaitable<error_code> write_local(const local_reply& r, bool head, std::string_view request_id) override {
        keep_alive_ = keep_alive_ && !draining_ && !r.close;
        auto res = make_local_response(r, version_, keep_alive_, request_id);
        deadline_.expires_after(idle_);
        error_code ec;
        if (head) {
            http::response_serializer<http::string_body> sr{res};
            auto [hec, n] = co_await http::async_write_header(stream_, sr, use_nothrow);
            ec = hec;
        } else {
            auto [wec, n] = co_await http::async_write(stream_, res, use_nothrow);
            ec = wec;
        }
        co_return done(ec);
    }

    net::awaitable<error_code> write_head(http::response_header<>& head, body_shape shape,
                                          net::const_buffer first) override {
        res_.base() = std::move(head);
        res_.version(version_);
        keep_alive_ = keep_alive_ && !draining_;
        if (shape.none) {
            mode_ = body_mode::none;
        } else if (shape.length) {
            mode_ = body_mode::raw;
            res_.content_length(*shape.length);
        } else if (version_ >= 11) {
            mode_ = body_mode::chunked;
            res_.chunked(true);
        } else {
            mode_ = body_mode::raw;
            keep_alive_ = false;  // HTTP/1.0 client: the end of the body is the end of the connection
        }
        res_.keep_alive(keep_alive_);
        sr_.emplace(res_);
        deadline_.expires_after(idle_);
        if (mode_ == body_mode::none || mode_ == body_mode::chunked || first.size() == 0) {
            auto [ec, n] = co_await http::async_write_header(stream_, *sr_, use_nothrow);
            if (!ec && mode_ == body_mode::chunked && first.size() != 0) {
                co_return co_await write_body(first);
            }
            if (!ec && mode_ == body_mode::none) {
                complete_ = true;
            }
            co_return done(ec);
        }
        // A known-length body: its first bytes go out in the same write as the head.
        auto& body = res_.body();
        body.data = const_cast<void*>(first.data());  // buffer_body is read-only while serializing
        body.size = first.size();
        body.more = true;
        auto [ec, n] = co_await http::async_write(stream_, *sr_, use_nothrow);
        if (ec == http::error::need_buffer) {
            ec = {};  // the serializer wrote all it had and waits for more body
        }
        co_return done(ec);
    }

    net::awaitable<error_code> write_body(net::const_buffer bytes) override {
        deadline_.expires_after(idle_);
        if (mode_ == body_mode::chunked) {
            auto& body = res_.body();
            body.data = const_cast<void*>(bytes.data());
            body.size = bytes.size();
            body.more = true;
            auto [ec, n] = co_await http::async_write(stream_, *sr_, use_nothrow);
            if (ec == http::error::need_buffer) {
                ec = {};
            }
            co_return done(ec);
        }
        auto [ec, n] = co_await net::async_write(stream_, bytes, use_nothrow);
        co_return done(ec);
    }

    net::awaitable<error_code> finish() override {
        if (mode_ == body_mode::chunked && sr_ && !sr_->is_done()) {
            auto& body = res_.body();
            body.data = nullptr;
            body.size = 0;
            body.more = false;
            deadline_.expires_after(idle_);
            auto [ec, n] = co_await http::async_write(stream_, *sr_, use_nothrow);
            if (auto e = done(ec)) {
                co_return e;
            }
        }
        complete_ = true;
        co_return error_code{};
    }

    void abort() noexcept override {
        keep_alive_ = false;
        aborted_ = true;
    }

    [[nodiscard]] bool keeps_connection() const noexcept override {
        return keep_alive_ && !failed_ && !aborted_ && (complete_ || !sr_);
    }

private:
    enum class body_mode { none, raw, chunked };

    error_code done(const error_code& ec) {
        deadline_.expires_never();
        auto e = deadline_.check(ec);
        if (e) {
            failed_ = true;
        }
        return e;
    }

    Stream& stream_;
    lazy_deadline& deadline_;
    unsigned version_;
    bool keep_alive_;
    const bool& draining_;
    config::duration idle_;
    http::response<http::buffer_body> res_;
    std::optional<http::response_serializer<http::buffer_body>> sr_;
    body_mode mode_ = body_mode::none;
    bool complete_ = false;
    bool failed_ = false;
    bool aborted_ = false;
};

}  // namespace acp::proxy
