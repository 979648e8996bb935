#include "proxy/config_watch.hpp"

#include "config/logging.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sys/inotify.h>
#include <unistd.h>

namespace acp::proxy {
namespace {

constexpr std::uint32_t watch_mask =
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_MODIFY;

}  // namespace

config_watch::config_watch(const net::any_io_executor& ex, const std::string& config_file,
                           const std::string& configmap_dir)
    : fd_(ex), buffer_(64 * 1024) {
    const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    static const auto log = logging::logger("config");
    if (fd < 0) {
        log->warn("inotify unavailable ({}): reload on SIGHUP only", std::strerror(errno));
        return;
    }
    fd_.assign(fd);
    auto add = [&](const std::string& dir, std::string only_name) {
        const int wd = ::inotify_add_watch(fd, dir.c_str(), watch_mask);
        if (wd < 0) {
            log->warn("cannot watch '{}' ({}): reload on SIGHUP only", dir, std::strerror(errno));
            return;
        }
        watches_.push_back({wd, std::move(only_name)});
    };
    if (!config_file.empty()) {
        const std::filesystem::path p(config_file);
        const auto dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
        add(dir, p.filename().string());
    }
    if (!configmap_dir.empty()) {
        add(configmap_dir, "");
    }
}

bool config_watch::scan(std::size_t n) const {
    bool hit = false;
    std::size_t off = 0;
    while (off + sizeof(inotify_event) <= n) {
        inotify_event ev{};
        std::memcpy(&ev, buffer_.data() + off, sizeof ev);
        std::string_view name;
        if (ev.len > 0) {
            const char* p = buffer_.data() + off + sizeof(inotify_event);
            name = std::string_view(p, ::strnlen(p, ev.len));
        }
        hit = hit || relevant(ev.wd, name) || (ev.mask & IN_Q_OVERFLOW) != 0;
        off += sizeof(inotify_event) + ev.len;
    }
    return hit;
}

bool config_watch::relevant(int wd, std::string_view name) const {
    for (const auto& w : watches_) {
        if (w.wd != wd) {
            continue;
        }
        if (name == "..data" || name.empty()) {
            return true;
        }
        if (w.only_name.empty()) {
            return name.front() != '.';  // keys, not Kubernetes' timestamped dirs (swapped via ..data)
        }
        return name == w.only_name;
    }
    return false;
}

net::awaitable<error_code> config_watch::next_change() {
    for (;;) {
        auto [ec, n] = co_await fd_.async_read_some(net::buffer(buffer_), use_nothrow);
        if (ec) {
            co_return ec;
        }
        const bool hit = scan(n);
        if (hit) {
            co_return error_code{};
        }
    }
}

void config_watch::close() noexcept {
    error_code ec;
    fd_.close(ec);
}

}  // namespace acp::proxy
