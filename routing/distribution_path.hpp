// Parsing of downstream request targets for the distribution API
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md):
// `/v2/`, `/v2/<name>/manifests/<reference>`, `/v2/<name>/blobs/<digest>`,
// `/v2/<name>/tags/list`, plus the `ns` query parameter containerd appends
// when the proxy is a mirror (containerd core/remotes/docker/resolver.go).
//
// Owns: pure functions, no I/O, no allocation beyond the result; safe on any
// thread. Nothing is percent-decoded in the path: the grammar admits no `%`,
// so encoded slashes or dots are rejected rather than interpreted.
#pragma once

#include <boost/system/result.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace acp::routing {

/// What a registry request asks for (also a metrics label).
enum class request_kind { ping, manifest, blob, tags_list };

std::string_view to_string(request_kind k) noexcept;

/// Why a target is not something the proxy forwards.
enum class path_error {
    not_found = 1,   // outside the read-only API we serve (_catalog, uploads, referrers, not /v2)
    bad_target,      // not origin-form, control bytes, fragment
    name_invalid,    // repository name breaks the grammar or exceeds max_name_length
    tag_invalid,     // manifest reference is neither a valid tag nor a valid digest
    digest_invalid,  // blob reference is not a valid digest
    query_invalid,   // malformed query, bad `n`/`last`
    ns_invalid,      // `ns` repeated, empty or not a host[:port]: names no configured registry
};

std::string_view to_string(path_error e) noexcept;

inline constexpr std::size_t max_name_length = 255;
inline constexpr std::size_t max_tag_length = 128;

/// A parsed `/v2/...` request target.
struct distribution_path {
    request_kind kind = request_kind::ping;
    std::string name;               // repository, e.g. "library/alpine"; empty for ping
    std::string reference;          // tag or digest; empty for ping and tags/list
    std::optional<std::string> ns;  // decoded `ns` (lower-cased host[:port]) when present
    std::string upstream_query;     // what is forwarded after '?': tags/list `n`/`last` only

    [[nodiscard]] bool is_digest() const noexcept;
    /// The path (and query) to send upstream, below the endpoint's path prefix.
    [[nodiscard]] std::string upstream_target() const;
    bool operator==(const distribution_path&) const = default;
};

/// Parses an origin-form request target (path and optional query).
boost::system::result<distribution_path, path_error> parse_target(std::string_view target);

/// Grammar checks, exposed for tests and for other parsers (scope strings).
bool is_valid_name(std::string_view name) noexcept;
bool is_valid_tag(std::string_view tag) noexcept;
bool is_valid_digest(std::string_view digest) noexcept;
/// host, host:port, IPv4, or [IPv6] with optional port; letters any case.
bool is_valid_host(std::string_view host) noexcept;

/// Decodes %XX escapes (and '+' as space, as Go's url.ParseQuery does).
/// nullopt on a malformed escape or a decoded control byte.
std::optional<std::string> decode_query_component(std::string_view s);

}  // namespace acp::routing
