// The pull scope on the data path (issue 10): may this request for
// (registry host, repository) get our credentials? Decides from the pod
// watcher's published index and, when no pod references the repository yet,
// waits up to scope.waitForPod for the pod's watch event.
//
// Owns: scope_signal (wakes waiting requests when a new index is published)
// and decide_scope(). Thread affinity: the data io_context thread. The watcher
// thread never touches these directly: it posts scope_signal::notify() to the
// io_context. Cancellation: a waiting request registers its timer in a
// scope_wait; the session's stop hook calls scope_wait::cancel(), and
// decide_scope then returns at once with the last decision.
#pragma once

#include "proxy/net.hpp"
#include "routing/pod_scope.hpp"

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <string_view>
#include <vector>

namespace acp::proxy {

/// Wakes every request waiting for a new pod index. io_context thread only.
class scope_signal {
public:
    void notify() noexcept;
    void add(net::steady_timer* t) { waiting_.push_back(t); }
    void remove(net::steady_timer* t) noexcept;
    [[nodiscard]] std::size_t waiting() const noexcept { return waiting_.size(); }

private:
    std::vector<net::steady_timer*> waiting_;
};

/// One request's wait, for its session's stop hook.
struct scope_wait {
    net::steady_timer* timer = nullptr;
    bool stopped = false;
    void cancel() noexcept {
        stopped = true;
        if (timer != nullptr) {
            timer->cancel();
        }
    }
};

/// Decides (host, repository): at once when the index says allowed or denied;
/// when it says unknown, re-decides on every published index until `wait` has
/// passed (then the last decision, still unknown, is returned).
net::awaitable<routing::scope_decision> decide_scope(const routing::pod_index_holder& holder, scope_signal& signal,
                                                     std::string_view host, std::string_view repository,
                                                     std::chrono::steady_clock::duration wait, scope_wait& w);

}  // namespace acp::proxy
