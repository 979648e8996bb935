// The downstream request head under our limits: Beast's request parser set up
// as the session uses it, and every check the proxy makes on a complete head
// before it looks up a route (framing, method, body, request target).
//
// Owns: the head limits (one place for the session and the fuzz target) and
// pure decisions over a parsed head. No I/O; safe on any thread. The session
// (downstream_session.cpp) reads the head from its socket and asks
// check_request_head(); parse_request_head() does the same over a byte string,
// as the session would with those bytes buffered and then the peer's EOF.
#pragma once

#include "proxy/error.hpp"
#include "proxy/net.hpp"
#include "routing/distribution_path.hpp"

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace acp::proxy {

/// Request header block limit (431 above it).
inline constexpr std::uint32_t max_request_header_bytes = 16 * 1024;
/// Header fields per request (431 above it): containerd sends fewer than ten;
/// the byte limit alone would let 16 KiB of tiny fields through to the upstream.
inline constexpr std::size_t max_request_header_fields = 100;

/// The downstream parser: heads only, a body is never read.
using request_parser = http::request_parser<http::empty_body>;

/// Applies our limits to a fresh parser (before its first byte).
void apply_request_limits(request_parser& parser);

/// A head read error of the HTTP category → what we answer
/// (header_too_large, request_smuggling or malformed_http).
[[nodiscard]] errc from_read_error(const error_code& ec) noexcept;

/// What the proxy does with a complete head before the route lookup.
struct head_verdict {
    std::optional<errc> reject;                      // answer locally with this; nullopt: ping or a route lookup
    std::string detail;                              // for the reply's detail field and the log ("" when none)
    bool close = false;                              // an unread body follows: the connection cannot be reused
    std::optional<routing::distribution_path> path;  // set exactly when reject is nullopt
};

/// Field count, framing, method, body and request target checks, in the session's order.
[[nodiscard]] head_verdict check_request_head(const request_parser& parser);

/// Where parse_request_head() stopped.
enum class head_stage {
    empty,       // no byte: the session closes quietly (end of stream)
    incomplete,  // a partial head, then EOF: the session answers malformed_http
    read_error,  // the parser refused the bytes: `error` says what we answer
    checked,     // a complete head: `verdict` says what we do with it
};

struct head_result {
    head_stage stage = head_stage::empty;
    errc error = errc::malformed_http;  // stage read_error / incomplete
    std::size_t consumed = 0;           // bytes of the head (checked)
    head_verdict verdict;               // stage checked
};

/// Pure: the head at the start of `bytes` as the session would read it with
/// the same parser, limits and checks.
[[nodiscard]] head_result parse_request_head(std::string_view bytes);

}  // namespace acp::proxy
