// The pure parts of the registry token flow (distribution token spec,
// https://distribution.github.io/distribution/spec/auth/token/):
// where the realm may be, how the token request URL is built, and how the
// realm's JSON answer is read.
//
// Owns: policy and parsing only; no I/O, no thread affinity. Fuzzed through
// parse_token_response.
#pragma once

#include "config/config.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace acp::tokens {

/// A realm URL split into parts. Userinfo and fragments are never accepted.
struct realm_url {
    std::string scheme;  // "http" | "https"
    std::string host;    // lower-case; IPv6 without brackets
    std::uint16_t port = 0;
    std::string target;  // path plus "?query" when present; at least "/"
    bool operator==(const realm_url&) const = default;
};

/// Parses an absolute http(s) realm URL; nullopt when malformed or when it
/// carries userinfo (`https://user@host/`) or a fragment.
std::optional<realm_url> parse_realm_url(std::string_view text);

/// `host` matches `pattern` when equal (case-insensitive), or when the pattern
/// is `*.suffix` and host ends in `.suffix` with at least one label before it.
/// A pattern without a port matches any port; with a port, only that port.
bool host_matches(std::string_view pattern, std::string_view host, std::uint16_t port);

/// Why a realm may not receive the registry's credentials, or nullopt when it may.
/// `realm_hosts`: the registry's allow-list (empty: the registry host itself).
/// `registry_scheme`: the scheme the proxy uses to reach the registry; an
/// http realm is allowed only when that is http too (an explicit override).
std::optional<std::string> realm_refusal(const realm_url& realm, const std::vector<std::string>& realm_hosts,
                                         std::string_view registry_host, std::string_view registry_scheme);

/// `<realm>?service=…&scope=…` (appended to any query the realm already has),
/// percent-encoded per RFC 3986. Empty service or scopes are left out.
std::string token_request_target(const realm_url& realm, std::string_view service,
                                 const std::vector<std::string>& scopes);

/// `repository:<name>:pull` for a repository name.
std::string pull_scope(std::string_view repository);

/// The realm's answer.
struct registry_token {
    config::secret token;              // `access_token` when present, else `token`
    std::chrono::seconds expires_in{60};  // spec default when absent
    bool operator==(const registry_token&) const = default;
};

inline constexpr std::size_t max_token_response_bytes = 64 * 1024;

/// Reads `{"token": …, "access_token": …, "expires_in": N, "issued_at": …}`.
/// Expiry is counted by the caller from when the answer arrived, not from
/// `issued_at`, so a skewed clock on either side cannot stretch a token.
/// On failure returns nullopt and sets `error` to a message that never
/// contains the body (it may hold a token).
std::optional<registry_token> parse_token_response(std::string_view body, std::string& error);

}  // namespace acp::tokens
