// Parsing of `WWW-Authenticate` challenges (RFC 7235 §4.1, §2.1; RFC 6750 §3
// for Bearer; the distribution token spec for realm/service/scope).
//
// Owns: a pure, allocation-bounded parser. No I/O, no thread affinity;
// safe to call from any thread. Fuzzed by tests/fuzz/www_authenticate_fuzz.cpp.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace acp::tokens {

/// One challenge: `Bearer realm="…",service="…"` or `Basic realm="…"`.
struct challenge {
    std::string scheme;  // lower-cased ("bearer", "basic", ...)
    std::vector<std::pair<std::string, std::string>> params;  // names lower-cased, values unquoted
    std::string token68;  // the rare `Scheme token68` form; empty otherwise

    /// The value of a parameter (name matched case-insensitively).
    [[nodiscard]] std::optional<std::string_view> param(std::string_view name) const;
    bool operator==(const challenge&) const = default;
};

/// Bounds that keep a hostile header from costing much.
inline constexpr std::size_t max_challenge_header_bytes = 8192;
inline constexpr std::size_t max_challenges = 16;
inline constexpr std::size_t max_params_per_challenge = 32;

/// Parses one header value holding one or more comma-separated challenges.
/// nullopt when the value is not valid RFC 7235 syntax, exceeds the bounds
/// above, or repeats a parameter within one challenge (ambiguous realm).
std::optional<std::vector<challenge>> parse_challenges(std::string_view header_value);

/// Parses several header lines (a response may carry several
/// `WWW-Authenticate` fields); nullopt if any line is malformed.
std::optional<std::vector<challenge>> parse_challenges(const std::vector<std::string_view>& header_values);

/// The fields of a Bearer challenge the token flow needs.
struct bearer_params {
    std::string realm;    // absolute URL of the token endpoint
    std::string service;  // may be empty
    std::string scope;    // may be empty; space-separated scopes
    bool operator==(const bearer_params&) const = default;
};

/// The first Bearer challenge with a non-empty realm, if any.
std::optional<bearer_params> find_bearer(const std::vector<challenge>& challenges);

/// True when some challenge uses the Basic scheme.
bool has_basic(const std::vector<challenge>& challenges);

}  // namespace acp::tokens
