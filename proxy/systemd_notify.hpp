// The systemd service notification protocol (sd_notify(3)), without libsystemd.
//
// Owns: one AF_UNIX datagram socket to $NOTIFY_SOCKET (a path, or an abstract
// name when it starts with '@'); nothing when the variable is unset, so the
// same binary runs under systemd Type=notify, Kubernetes or a shell.
// watchdog_interval() reads $WATCHDOG_USEC (and $WATCHDOG_PID, which must be
// this process when set): serve sends WATCHDOG=1 from its event loop at half
// that interval, so a stuck loop stops the pings and systemd restarts it.
//
// Thread affinity: send() may be called from any thread (one sendto per
// message, atomic for datagrams); it never blocks (MSG_DONTWAIT) and a
// failure is returned, never thrown.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace acp::proxy {

class systemd_notifier {
public:
    /// Reads NOTIFY_SOCKET from the environment (empty or unset: disabled).
    systemd_notifier();
    explicit systemd_notifier(std::string socket_address);
    ~systemd_notifier();
    systemd_notifier(const systemd_notifier&) = delete;
    systemd_notifier& operator=(const systemd_notifier&) = delete;

    [[nodiscard]] bool enabled() const { return fd_ >= 0; }
    /// The socket address as given ("" when disabled).
    [[nodiscard]] const std::string& address() const { return address_; }

    /// Sends `state` ("READY=1\nSTATUS=...", "WATCHDOG=1", "STOPPING=1").
    /// Returns an error text on failure, nullopt on success or when disabled.
    std::optional<std::string> send(std::string_view state) const;

    /// Half of $WATCHDOG_USEC when the watchdog is on for this process.
    static std::optional<std::chrono::microseconds> watchdog_interval();

private:
    std::string address_;
    int fd_ = -1;
};

}  // namespace acp::proxy
