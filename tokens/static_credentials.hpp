// Credential sources that need no network: anonymous, static Basic (password
// loaded with the config) and a docker `config.json` "auths" entry.
//
// Owns: the providers and the pure helpers they use (base64, docker config
// lookup). Providers are immutable after construction; their coroutines
// complete immediately on the caller's executor and never suspend, so there
// is nothing to cancel.
#pragma once

#include "tokens/auth_provider.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace acp::tokens {

/// Injects nothing.
class anonymous_provider final : public auth_provider {
public:
    [[nodiscard]] std::string_view name() const noexcept override { return "anonymous"; }
    net::awaitable<auth_result<authorization>> authorize(auth_request req) override;
};

/// Injects a fixed `Basic base64(user:password)` value.
class basic_provider final : public auth_provider {
public:
    /// `header_value` is the complete "Basic …" value; `source` names it for logs.
    basic_provider(config::secret header_value, std::string name);
    [[nodiscard]] std::string_view name() const noexcept override { return name_; }
    net::awaitable<auth_result<authorization>> authorize(auth_request req) override;

private:
    config::secret header_value_;
    std::string name_;
};

/// RFC 4648 base64 with padding.
std::string base64_encode(std::string_view in);
/// Strict decode (padding optional); nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view in);

/// "Basic " + base64(user ":" password).
config::secret basic_header_value(std::string_view username, const config::secret& password);

/// The Basic header value for `host` from a docker config.json text: the
/// "auths" entry whose key, stripped of scheme and path, equals `host`
/// (case-insensitive), with "auth" (base64 user:password) or
/// "username"/"password". nullopt when there is no usable entry. Throws
/// std::runtime_error (message without secrets) when the JSON is malformed.
std::optional<config::secret> docker_config_lookup(std::string_view config_json, std::string_view host);

}  // namespace acp::tokens
