// The one auth hook of the data plane: what `Authorization` value, if any,
// the proxy injects on an upstream request, and what happens when the
// upstream answers 401 anyway.
//
// Owns: the `auth_provider` interface and `auth_providers`, the per-snapshot
// table that chooses a provider for each route (the only place that does).
// Thread affinity: providers are called on the data-path io_context thread
// of the awaiting request; an implementation that works elsewhere (a token
// fetch on the control thread) must complete back on the caller's executor.
// Cancellation: every coroutine honours the awaiting coroutine's cancellation
// slot (terminal): a request that goes away cancels its credential fetch.
#pragma once

#include "config/config.hpp"
#include "routing/distribution_path.hpp"
#include "routing/route_table.hpp"
#include "tokens/registry_token.hpp"
#include "tokens/token_cache.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace acp::tokens {

namespace net = boost::asio;

/// What a request needs credentials for. Values, so an implementation may
/// keep them across suspension points (e.g. a shared, single-flight fetch).
struct auth_request {
    std::string registry;    // route host, as in `ns`
    std::string repository;  // distribution name
    routing::request_kind kind = routing::request_kind::manifest;

    /// The distribution token scope for a pull: "repository:<name>:pull".
    [[nodiscard]] std::string pull_scope() const { return "repository:" + repository + ":pull"; }
};

/// An upstream 401 as the provider needs to see it.
struct auth_challenge {
    unsigned status = 401;
    std::vector<std::string> www_authenticate;  // every WWW-Authenticate line, in order
    config::secret sent_authorization;          // what authorize() gave for the refused request ("" if none)
};

/// The complete header value to inject ("Basic …", "Bearer …"), or none.
using authorization = std::optional<config::secret>;

/// Why a provider cannot authorize a request: the code (its category decides
/// the status, in proxy's one mapping) and a detail for the error body and
/// the log -- e.g. which ACR instance has no valid password and why. Never a secret.
struct auth_error {
    boost::system::error_code code;
    std::string detail;
    friend bool operator==(const auth_error& a, const boost::system::error_code& b) { return a.code == b; }
};

/// result<T, auth_error>::value() throws this on an error.
[[noreturn]] void throw_exception_from_error(const auth_error& e, const boost::source_location& loc);

template <class T>
using auth_result = boost::system::result<T, auth_error>;

class auth_provider {
public:
    virtual ~auth_provider() = default;

    /// Short name for logs and metrics ("anonymous", "basic", "docker-config").
    [[nodiscard]] virtual std::string_view name() const noexcept = 0;

    /// The Authorization value for this request. An error means credentials
    /// cannot be obtained (the proxy answers by the code's category: 503 by
    /// default; the token flow's codes map to 502/503/504/403), with the
    /// detail in the body; net::error::operation_aborted when cancelled.
    virtual net::awaitable<auth_result<authorization>> authorize(auth_request req) = 0;

    /// The upstream answered 401 to a request sent with what authorize()
    /// returned. true: the provider learned something (e.g. fetched a bearer
    /// token for the challenged scope) and the proxy calls authorize() again
    /// and retries once; false: the proxy answers 403 DENIED. Errors as for
    /// authorize(). Static credentials cannot improve: the default says false.
    virtual net::awaitable<auth_result<bool>> on_unauthorized(auth_request req, auth_challenge challenge);

    /// Appends Prometheus text lines about this provider (token fetches, cache
    /// hits). Same thread as the calls above. Static providers have none.
    virtual void append_metrics(std::string& out) const;

protected:
    auth_provider() = default;
    auth_provider(const auth_provider&) = default;
    auth_provider& operator=(const auth_provider&) = default;
};

/// One GET to a token realm, made by the proxy's upstream client with the
/// route's TLS settings (its caFile, insecureSkipVerify).
struct realm_request {
    realm_url realm;
    std::string target;            // path and query
    config::secret authorization;  // "Basic …"
};
struct realm_response {
    unsigned status = 0;
    std::string body;  // bounded by the fetcher (max_token_response_bytes)
};
/// Transport failures come back as token_failure (realm_unreachable / realm_timeout).
using realm_fetch_fn = std::function<net::awaitable<std::variant<realm_response, token_failure>>(realm_request)>;

class acr_password_store;

/// What provider construction may use; injectable for tests.
struct auth_environment {
    std::function<std::optional<std::string>(const std::string& path)> read_file;  // nullopt: unreadable
    /// The proxy's realm client for a route. Unset: registries are served with
    /// preemptive static credentials only, and ACR routes cannot log in.
    std::function<realm_fetch_fn(const routing::route&)> realm_fetcher;
    /// The node's ACR temporary passwords (owned by serve(); outlives every
    /// snapshot). Null when no ACR instance is configured.
    acr_password_store* acr = nullptr;
    static auth_environment process();
};

/// One provider per route of a snapshot, chosen in `make_provider` (the one
/// place that maps a route to its credential source). Immutable after build.
class auth_providers {
public:
    auth_providers() = default;
    /// Throws std::runtime_error (no secret in the text) when a route's
    /// credential source cannot be set up, e.g. an unreadable docker config:
    /// startup fails, a reload is rejected.
    auth_providers(const routing::route_table& routes, const auth_environment& env);

    /// The provider for a route of the table this was built from (anonymous if unknown).
    [[nodiscard]] std::shared_ptr<auth_provider> for_route(const routing::route& r) const;

    /// Every provider's metrics lines (see auth_provider::append_metrics).
    void append_metrics(std::string& out) const;

    /// Non-fatal notes from the build (e.g. "no auths entry for host"), for the config log.
    [[nodiscard]] const std::vector<std::string>& warnings() const noexcept { return warnings_; }

private:
    std::unordered_map<std::string, std::shared_ptr<auth_provider>> by_host_;
    std::vector<std::string> warnings_;
};

/// The credential source for one route, and the only place that chooses it:
///  - registries with Basic or docker-config credentials: the token flow
///    (token_auth_provider) with those credentials, sent preemptively;
///  - ACR domains: the token flow logging in with the instance's temporary
///    password from the ACR store (never sent to the registry itself);
///  - anonymous registries: nothing injected.
std::shared_ptr<auth_provider> make_provider(const routing::route& r, const auth_environment& env,
                                             std::vector<std::string>& warnings);

}  // namespace acp::tokens
