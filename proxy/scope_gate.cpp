#include "proxy/scope_gate.hpp"

#include <algorithm>

namespace acp::proxy {

void scope_signal::notify() noexcept {
    for (auto* t : waiting_) {
        t->cancel();
    }
}

void scope_signal::remove(net::steady_timer* t) noexcept {
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), t), waiting_.end());
}

net::awaitable<routing::scope_decision> decide_scope(const routing::pod_index_holder& holder, scope_signal& signal,
                                                     std::string_view host, std::string_view repository,
                                                     std::chrono::steady_clock::duration wait, scope_wait& w) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    net::steady_timer timer(co_await net::this_coro::executor);
    for (;;) {
        const auto generation = holder.generation();
        auto decision = holder.load()->decide(host, repository);
        if (decision.verdict != routing::scope_verdict::unknown || w.stopped ||
            std::chrono::steady_clock::now() >= deadline) {
            co_return decision;
        }
        // The watcher stores, then posts notify(): a store after our load wakes us through it,
        // and one before it is already in what we decided from (same thread, no gap).
        timer.expires_at(deadline);
        signal.add(&timer);
        w.timer = &timer;
        if (holder.generation() == generation) {
            co_await timer.async_wait(use_nothrow);
        }
        w.timer = nullptr;
        signal.remove(&timer);
    }
}

}  // namespace acp::proxy
