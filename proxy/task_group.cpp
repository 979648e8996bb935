#include "proxy/task_group.hpp"

#include "config/logging.hpp"

#include <algorithm>

namespace acp::proxy {

void task_group::spawn(const net::any_io_executor& ex, net::awaitable<void> task, std::shared_ptr<entry> e) {
    entries_.push_back(e);
    auto& slot_owner = *e;
    net::co_spawn(
        ex, std::move(task), net::bind_cancellation_slot(slot_owner.signal.slot(), [this, e](std::exception_ptr ep) {
            if (ep) {
                try {
                    std::rethrow_exception(ep);
                } catch (const boost::system::system_error& se) {
                    if (se.code() != net::error::operation_aborted) {  // cancelled at shutdown: expected
                        logging::logger("proxy")->error("{} task ended by an exception: {}", name_, se.what());
                    }
                } catch (const std::exception& ex_) {
                    logging::logger("proxy")->error("{} task ended by an exception: {}", name_, ex_.what());
                }
            }
            remove(e);
        }));
}

void task_group::remove(const std::shared_ptr<entry>& e) {
    entries_.remove(e);
    if (entries_.empty()) {
        for (auto* w : waiters_) {
            w->cancel();
        }
    }
}

void task_group::stop_idle() {
    // Copy: a stop hook may complete a task synchronously in the future.
    const auto snapshot = std::vector<std::shared_ptr<entry>>(entries_.begin(), entries_.end());
    for (const auto& e : snapshot) {
        if (!e->busy && e->stop) {
            e->stop();
        } else if (e->busy && e->on_drain) {
            e->on_drain();
        }
    }
}

void task_group::stop_all() {
    const auto snapshot = std::vector<std::shared_ptr<entry>>(entries_.begin(), entries_.end());
    for (const auto& e : snapshot) {
        e->signal.emit(net::cancellation_type::terminal);
        if (e->stop) {
            e->stop();
        }
    }
}

net::awaitable<bool> task_group::wait_empty(std::chrono::steady_clock::time_point deadline) {
    net::steady_timer timer(co_await net::this_coro::executor);
    waiters_.push_back(&timer);
    struct unregister {
        std::vector<net::steady_timer*>& list;
        net::steady_timer* t;
        ~unregister() { list.erase(std::remove(list.begin(), list.end(), t), list.end()); }
    } guard{waiters_, &timer};
    while (!entries_.empty()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            co_return false;
        }
        timer.expires_at(deadline);
        co_await timer.async_wait(use_nothrow);
    }
    co_return true;
}

}  // namespace acp::proxy
