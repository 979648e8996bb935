// Value syntax shared by the config loaders and by the layers that match
// hosts: host names, realm-host patterns, ARNs, Kubernetes names, and how a
// bad value is quoted in a message.
//
// Owns: pure functions only (parse_duration, parse_listen_address and
// parse_endpoint_url are declared in config/loader.hpp and defined with these).
// Thread affinity: none; everything here is re-entrant and allocation-only.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace acp::config {

/// A registry host as containerd names it in `?ns=`: a DNS name, an IPv4
/// literal or a bracketed IPv6 literal, optionally with ":PORT" (1-65535).
/// Returns it lower-cased, or nullopt when malformed.
std::optional<std::string> normalize_host(std::string_view text);

/// True when `pattern` (already lower-case) is an exact host accepted by
/// normalize_host or "*.suffix" with a suffix of at least two DNS labels.
bool is_host_pattern(std::string_view pattern);

/// True when `host` matches `pattern` (exact, or "*.suffix" matching any
/// host strictly below suffix). Both lower-case; a port in `host` is ignored
/// by wildcard patterns.
bool host_matches(std::string_view pattern, std::string_view host);

/// True for 127.0.0.0/8 and ::1 (and ::ffff:127.x.y.z).
bool is_loopback_ip(std::string_view ip);
/// True for 0.0.0.0 and ::.
bool is_wildcard_ip(std::string_view ip);

/// An Alibaba Cloud region id such as "cn-hangzhou" (lower-case letters, digits, '-').
bool is_region_id(std::string_view text);
/// An Alibaba Cloud RAM ARN: "acs:ram::<account-id>:<resource>".
bool is_ram_arn(std::string_view text);
/// An STS RoleSessionName: 2-64 of [A-Za-z0-9.@_-].
bool is_role_session_name(std::string_view text);
/// A Kubernetes namespace name (RFC 1123 label).
bool is_k8s_label(std::string_view text);
/// A Kubernetes ServiceAccount name (RFC 1123 subdomain).
bool is_k8s_subdomain(std::string_view text);

/// A value quoted for a message: "value" with control characters escaped,
/// truncated past 80 characters. Never pass a secret.
std::string quote(std::string_view value);

/// Levenshtein distance, ignoring case, '-' and '_' (so `expiring-threshold`
/// is close to `expiringThreshold`).
std::size_t key_distance(std::string_view a, std::string_view b);
/// The known key closest to `key` (first on ties); empty when `known` is empty.
std::string closest_key(std::string_view key, std::span<const std::string_view> known);

/// Trims ASCII whitespace at both ends.
std::string_view trim(std::string_view s);
/// ASCII lower-case copy.
std::string to_lower(std::string_view s);

}  // namespace acp::config
