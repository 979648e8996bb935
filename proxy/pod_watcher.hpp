// The pod watcher (issue 10): lists, then watches, the pods bound to this
// node through the Kubernetes API server and publishes the pull-scope index
// (routing/pod_scope.hpp) the data path decides from.
//
// Owns: one control thread running libcurl (list, then watch from the list's
// resourceVersion with bookmarks; re-list on 410 Gone; reconnect with
// backoff), the routing::pod_watch_state it mutates and the
// routing::pod_index_holder it publishes to.
//
// Thread affinity: list_now() runs on the caller's thread before start();
// after start() only the watcher thread talks to the API server. set_rule()
// may be called from any thread (the reload loop): the state is guarded by a
// mutex and a new snapshot is published at once. holder() and the counters are
// read lock-free from the data path. on_change runs on the watcher thread
// after every publish (serve() posts it to the io_context to wake requests
// waiting for their pod). stop() asks the thread to end (libcurl's progress
// callback aborts the transfer within about a second) and joins it.
//
// Secrets: the bearer token is read from its file on every connect, put only
// into the Authorization header and never logged; client keys go to libcurl
// as blobs. Errors carry curl's message, the HTTP status and the Status
// message from the API server (bounded, control bytes replaced).
#pragma once

#include "config/kube_access.hpp"
#include "routing/pod_scope.hpp"
#include "routing/pod_watch.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>

namespace acp::proxy {

struct pod_watcher_options {
    config::kube_access access;
    std::string node_name;
    std::string node_name_from;  // "--node-name", "NODE_NAME", "host name": for messages
    routing::scope_rule rule;
    std::chrono::seconds watch_timeout{300};  // timeoutSeconds asked of the server (it then ends the watch)
    std::chrono::milliseconds connect_timeout{5000};
    std::chrono::milliseconds list_timeout{30000};  // a whole List answer
    std::chrono::milliseconds backoff_initial{200};
    std::chrono::milliseconds backoff_max{10000};
};

class pod_watcher {
public:
    explicit pod_watcher(pod_watcher_options o);
    pod_watcher(const pod_watcher&) = delete;
    pod_watcher& operator=(const pod_watcher&) = delete;
    pod_watcher(pod_watcher&&) = delete;
    pod_watcher& operator=(pod_watcher&&) = delete;
    ~pod_watcher();

    /// Lists the node's pods (retrying with backoff) until it works or `budget`
    /// has passed. Returns "" on success, else the last failure (one line).
    [[nodiscard]] std::string list_now(std::chrono::milliseconds budget);
    /// Starts the watch thread (after a successful list_now).
    void start(std::function<void()> on_change);
    /// Ends the thread; idempotent.
    void stop();
    /// A reloaded config's namespaces / ServiceAccounts: decisions follow at once.
    void set_rule(routing::scope_rule rule);

    [[nodiscard]] const routing::pod_index_holder& holder() const noexcept { return holder_; }
    [[nodiscard]] const pod_watcher_options& options() const noexcept { return opts_; }

    // Metrics (lock-free reads).
    [[nodiscard]] std::uint64_t reconnects() const noexcept { return reconnects_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t relists() const noexcept { return relists_.load(std::memory_order_relaxed); }
    [[nodiscard]] bool watching() const noexcept { return watching_.load(std::memory_order_relaxed); }

    struct transfer;  // the curl transfer state (pod_watcher.cpp)
    /// libcurl callbacks (watcher thread): watch body bytes; false ends the transfer.
    bool on_stream(std::string_view bytes, transfer& t);
    [[nodiscard]] bool stopping() const noexcept { return stopping_.load(); }
    void set_watching() noexcept { watching_.store(true, std::memory_order_relaxed); }

private:
    enum class watch_end { timed_out, relist, reconnect, stopped };

    void run();
    std::string list_once(bool consistent = false);  // false: from the watch cache (resourceVersion=0)
    watch_end watch_once(std::string& why);
    void publish_locked();
    bool sleep_for(std::chrono::milliseconds d);        // false when stopping
    bool back_off(std::chrono::milliseconds& backoff);  // sleep_for, then double up to backoff_max
    std::int64_t random_below(std::int64_t n);          // jitter, in [0, n)

    pod_watcher_options opts_;
    routing::pod_index_holder holder_;
    mutable std::mutex mutex_;
    routing::pod_watch_state state_;  // guarded by mutex_
    std::function<void()> on_change_;
    std::atomic<bool> stopping_{false};
    std::condition_variable wake_;
    std::atomic<std::uint64_t> reconnects_{0};
    std::atomic<std::uint64_t> relists_{0};
    std::atomic<bool> watching_{false};
    std::minstd_rand random_{std::random_device{}()};  // guarded by mutex_
    std::thread thread_;
};

}  // namespace acp::proxy
