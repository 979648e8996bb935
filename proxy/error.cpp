#include "proxy/error.hpp"

#include "tokens/auth_error.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <nlohmann/json.hpp>

namespace acp::proxy {
namespace {

// boost::system::error_category's destructor is not virtual by design (categories are singletons).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class category_impl final : public boost::system::error_category {
public:
    [[nodiscard]] const char* name() const noexcept override { return "acp.proxy"; }
    [[nodiscard]] std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
            case errc::name_unknown:
                return "registry not served by this proxy";
            case errc::out_of_scope:
                return "not in this node's pull scope";
            case errc::not_found:
                return "not a registry API path served by this proxy";
            case errc::method_not_allowed:
                return "method not allowed: the mirror is read-only";
            case errc::name_invalid:
                return "invalid repository name";
            case errc::tag_invalid:
                return "invalid tag";
            case errc::digest_invalid:
                return "invalid digest";
            case errc::bad_request:
                return "malformed request target";
            case errc::malformed_http:
                return "malformed HTTP request";
            case errc::body_not_allowed:
                return "a request body is not allowed on GET or HEAD";
            case errc::request_smuggling:
                return "ambiguous message framing";
            case errc::header_too_large:
                return "request header block too large";
            case errc::too_many_connections:
                return "too many connections";
            case errc::shutting_down:
                return "the proxy is shutting down";
            case errc::credentials_unavailable:
                return "registry credentials cannot be obtained";
            case errc::upstream_denied:
                return "the registry denied access";
            case errc::upstream_unreachable:
                return "the registry is unreachable";
            case errc::upstream_tls:
                return "TLS with the registry failed";
            case errc::upstream_protocol:
                return "the registry sent a malformed response";
            case errc::upstream_timeout:
                return "the registry timed out";
            case errc::redirect_invalid:
                return "unusable redirect from the registry";
        }
        return "unknown proxy error";
    }
};

#pragma GCC diagnostic pop

const category_impl the_category;

struct shape {
    http::status status;
    const char* code;
    bool close;
};

shape shape_of(errc e) noexcept {
    switch (e) {
        case errc::name_unknown:
            return {http::status::not_found, "NAME_UNKNOWN", false};
        case errc::not_found:
            return {http::status::not_found, "UNSUPPORTED", false};
        case errc::method_not_allowed:
            return {http::status::method_not_allowed, "UNSUPPORTED", false};
        case errc::name_invalid:
            return {http::status::bad_request, "NAME_INVALID", false};
        case errc::tag_invalid:
            return {http::status::bad_request, "TAG_INVALID", false};
        case errc::digest_invalid:
            return {http::status::bad_request, "DIGEST_INVALID", false};
        case errc::bad_request:
            return {http::status::bad_request, "UNSUPPORTED", false};
        case errc::malformed_http:
            return {http::status::bad_request, "UNSUPPORTED", true};
        case errc::body_not_allowed:
            return {http::status::bad_request, "UNSUPPORTED", true};
        case errc::request_smuggling:
            return {http::status::bad_request, "UNSUPPORTED", true};
        case errc::header_too_large:
            return {http::status::request_header_fields_too_large, "UNSUPPORTED", true};
        case errc::too_many_connections:
            return {http::status::service_unavailable, "TOOMANYREQUESTS", true};
        case errc::shutting_down:
            return {http::status::service_unavailable, "UNAVAILABLE", true};
        case errc::credentials_unavailable:
            return {http::status::service_unavailable, "UNAVAILABLE", false};
        case errc::upstream_denied:
            return {http::status::forbidden, "DENIED", false};
        case errc::upstream_unreachable:
            return {http::status::bad_gateway, "UNAVAILABLE", false};
        case errc::upstream_tls:
            return {http::status::bad_gateway, "UNAVAILABLE", false};
        case errc::upstream_protocol:
            return {http::status::bad_gateway, "UNAVAILABLE", false};
        case errc::upstream_timeout:
            return {http::status::gateway_timeout, "UNAVAILABLE", false};
        case errc::redirect_invalid:
            return {http::status::bad_gateway, "UNAVAILABLE", false};
        case errc::out_of_scope:
            // 404, like an unknown repository: containerd then tries the next host (the origin).
            return {http::status::not_found, "NAME_UNKNOWN", false};
    }
    return {http::status::internal_server_error, "UNKNOWN", true};
}

std::string message_for(errc e, const reply_context& ctx) {
    const std::string registry = ctx.registry.empty() ? std::string("(none)") : std::string(ctx.registry);
    switch (e) {
        case errc::name_unknown:
            return ctx.registry.empty()
                       ? "no ns query parameter and no defaultRegistry configured: this proxy only serves "
                         "configured registries"
                       : "registry " + registry + " is not served by this proxy";
        case errc::upstream_denied:
            return "registry " + registry + " denied pull of repository " + std::string(ctx.repository) +
                   " (credentials: " + std::string(ctx.credentials.empty() ? "anonymous" : ctx.credentials) + ")";
        case errc::credentials_unavailable:
            return "credentials for registry " + registry + " cannot be obtained";
        case errc::out_of_scope:
            // The scope decision's reason names the rule (or the missing pod); the origin may still serve it.
            return "scope: " +
                   (ctx.detail.empty() ? std::string("not in this node's pull scope") : std::string(ctx.detail)) +
                   "; no credentials from this proxy (try the registry itself)";
        case errc::upstream_unreachable:
        case errc::upstream_tls:
        case errc::upstream_protocol:
        case errc::upstream_timeout:
        case errc::redirect_invalid:
            return the_category.message(static_cast<int>(e)) + ": " + registry;
        default:
            return the_category.message(static_cast<int>(e));
    }
}

// The token flow's failures in the proxy's terms; the message stays the token flow's own.
errc from_auth_error(tokens::auth_errc e) noexcept {
    switch (e) {
        case tokens::auth_errc::credentials_unavailable:
            return errc::credentials_unavailable;
        case tokens::auth_errc::realm_timeout:
            return errc::upstream_timeout;
        case tokens::auth_errc::realm_rejected_credentials:
            return errc::upstream_denied;
        case tokens::auth_errc::shutting_down:
            return errc::shutting_down;
        case tokens::auth_errc::realm_refused:
        case tokens::auth_errc::realm_unreachable:
        case tokens::auth_errc::realm_bad_response:
        case tokens::auth_errc::bad_challenge:
            break;
    }
    return errc::upstream_unreachable;
}

}  // namespace

const boost::system::error_category& proxy_category() noexcept {
    return the_category;
}

error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), the_category};
}

local_reply to_local_reply(const error_code& ec, const reply_context& ctx) {
    shape s{http::status::internal_server_error, "UNKNOWN", true};
    std::string message = "internal error";
    const bool ours = ec.category() == the_category;
    if (ours) {
        const auto e = static_cast<errc>(ec.value());
        s = shape_of(e);
        message = message_for(e, ctx);
    } else if (ec.category() == tokens::auth_category()) {
        s = shape_of(from_auth_error(static_cast<tokens::auth_errc>(ec.value())));
        message = ec.message() + " (registry " +
                  (ctx.registry.empty() ? std::string("(none)") : std::string(ctx.registry)) +
                  (ctx.repository.empty() ? std::string() : ", repository " + std::string(ctx.repository)) + ")";
    }
    nlohmann::json entry = {{"code", s.code}, {"message", message}};
    nlohmann::json detail = nlohmann::json::object();
    if (!ctx.registry.empty()) {
        detail["registry"] = ctx.registry;
    }
    if (!ctx.repository.empty()) {
        detail["repository"] = ctx.repository;
    }
    if (!ctx.detail.empty()) {
        detail["reason"] = ctx.detail;
    }
    if (!detail.empty()) {
        entry["detail"] = std::move(detail);
    }
    local_reply r;
    r.status = s.status;
    r.close = s.close;
    r.allow_header = ours && static_cast<errc>(ec.value()) == errc::method_not_allowed;
    // Replacement keeps hostile bytes (a reflected ns) from failing the dump.
    r.body = nlohmann::json{{"errors", nlohmann::json::array({entry})}}.dump(-1, ' ', false,
                                                                             nlohmann::json::error_handler_t::replace);
    return r;
}

errc from_path_error(routing::path_error e) noexcept {
    switch (e) {
        case routing::path_error::not_found:
            return errc::not_found;
        case routing::path_error::bad_target:
            return errc::bad_request;
        case routing::path_error::name_invalid:
            return errc::name_invalid;
        case routing::path_error::tag_invalid:
            return errc::tag_invalid;
        case routing::path_error::digest_invalid:
            return errc::digest_invalid;
        case routing::path_error::ns_invalid:
            return errc::name_unknown;  // names no configured registry: the same fast 404, never forwarded
        case routing::path_error::query_invalid:
            return errc::bad_request;
    }
    return errc::bad_request;
}

errc classify_upstream(const error_code& ec) noexcept {
    if (ec == beast::error::timeout || ec == net::error::timed_out) {
        return errc::upstream_timeout;
    }
    if (ec.category() == net::error::get_ssl_category() || ec.category() == net::ssl::error::get_stream_category()) {
        return errc::upstream_tls;
    }
    if (ec.category() == http::make_error_code(http::error::bad_version).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
        return errc::upstream_protocol;
    }
    if (ec.category() == the_category) {
        return static_cast<errc>(ec.value());
    }
    return errc::upstream_unreachable;
}

}  // namespace acp::proxy
