#include "proxy/systemd_notify.hpp"

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <system_error>
#include <unistd.h>

namespace acp::proxy {
namespace {

std::string env_or_empty(const char* name) {
    const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read before any thread starts
    return v == nullptr ? std::string() : std::string(v);
}

std::optional<unsigned long long> parse_unsigned(const std::string& text) {
    unsigned long long v = 0;
    const auto* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, v);
    if (ec != std::errc() || p != end || text.empty()) {
        return std::nullopt;
    }
    return v;
}

}  // namespace

systemd_notifier::systemd_notifier() : systemd_notifier(env_or_empty("NOTIFY_SOCKET")) {}

systemd_notifier::systemd_notifier(std::string socket_address) : address_(std::move(socket_address)) {
    if (address_.empty() || (address_[0] != '/' && address_[0] != '@')) {
        address_.clear();  // unset, or a form we do not speak (vsock:...)
        return;
    }
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

systemd_notifier::~systemd_notifier() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

std::optional<std::string> systemd_notifier::send(std::string_view state) const {
    if (address_.empty()) {
        return std::nullopt;
    }
    if (fd_ < 0) {
        return "NOTIFY_SOCKET " + address_ + ": cannot create a socket";
    }
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (address_.size() >= sizeof(sa.sun_path)) {
        return "NOTIFY_SOCKET " + address_ + ": path too long";
    }
    std::memcpy(sa.sun_path, address_.data(), address_.size());
    if (address_[0] == '@') {
        sa.sun_path[0] = '\0';  // abstract namespace
    }
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
    const auto sent = ::sendto(fd_, state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                               reinterpret_cast<const sockaddr*>(&sa), len);  // NOLINT: the sockets API
    if (sent < 0) {
        return "NOTIFY_SOCKET " + address_ + ": " + std::generic_category().message(errno);
    }
    return std::nullopt;
}

std::optional<std::chrono::microseconds> systemd_notifier::watchdog_interval() {
    const auto usec = parse_unsigned(env_or_empty("WATCHDOG_USEC"));
    if (!usec || *usec == 0) {
        return std::nullopt;
    }
    const auto pid_text = env_or_empty("WATCHDOG_PID");
    if (!pid_text.empty()) {
        const auto pid = parse_unsigned(pid_text);
        if (!pid || *pid != static_cast<unsigned long long>(::getpid())) {
            return std::nullopt;  // meant for another process (e.g. our parent)
        }
    }
    return std::chrono::microseconds(static_cast<std::chrono::microseconds::rep>(*usec / 2));
}

}  // namespace acp::proxy
