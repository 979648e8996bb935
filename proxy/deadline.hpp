// A connection's deadline, checked lazily, and the downstream socket that
// carries one. Replaces beast::tcp_stream's timer, which arms and cancels a
// timer around every read and write (two timerfd_settime per body chunk).
//
// Setting or clearing the deadline is a store. One steady_timer per
// connection is armed only when the new deadline is earlier than the expiry
// it already waits for; when it fires it re-arms for the deadline set since,
// or, if that has passed, closes the socket. So a connection that keeps
// making progress costs one timer wake-up per timeout period, not two timer
// system calls per operation. The deadline runs whether or not an operation
// is pending: callers clear it (expires_never) before waiting on anything
// else, as beast::tcp_stream's timer only ran during its own operations.
//
// Owns: the timer and its small shared state (the pending wait holds it, so
// it may complete after the owner is gone). Thread affinity: the socket's
// io_context thread; nothing locks. Cancellation: destroying the deadline
// detaches it from the socket; an expiry closes the socket, which completes
// any pending operation with an error that check() turns into
// beast::error::timeout.
#pragma once

#include "proxy/net.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>

#include <chrono>
#include <cstdint>
#include <memory>

namespace acp::proxy {

class lazy_deadline {
public:
    using clock = std::chrono::steady_clock;

    /// Closes `socket` when the deadline passes; `socket` must outlive this.
    explicit lazy_deadline(tcp::socket& socket) : s_(std::make_shared<state>(socket)) {}
    ~lazy_deadline() {
        s_->socket = nullptr;
        s_->timer.cancel();
    }
    lazy_deadline(const lazy_deadline&) = delete;
    lazy_deadline& operator=(const lazy_deadline&) = delete;

    template <class Rep, class Period>
    void expires_after(std::chrono::duration<Rep, Period> d) {
        expires_at(clock::now() + d);
    }
    void expires_at(clock::time_point t) {
        s_->deadline = t;
        if (t < s_->armed) {
            arm(s_);
        }
    }
    /// No deadline; a wait already armed stays and finds nothing to do.
    void expires_never() noexcept { s_->deadline = clock::time_point::max(); }

    /// Whether the deadline passed and closed the socket.
    [[nodiscard]] bool expired() const noexcept { return s_->expired; }
    /// `ec`, or beast::error::timeout when it stems from the deadline closing the socket.
    [[nodiscard]] error_code check(const error_code& ec) const noexcept {
        return ec && s_->expired ? error_code(beast::error::timeout) : ec;
    }

private:
    struct state {
        explicit state(tcp::socket& s) : timer(s.get_executor()), socket(&s) {}
        net::steady_timer timer;
        tcp::socket* socket;                                    // null once the owner is gone
        clock::time_point deadline = clock::time_point::max();  // max: none
        clock::time_point armed = clock::time_point::max();     // expiry of the pending wait, max: none
        std::uint64_t generation = 0;                           // tells a superseded wait from the current one
        bool expired = false;
    };

    static void arm(const std::shared_ptr<state>& s) {
        s->armed = s->deadline;
        const auto generation = ++s->generation;
        s->timer.expires_at(s->deadline);  // a pending wait completes with operation_aborted
        s->timer.async_wait([s, generation](const error_code& ec) { fired(s, generation, ec); });
    }

    static void fired(const std::shared_ptr<state>& s, std::uint64_t generation, const error_code& ec) {
        if (ec || generation != s->generation || s->socket == nullptr) {
            return;  // superseded, cancelled, or the owner is gone
        }
        s->armed = clock::time_point::max();
        if (s->deadline == clock::time_point::max()) {
            return;
        }
        if (clock::now() < s->deadline) {
            arm(s);  // moved on since this wait was armed
            return;
        }
        s->expired = true;
        s->deadline = clock::time_point::max();
        error_code ignored;
        s->socket->close(ignored);
    }

    std::shared_ptr<state> s_;
};

/// The downstream connection: a socket and its deadline.
struct timed_socket {
    explicit timed_socket(tcp::socket s) : socket(std::move(s)), deadline(socket) {}
    timed_socket(const timed_socket&) = delete;
    timed_socket& operator=(const timed_socket&) = delete;

    tcp::socket socket;
    lazy_deadline deadline;
};

}  // namespace acp::proxy
