// Bearer tokens per key (registry host + scope), with single-flight fetches
// and refresh ahead of expiry.
//
// Owns: cached tokens and the fetches in flight. Thread affinity: every call
// runs on one single-threaded executor (the data-path io_context; fetches are
// spawned on the executor of the coroutine that misses). Completion:
// `get()` completes when a cached token is found or the one fetch for its key
// finishes; if the awaiting coroutine is cancelled (its client went away) only
// its wait ends -- the fetch goes on for the other waiters and the cache.
// `shutdown()` cancels fetches in flight and wakes every waiter.
#pragma once

#include "config/config.hpp"
#include "tokens/registry_token.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>

namespace acp::tokens {

/// Why a registry token could not be had; the proxy maps `kind` to a status.
struct token_failure {
    enum class kind {
        credentials_unavailable,     // no Basic credentials for the registry yet (503)
        realm_refused,               // realm not allowed to receive credentials (502)
        realm_unreachable,           // connect/TLS/DNS failure to the realm (502)
        realm_timeout,               // realm too slow (504)
        realm_rejected_credentials,  // realm answered 401/403 to our Basic credentials (403)
        realm_bad_response,          // non-2xx or unparsable answer (502)
        shutting_down,               // the cache is stopping (503)
        cancelled,                   // this waiter was cancelled (its client went away)
        backing_off,                 // recent fetches failed; no new one until the backoff ends (503)
    };
    kind what = kind::realm_bad_response;
    std::string detail;  // names the realm/registry; never a secret
};

using token_result = std::variant<config::secret, token_failure>;

/// What a fetch returns: a token, or why not.
using fetch_result = std::variant<registry_token, token_failure>;
using fetch_fn = std::function<boost::asio::awaitable<fetch_result>()>;

class token_cache {
public:
    using clock_fn = std::function<std::chrono::steady_clock::time_point()>;
    using random_fn = std::function<double()>;  // uniform in [0, 1)

    struct options {
        /// Tokens are dropped this long before their stated expiry (clock
        /// drift, request latency).
        std::chrono::seconds safety_margin{5};
        /// A hit with less than this fraction of its lifetime left starts a
        /// background refresh and is still served.
        double refresh_fraction = 0.25;
        /// After a failed fetch the key backs off: no new fetch for
        /// negative_ttl × 2^(failures−1), capped at backoff_max, times a jitter
        /// in [0.5, 1). Requests meanwhile fail fast (kind::backing_off, naming
        /// the last failure) instead of hammering a broken realm. A success resets it.
        std::chrono::milliseconds negative_ttl{1000};
        std::chrono::milliseconds backoff_max{60000};
        /// Hard cap. Well below it, entries nobody can use any more (token
        /// expired, no backoff to remember, no fetch in flight) are swept
        /// whenever the map has doubled since the last sweep, so memory
        /// follows the live scopes, not every scope ever asked for.
        std::size_t max_entries = 4096;
    };

    token_cache();
    explicit token_cache(options opts, clock_fn clock = {}, random_fn random = {});
    ~token_cache();
    token_cache(const token_cache&) = delete;
    token_cache& operator=(const token_cache&) = delete;

    /// A valid token for `key`, fetching it with `fetch` on a miss; concurrent
    /// misses for one key share one fetch.
    boost::asio::awaitable<token_result> get(std::string key, fetch_fn fetch);

    /// Forgets `key` if it still holds `token` (the registry refused it).
    void invalidate(const std::string& key, const config::secret& token);

    /// Cancels fetches in flight; waiters complete with shutting_down.
    void shutdown();

    struct stats {
        std::uint64_t hits = 0, misses = 0, fetches = 0, fetch_failures = 0, background_refreshes = 0;
        std::uint64_t waiters = 0;        // requests that waited for a fetch in flight
        std::uint64_t fast_failures = 0;  // requests answered from a backoff
        double fetch_seconds_sum = 0;     // realm latency, summed over fetches
    };
    [[nodiscard]] stats counters() const { return *stats_; }

    /// Entries held (live tokens, backoffs, fetches in flight, and dead ones
    /// not swept yet).
    [[nodiscard]] std::size_t size() const { return entries_.size(); }

    struct entry;  // opaque; defined in token_cache.cpp

private:
    using time_point = std::chrono::steady_clock::time_point;

    [[nodiscard]] time_point now() const;
    void start_fetch(const boost::asio::any_io_executor& ex, const std::shared_ptr<entry>& e, fetch_fn fetch);
    void make_room();

    options opts_;
    clock_fn clock_;
    random_fn random_;
    std::map<std::string, std::shared_ptr<entry>> entries_;
    std::size_t sweep_at_ = min_sweep_at;
    static constexpr std::size_t min_sweep_at = 64;
    bool stopped_ = false;
    std::shared_ptr<stats> stats_;
};

}  // namespace acp::tokens
