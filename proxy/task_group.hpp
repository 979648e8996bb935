// Tracks spawned coroutines (one per connection) so shutdown can stop
// accepting, let busy ones finish, then cancel the rest and wait for all.
//
// Owns: one entry per task (its cancellation signal and stop hook).
// Thread affinity: the io_context thread that spawns the tasks; not
// thread-safe. A task ends when its coroutine returns; its completion
// handler removes the entry and logs an escaped exception.
#pragma once

#include "proxy/net.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

namespace acp::proxy {

class task_group {
public:
    struct entry {
        net::cancellation_signal signal;  // terminal cancellation of whatever the task awaits
        std::function<void()> stop;       // set by the task: closes its sockets
        bool busy = false;                // set by the task while a request is in flight
        std::function<void()> on_drain;   // set by a busy task that can end sooner: stop_idle() calls it
    };

    explicit task_group(std::string name) : name_(std::move(name)) {}
    task_group(const task_group&) = delete;
    task_group& operator=(const task_group&) = delete;

    /// Spawns `task` on `ex`; `e` (from make_entry(), also handed to the task
    /// by value) is tracked until the coroutine completes.
    void spawn(const net::any_io_executor& ex, net::awaitable<void> task, std::shared_ptr<entry> e);
    static std::shared_ptr<entry> make_entry() { return std::make_shared<entry>(); }

    [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

    /// Stops tasks that are between requests (idle keep-alive); tells busy ones
    /// with an on_drain hook (a connection still waiting for its first byte).
    void stop_idle();
    /// Cancels and stops every task.
    void stop_all();
    /// Completes when the group is empty (true) or at `deadline` (false).
    net::awaitable<bool> wait_empty(std::chrono::steady_clock::time_point deadline);

private:
    void remove(const std::shared_ptr<entry>& e);

    std::string name_;
    std::list<std::shared_ptr<entry>> entries_;
    std::vector<net::steady_timer*> waiters_;
};

}  // namespace acp::proxy
