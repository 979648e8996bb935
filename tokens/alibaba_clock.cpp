#include "tokens/alibaba_clock.hpp"

namespace acp::tokens {

void system_clock_source::wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                                     time_point deadline) {
    // Wall-clock jumps (NTP) must not make the control thread oversleep: cap
    // one wait at a minute and let the caller re-evaluate.
    const auto cap = wall_clock::now() + std::chrono::minutes(1);
    cv.wait_until(lock, deadline < cap ? deadline : cap);
}

void manual_clock::wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, time_point deadline) {
    if (now() >= deadline) {
        return;
    }
    cv.wait_for(lock, std::chrono::milliseconds(5));
}

}  // namespace acp::tokens
