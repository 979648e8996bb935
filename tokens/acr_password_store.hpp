// The node's ACR temporary passwords: one per configured ACR instance, fetched
// and refreshed in one place, handed to the data path as immutable snapshots.
//
// Owns: a control thread (all IMDS / STS / OpenAPI calls, blocking libcurl,
// never on a data-path io_context), a waiter thread (timeouts of requests
// waiting for a first password), the credential providers, and the published
// `std::shared_ptr<const store_snapshot>`.
//
// Per instance: region (config → node region from IMDS), domains (config, or
// every enabled ListInstanceEndpoint domain, re-listed every
// `endpoint_relist_interval`), password (GetAuthorizationToken EE or Personal,
// signed by the instance's credential provider). A password is refreshed in the
// background when its remaining life drops below `expiring_threshold` + jitter
// (never earlier than a quarter of its life); failures back off exponentially
// with jitter up to `refresh_backoff_max`, and the still-valid password keeps
// being served. Once none is valid the instance is unavailable with a reason
// (→ 503) and not ready (→ /readyz).
//
// Thread affinity:
//   find(), snapshot(), status(), ready(), metrics(): any thread, lock-free
//     (one atomic shared_ptr load; no mutex on the hot path).
//   async_get(): any thread; the handler is posted to its associated executor
//     (use_awaitable: the coroutine's), never run inline. Completes at once
//     unless the instance's first password (or the first endpoint discovery)
//     is still being fetched; then it waits for that one fetch (single-flight:
//     the control thread makes it, whatever the number of waiters), at most
//     `first_credential_wait` (real time), and completes with `pending` →
//     `unavailable` on timeout. Cancellation: per-operation cancellation slot
//     (any type) completes it at once with state `cancelled`.
//   start()/stop(): the owning thread. Destroy the store only after the
//     io_contexts that await it have stopped (pending waiters are completed
//     with `unavailable` by stop()).
// Secrets: passwords live in config::secret; nothing here logs them.
#pragma once

#include "config/config.hpp"
#include "config/loader.hpp"
#include "tokens/alibaba_clock.hpp"
#include "tokens/alibaba_http_client.hpp"
#include "tokens/alibaba_metrics.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace acp::tokens {

/// Registry Basic credentials for one ACR instance (the token-realm login).
struct basic_credential {
    std::string username;
    config::secret password;  // may contain ':'
    time_point issued_at{};
    time_point expires_at{};
    std::string instance;  // instance label

    /// "Basic " + base64(username ":" password), for the token realm request.
    [[nodiscard]] std::string authorization() const;
};

enum class credential_state {
    ready,         // `credential` is valid now
    pending,       // first fetch (or first domain discovery) not finished yet
    unavailable,   // no valid password: `reason` says why (→ 503, readiness false)
    unknown_host,  // not an ACR domain this store serves (→ the proxy's other profiles / 404)
    cancelled,     // async_get was cancelled through its cancellation slot
};

[[nodiscard]] std::string_view to_string(credential_state s);

struct credential_answer {
    credential_state state = credential_state::unknown_host;
    std::shared_ptr<const basic_credential> credential;  // set iff ready
    std::string instance;                                // instance label, when the host is known
    std::string reason;                                  // why not ready; no secrets
};

/// What /readyz and `doctor` show per instance.
struct instance_status {
    std::string instance;  // label: instance id, or "personal/<region>"
    std::string instance_id;
    std::string region;
    std::string identity;  // which credential signs its calls
    std::vector<std::string> domains;
    bool ready = false;
    std::optional<time_point> expires_at;
    std::string reason;
};

/// The immutable table the data path reads.
struct store_snapshot {
    struct entry {
        std::string label;
        std::string instance_id;
        std::string region;
        std::string identity;
        std::vector<std::string> domains;
        bool domains_known = false;                          // configured, or listed at least once
        bool attempted = false;                              // the first password fetch has finished (either way)
        std::shared_ptr<const basic_credential> credential;  // newest password, possibly expired
        std::string reason;                                  // last failure, empty after a success
    };
    std::vector<entry> instances;
    std::unordered_map<std::string, std::size_t> by_host;  // lower-case domain → index
    bool discovery_pending = false;                        // some listing has not been attempted yet
    std::uint64_t generation = 0;
};

/// Pure: when to refresh a password issued at `issued` expiring at `expires`:
/// expires − threshold − jitter01 × threshold/10, but not before issued + life/4.
[[nodiscard]] time_point compute_refresh_at(time_point issued, time_point expires, wall_clock::duration threshold,
                                            double jitter01);

/// Pure: the n-th (1-based) retry delay: min(max, initial × 2^(n−1)) × (0.5 + 0.5 × jitter01).
[[nodiscard]] wall_clock::duration backoff_delay(int failures, wall_clock::duration initial, wall_clock::duration max,
                                                 double jitter01);

struct acr_password_store_options {
    std::shared_ptr<const config::config> cfg;
    config::environment env;              // getenv + read_file; defaults to the process's when unset
    std::unique_ptr<http_client> http;    // default: libcurl
    std::shared_ptr<clock_source> clock;  // default: system clock
    std::function<double()> random01;     // default: a seeded PRNG; tests may pin it
    std::function<std::string()> nonce;   // default: CSPRNG nonces
};

class acr_password_store {
public:
    explicit acr_password_store(acr_password_store_options opts);
    acr_password_store(const acr_password_store&) = delete;
    acr_password_store& operator=(const acr_password_store&) = delete;
    acr_password_store(acr_password_store&&) = delete;
    acr_password_store& operator=(acr_password_store&&) = delete;
    ~acr_password_store();

    /// Starts the control and waiter threads; returns at once.
    void start();
    /// Stops and joins them; completes every waiter with `unavailable`.
    void stop();

    // --- data path (any thread, lock-free) --------------------------------------------

    /// The current answer for a registry host (`ns=` value, case-insensitive; ":443" ignored).
    [[nodiscard]] credential_answer find(std::string_view host) const;

    /// Like find(), but waits (bounded) while the answer is `pending`.
    /// Signature: void(credential_answer).
    template <class CompletionToken>
    auto async_get(std::string host, CompletionToken&& token);

    /// Asks the control thread to refresh the password serving `host` now
    /// (e.g. the registry rejected it). Returns false for an unknown host.
    bool request_refresh(std::string_view host);

    // --- admin / readiness / route table -----------------------------------------------

    [[nodiscard]] std::shared_ptr<const store_snapshot> snapshot() const { return snapshot_.load(); }
    /// What the store was built from (a reload that changes these needs a restart).
    [[nodiscard]] const std::vector<config::acr_instance>& configured_instances() const { return cfg_->acr_instances; }
    [[nodiscard]] const config::alibaba_config& configured_alibaba() const { return cfg_->alibaba; }
    [[nodiscard]] std::vector<instance_status> status() const;
    /// True when every instance has a valid password and known domains.
    [[nodiscard]] bool ready() const;
    /// Every domain currently served (configured + discovered), lower-case.
    [[nodiscard]] std::vector<std::string> domains() const;
    [[nodiscard]] const alibaba_metrics& metrics() const { return metrics_; }
    [[nodiscard]] std::vector<metric_sample> collect_metrics() const { return metrics_.collect(clock_->now()); }

    /// Called on the control thread after a publish that changed the domain
    /// set (for the route table and the realm allow-list). Set before start().
    void on_domains_changed(std::function<void(const std::vector<std::string>&)> f) { domains_changed_ = std::move(f); }

private:
    struct instance_state;
    struct waiter {
        std::string host;
        std::chrono::steady_clock::time_point deadline;
        std::function<void(credential_answer)> complete;
    };

    /// Returns true if the waiter was queued; false if `complete` already ran (posted).
    bool add_waiter(std::uint64_t id, std::string host, std::function<void(credential_answer)> complete);
    void cancel_waiter(std::uint64_t id);
    void complete_settled_waiters();
    void run_control();
    void run_waiters();
    void work_on(instance_state& inst);
    bool ensure_region(instance_state& inst);
    void discover(instance_state& inst);
    void refresh_password(instance_state& inst);
    void publish();
    [[nodiscard]] double jitter();
    [[nodiscard]] std::string node_region();

    std::shared_ptr<const config::config> cfg_;
    config::environment env_;
    std::unique_ptr<http_client> http_;
    std::shared_ptr<clock_source> clock_;
    std::function<double()> random01_;
    std::function<std::string()> nonce_;
    alibaba_metrics metrics_;

    // Control-thread state.
    struct impl;
    std::unique_ptr<impl> impl_;
    std::vector<std::unique_ptr<instance_state>> instances_;
    std::function<void(const std::vector<std::string>&)> domains_changed_;
    std::vector<std::string> last_domains_;

    std::atomic<std::shared_ptr<const store_snapshot>> snapshot_;

    std::mutex mu_;  // guards stopping_ and the refresh requests; paired with cv_
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread control_thread_;

    std::mutex waiters_mu_;
    std::condition_variable waiters_cv_;
    std::map<std::uint64_t, waiter> waiters_;
    bool waiters_stopping_ = false;
    std::atomic<bool> running_{false};  // between start() and stop(): waits can end
    std::atomic<std::uint64_t> next_waiter_id_{1};
    std::thread waiter_thread_;
};

// ---- template implementation ----------------------------------------------------------

template <class CompletionToken>
auto acr_password_store::async_get(std::string host, CompletionToken&& token) {
    namespace asio = boost::asio;
    return asio::async_initiate<CompletionToken, void(credential_answer)>(
        [this](auto handler, std::string h) {
            using handler_t = decltype(handler);
            auto ex = asio::get_associated_executor(handler);
            auto work = asio::prefer(ex, asio::execution::outstanding_work.tracked);
            struct holder {
                handler_t handler;
                decltype(work) work_ex;
            };
            auto state = std::make_shared<holder>(holder{std::move(handler), std::move(work)});
            const std::uint64_t id = next_waiter_id_.fetch_add(1, std::memory_order_relaxed);
            auto slot = asio::get_associated_cancellation_slot(state->handler);
            if (slot.is_connected()) {
                slot.assign([this, id](asio::cancellation_type) { cancel_waiter(id); });
            }
            add_waiter(id, std::move(h), [state](credential_answer answer) {
                auto ex2 = state->work_ex;
                asio::post(ex2, [state, a = std::move(answer)]() mutable {
                    // Runs on the handler's executor: the only place the slot may be touched.
                    asio::get_associated_cancellation_slot(state->handler).clear();
                    std::move(state->handler)(std::move(a));
                });
            });
        },
        token, std::move(host));
}

}  // namespace acp::tokens
