// Writing the replies the proxy makes itself (errors and the /v2/ ping) to a
// downstream connection.
//
// Owns: nothing; coroutines complete on the stream's executor and fail with
// beast::error::timeout when the client does not read within `timeout`.
#pragma once

#include "config/config.hpp"
#include "proxy/deadline.hpp"
#include "proxy/error.hpp"
#include "proxy/net.hpp"

#include <string_view>

namespace acp::proxy {

struct reply_options {
    unsigned version = 11;
    bool keep_alive = true;
    bool head = false;  // HEAD: the same head, no body
    std::string_view request_id;
    config::duration timeout = std::chrono::seconds(60);
};

/// The JSON response for a local reply (status, registry error body, 405's
/// Allow, X-Request-Id), with the version and keep-alive given: what every
/// response_writer sends for it, whatever the protocol.
http::response<http::string_body> make_local_response(const local_reply& r, unsigned version, bool keep_alive,
                                                      std::string_view request_id);

/// Writes `r` (a registry error JSON body). Keep-alive is off when r.close.
net::awaitable<error_code> write_local_reply(timed_socket& s, const local_reply& r, const reply_options& o);

}  // namespace acp::proxy
