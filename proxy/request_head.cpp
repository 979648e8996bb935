#include "proxy/request_head.hpp"

#include <iterator>

namespace acp::proxy {
namespace {

// Framing that could be read two ways by two parsers (request smuggling):
// a repeated Content-Length, or Transfer-Encoding together with Content-Length.
bool ambiguous_framing(const http::request<http::empty_body>& req) {
    const auto lengths = req.count(http::field::content_length);
    return lengths > 1 || (lengths == 1 && req.count(http::field::transfer_encoding) != 0);
}

bool has_body(const request_parser& p, const http::request<http::empty_body>& req) {
    return p.chunked() || (p.content_length() && *p.content_length() > 0) ||
           req.count(http::field::transfer_encoding) != 0;
}

head_verdict reject(errc e, std::string detail = {}, bool close = false) {
    head_verdict v;
    v.reject = e;
    v.detail = std::move(detail);
    v.close = close;
    return v;
}

}  // namespace

void apply_request_limits(request_parser& parser) {
    parser.header_limit(max_request_header_bytes);
}

errc from_read_error(const error_code& ec) noexcept {
    if (ec == http::error::header_limit) {
        return errc::header_too_large;
    }
    if (ec == http::error::bad_content_length || ec == http::error::bad_transfer_encoding ||
        ec == http::error::multiple_content_length) {
        return errc::request_smuggling;
    }
    return errc::malformed_http;
}

head_verdict check_request_head(const request_parser& parser) {
    const auto& req = parser.get();
    if (static_cast<std::size_t>(std::distance(req.begin(), req.end())) > max_request_header_fields) {
        return reject(errc::header_too_large, "more than 100 header fields", true);
    }
    if (ambiguous_framing(req)) {
        return reject(errc::request_smuggling);
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        // The unread body would be taken for the next request.
        return reject(errc::method_not_allowed, {}, has_body(parser, req));
    }
    if (has_body(parser, req)) {
        return reject(errc::body_not_allowed);
    }
    auto path = routing::parse_target(req.target());
    if (!path) {
        return reject(from_path_error(path.error()), std::string(routing::to_string(path.error())));
    }
    head_verdict v;
    v.path = std::move(*path);
    return v;
}

head_result parse_request_head(std::string_view bytes) {
    head_result r;
    if (bytes.empty()) {
        return r;
    }
    request_parser parser;
    apply_request_limits(parser);
    error_code ec;
    // As http::read_header does with everything buffered: put what is left
    // (a head is parsed in one piece) until the head is done, then EOF if the
    // parser needs more.
    std::size_t used = 0;
    while (!parser.is_header_done()) {
        const auto n = parser.put(net::buffer(bytes.data() + used, bytes.size() - used), ec);
        used += n;
        if (ec == http::error::need_more || (!ec && n == 0)) {
            ec = {};
            parser.put_eof(ec);
            r.stage = head_stage::incomplete;
            r.error = from_read_error(ec ? ec : make_error_code(http::error::partial_message));
            return r;
        }
        if (ec) {
            r.stage = head_stage::read_error;
            r.error = from_read_error(ec);
            return r;
        }
    }
    r.consumed = used;
    r.stage = head_stage::checked;
    r.verdict = check_request_head(parser);
    return r;
}

}  // namespace acp::proxy
