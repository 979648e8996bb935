// The registry token flow as an auth_provider: answer a registry's 401
// challenge the way docker and containerd clients do, once per registry and
// scope, for every pull on the node.
//
//   Bearer realm=…,service=…  → GET <realm>?service=…&scope=repository:<name>:pull
//                                with Basic credentials → {"token"|"access_token", "expires_in"}
//                                → cached per (registry, scope) → `Authorization: Bearer …`
//   Basic realm=…             → `Authorization: Basic …` directly
//
// The realm must pass realm_refusal() (allow-listed host; https unless the
// registry itself is reached over an explicit http:// override) or the
// credentials are not sent: a challenge cannot exfiltrate a password.
// Once a registry's challenge is known, new scopes fetch their token before
// the first upstream request (no extra 401 round trip).
//
// Owns: what it learned of the registry's challenge and the token cache.
// Thread affinity: one single-threaded data-path executor (the io_context's
// coroutines call it). Cancellation: a request that goes away stops waiting
// for a token; the fetch goes on for the other waiters (token_cache).
#pragma once

#include "tokens/auth_provider.hpp"
#include "tokens/registry_token.hpp"
#include "tokens/token_cache.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <string>
#include <variant>
#include <vector>

namespace acp::tokens {

/// The Basic credentials to log in with: "Basic …", or why there are none
/// (e.g. the ACR temporary password is not there yet → credentials_unavailable).
using basic_source_fn =
    std::function<net::awaitable<std::variant<config::secret, token_failure>>(const auth_request&)>;

class token_auth_provider final : public auth_provider {
public:
    struct options {
        std::string name = "token";          // for logs and metrics
        std::string registry_host;           // the route host
        std::string registry_scheme;         // "https", or "http" with an explicit override
        std::vector<std::string> realm_hosts;  // allow-list; empty: the registry host only
        /// Send the Basic credentials on first contact (static credentials for a
        /// configured host: saves the 401 round trip on Basic registries). Off
        /// for ACR: its temporary password goes to the token realm only.
        bool preemptive_basic = false;
        token_cache::options cache;
    };

    token_auth_provider(options opts, basic_source_fn basic, realm_fetch_fn fetch,
                        token_cache::clock_fn clock = {});

    [[nodiscard]] std::string_view name() const noexcept override { return opts_.name; }
    net::awaitable<auth_result<authorization>> authorize(auth_request req) override;
    net::awaitable<auth_result<bool>> on_unauthorized(auth_request req, auth_challenge challenge) override;
    /// acp_token_* lines labelled with the registry: fetches by outcome, cache
    /// hits/misses, single-flight waiters, fast failures, realm latency.
    void append_metrics(std::string& out) const override;

    [[nodiscard]] token_cache::stats counters() const { return cache_->counters(); }
    void shutdown() { cache_->shutdown(); }

private:
    struct learned_bearer {
        realm_url realm;
        std::string service;
    };
    enum class scheme { unknown, bearer, basic };

    net::awaitable<auth_result<authorization>> bearer_for(const auth_request& req);
    /// The token cache key and the sorted scopes for a request.
    [[nodiscard]] std::pair<std::string, std::vector<std::string>> scopes_for(const auth_request& req) const;

    options opts_;
    basic_source_fn basic_;
    realm_fetch_fn fetch_;
    std::shared_ptr<token_cache> cache_;
    scheme scheme_ = scheme::unknown;
    std::optional<learned_bearer> bearer_;
    // Scopes a challenge asked for beyond repository:<name>:pull, by repository (bounded).
    std::unordered_map<std::string, std::vector<std::string>> challenge_scopes_;
};

/// token_failure → the error code the proxy maps to a status.
boost::system::error_code to_error_code(const token_failure& f);

}  // namespace acp::tokens
