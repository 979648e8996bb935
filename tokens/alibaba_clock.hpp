// The wall clock the Alibaba credential code reads, injectable for tests.
//
// Owns: "now" for expiry arithmetic (ACR ExpireTime and STS Expiration are
// wall-clock instants) and the control thread's timed waits. `now()` is
// thread-safe on every implementation; `wait_until` is called only by the
// thread that owns the mutex/condition variable passed in.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace acp::tokens {

using wall_clock = std::chrono::system_clock;
using time_point = wall_clock::time_point;

class clock_source {
public:
    clock_source() = default;
    clock_source(const clock_source&) = delete;
    clock_source& operator=(const clock_source&) = delete;
    clock_source(clock_source&&) = delete;
    clock_source& operator=(clock_source&&) = delete;
    virtual ~clock_source() = default;

    [[nodiscard]] virtual time_point now() const = 0;

    /// Blocks on `cv` until notified or until `deadline` by this clock.
    /// Spurious returns are allowed; callers re-check their condition.
    virtual void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, time_point deadline) = 0;
};

/// The real system clock.
class system_clock_source final : public clock_source {
public:
    [[nodiscard]] time_point now() const override { return wall_clock::now(); }
    void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, time_point deadline) override;
};

/// A clock that moves only when told to. Waiters re-check it every few
/// milliseconds of real time, so `advance()` needs no link to them.
class manual_clock final : public clock_source {
public:
    explicit manual_clock(time_point start) : now_(start.time_since_epoch().count()) {}

    [[nodiscard]] time_point now() const override {
        return time_point(wall_clock::duration(now_.load(std::memory_order_acquire)));
    }
    void set(time_point t) { now_.store(t.time_since_epoch().count(), std::memory_order_release); }
    void advance(wall_clock::duration d) { now_.fetch_add(d.count(), std::memory_order_acq_rel); }
    void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, time_point deadline) override;

private:
    std::atomic<wall_clock::rep> now_;
};

/// Milliseconds since the Unix epoch (the unit of ACR's ExpireTime).
[[nodiscard]] inline std::int64_t to_epoch_ms(time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
[[nodiscard]] inline time_point from_epoch_ms(std::int64_t ms) {
    return time_point(std::chrono::duration_cast<wall_clock::duration>(std::chrono::milliseconds(ms)));
}

}  // namespace acp::tokens
