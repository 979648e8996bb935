#include "proxy/redirect_policy.hpp"

#include "routing/route_table.hpp"

#include <algorithm>

namespace acp::proxy {
namespace {

std::string to_lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

bool has_bad_bytes(std::string_view s) noexcept {
    return std::any_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u <= 0x20 || u >= 0x7f;
    });
}

std::string strip_fragment(std::string_view s) {
    return std::string(s.substr(0, s.find('#')));
}

}  // namespace

std::string http_url::authority() const {
    return routing::authority_of(config::endpoint_url{scheme, host, port, ""});
}

std::string http_url::str() const {
    return scheme + "://" + authority() + target;
}

bool is_redirect_status(unsigned status) noexcept {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::optional<http_url> parse_http_url(std::string_view text) {
    if (has_bad_bytes(text)) {
        return std::nullopt;
    }
    const auto sep = text.find("://");
    if (sep == std::string_view::npos) {
        return std::nullopt;
    }
    http_url u;
    u.scheme = to_lower(text.substr(0, sep));
    if (u.scheme != "http" && u.scheme != "https") {
        return std::nullopt;
    }
    auto rest = text.substr(sep + 3);
    const auto path_start = rest.find_first_of("/?#");
    const auto authority = rest.substr(0, path_start);
    if (authority.find('@') != std::string_view::npos) {
        return std::nullopt;  // userinfo would smuggle credentials to the target
    }
    auto hp = routing::split_host_port(authority);
    if (!hp) {
        return std::nullopt;
    }
    u.host = hp->host;
    u.port = hp->port.value_or(u.scheme == "https" ? 443 : 80);
    std::string target = path_start == std::string_view::npos ? std::string() : strip_fragment(rest.substr(path_start));
    if (target.empty() || target.front() != '/') {
        target.insert(0, "/");
    }
    u.target = std::move(target);
    return u;
}

std::optional<http_url> resolve_location(const http_url& base, std::string_view location) {
    if (location.empty() || has_bad_bytes(location)) {
        return std::nullopt;
    }
    if (location.find("://") != std::string_view::npos && location.find("://") < location.find_first_of("/?#")) {
        return parse_http_url(location);
    }
    if (location.substr(0, 2) == "//") {
        return parse_http_url(base.scheme + ":" + std::string(location));
    }
    if (location.find(':') != std::string_view::npos && location.find(':') < location.find_first_of("/?#")) {
        return std::nullopt;  // another scheme (ftp:, file:, javascript:)
    }
    http_url u = base;
    if (location.front() == '/') {
        u.target = strip_fragment(location);
    } else {
        const auto path = base.target.substr(0, base.target.find('?'));
        u.target = path.substr(0, path.rfind('/') + 1) + strip_fragment(location);
    }
    if (u.target.empty()) {
        u.target = "/";
    }
    return u;
}

bool same_origin(const http_url& a, const http_url& b) noexcept {
    return a.scheme == b.scheme && a.host == b.host && a.port == b.port;
}

std::optional<std::string> forbidden_redirect_address(const boost::asio::ip::address& a, bool allow_loopback) {
    namespace ip = boost::asio::ip;
    if (a.is_v6() && a.to_v6().is_v4_mapped()) {
        return forbidden_redirect_address(ip::make_address_v4(ip::v4_mapped, a.to_v6()), allow_loopback);
    }
    if (a.is_loopback()) {
        return allow_loopback ? std::nullopt : std::optional<std::string>("a loopback address");
    }
    if (a.is_v4()) {
        const auto v = a.to_v4().to_uint();
        if ((v >> 24) == 0) {
            return "an unspecified address";  // 0.0.0.0/8: connect() reaches this host
        }
        if ((v >> 16) == 0xA9FEu) {
            return "a link-local address";  // 169.254/16
        }
        if (v == 0x646464C8u) {
            return "the cloud metadata address";  // 100.100.100.200
        }
        if (a.is_multicast() || v == 0xFFFFFFFFu) {
            return "a multicast or broadcast address";
        }
        return std::nullopt;
    }
    const auto v6 = a.to_v6();
    if (v6.is_unspecified()) {
        return "an unspecified address";
    }
    if (v6.is_link_local()) {
        return "a link-local address";
    }
    if (v6.is_multicast()) {
        return "a multicast address";
    }
    return std::nullopt;
}

bool is_loopback_host(std::string_view host) noexcept {
    if (host == "localhost") {
        return true;
    }
    boost::system::error_code ec;
    const auto a = boost::asio::ip::make_address(host, ec);
    return !ec && a.is_loopback();
}

}  // namespace acp::proxy
