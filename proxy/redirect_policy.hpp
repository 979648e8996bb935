// Redirect rules for `followRedirects` and for passing redirects through:
// resolving `Location`, which statuses count, when `Authorization` must
// be dropped (whenever scheme, host or port change; RFC 9110 §15.4), and
// which addresses a followed redirect may never reach (SSRF guard).
//
// Owns: a minimal http(s) URL model and pure functions. No thread affinity.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace acp::proxy {

inline constexpr int max_redirect_hops = 5;

/// An absolute http(s) URL split for a request.
struct http_url {
    std::string scheme;  // "http" | "https"
    std::string host;    // lower-case; IPv6 without brackets
    std::uint16_t port = 0;
    std::string target;  // origin-form: path and query, starting with '/'; no fragment

    [[nodiscard]] std::string authority() const;  // host[:port], port omitted when default
    [[nodiscard]] std::string str() const;
    bool operator==(const http_url&) const = default;
};

/// 301, 302, 303, 307, 308.
bool is_redirect_status(unsigned status) noexcept;

/// Parses an absolute http:// or https:// URL. nullopt for other schemes,
/// userinfo, a bad port, control bytes or spaces.
std::optional<http_url> parse_http_url(std::string_view text);

/// Resolves a Location value against the URL that answered: absolute,
/// scheme-relative (`//host/p`), absolute-path (`/p`) or relative (`p`).
/// nullopt when the result is not a usable http(s) URL.
std::optional<http_url> resolve_location(const http_url& base, std::string_view location);

/// Same scheme, host and port.
bool same_origin(const http_url& a, const http_url& b) noexcept;

/// Why a followed redirect must not connect to `a` (after name resolution),
/// or nullopt: unspecified (0.0.0.0/8, ::), link-local (169.254/16, fe80::/10;
/// cloud metadata lives there), the Alibaba Cloud metadata service
/// 100.100.100.200, multicast and broadcast; loopback (127/8, ::1) unless
/// `allow_loopback` (the registry itself is on loopback). IPv4-mapped IPv6
/// addresses are judged as IPv4.
std::optional<std::string> forbidden_redirect_address(const boost::asio::ip::address& a, bool allow_loopback);

/// True for "localhost" and loopback IP literals: a registry reached there
/// may redirect to loopback too (a local registry with a local object store).
bool is_loopback_host(std::string_view host) noexcept;

}  // namespace acp::proxy
