// The project's data-path error enum and category, and the ONE function that
// turns an error into what the client sees (status + registry error JSON).
//
// Owns: errc, its error_category ("acp.proxy"), the error → local reply
// mapping, and the classification of transport errors into errc. Pure and
// thread-safe. Nothing here may put a secret into a message.
#pragma once

#include "proxy/net.hpp"
#include "routing/distribution_path.hpp"

#include <boost/system/error_code.hpp>

#include <string>
#include <string_view>
#include <type_traits>

namespace acp::proxy {

enum class errc {
    name_unknown = 1,         // ns absent (no defaultRegistry) or not a configured host: 404, never forwarded
    not_found,                // a path outside the read-only registry API we serve: 404
    method_not_allowed,       // anything but GET/HEAD: 405
    name_invalid,             // repository name breaks the grammar: 400
    tag_invalid,              // manifest reference is neither tag nor digest: 400
    digest_invalid,           // blob reference is not a digest: 400
    bad_request,              // malformed request target or query: 400
    malformed_http,           // the request is not valid HTTP/1.1: 400 and close
    body_not_allowed,         // a body on GET/HEAD: 400 and close
    request_smuggling,        // Content-Length with Transfer-Encoding, repeated Content-Length: 400 and close
    header_too_large,         // request header block over 16 KiB: 431 and close
    too_many_connections,     // limits.maxConnections reached: 503 and close
    shutting_down,            // draining after SIGTERM: 503 and close
    credentials_unavailable,  // the route's auth provider failed: 503
    upstream_denied,          // upstream 401 even with credentials: 403 DENIED (never 401)
    upstream_unreachable,     // DNS, connect refused/reset, closed before a response: 502
    upstream_tls,             // TLS handshake or certificate verification failed: 502
    upstream_protocol,        // the upstream answered something that is not HTTP/1.x: 502
    upstream_timeout,         // connect or response headers took too long: 504
    redirect_invalid,         // followRedirects: bad Location, non-http(s) scheme or over 5 hops: 502
    out_of_scope,             // scope: no in-scope pod on this node references (host, repository): 404, never forwarded
};

const boost::system::error_category& proxy_category() noexcept;
error_code make_error_code(errc e) noexcept;

/// A failure with the human detail that goes into the error body and the log.
struct failure {
    errc code = errc::upstream_unreachable;
    std::string detail;  // never a secret
};

/// What the mapping needs to name the request in a message.
struct reply_context {
    std::string_view registry;     // route host or the ns asked for ("" when none)
    std::string_view repository;   // "" when unknown
    std::string_view credentials;  // who authenticated upstream: provider name, "client" or "anonymous"
    std::string_view detail;       // free text for the `detail` field
};

/// A reply the proxy makes itself.
struct local_reply {
    http::status status = http::status::internal_server_error;
    std::string body;           // registry error JSON: {"errors":[{"code":..,"message":..,"detail":..}]}
    bool close = false;         // the connection must close after it
    bool allow_header = false;  // 405: send `Allow: GET, HEAD`
};

/// THE mapping: error → status, registry error code, message and whether to close.
/// Errors of other categories become 500 UNKNOWN.
local_reply to_local_reply(const error_code& ec, const reply_context& ctx);

/// Path grammar errors → errc.
errc from_path_error(routing::path_error e) noexcept;

/// A transport error on the upstream leg → errc (timeout → upstream_timeout,
/// SSL category → upstream_tls, HTTP parse errors → upstream_protocol, else unreachable).
errc classify_upstream(const error_code& ec) noexcept;

}  // namespace acp::proxy

namespace boost::system {
template <>
struct is_error_code_enum<acp::proxy::errc> : std::true_type {};
}  // namespace boost::system
