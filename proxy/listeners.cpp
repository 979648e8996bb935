#include "proxy/listeners.hpp"

#include <charconv>
#include <cstdlib>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace acp::proxy {
namespace {

constexpr int first_inherited_fd = 3;  // SD_LISTEN_FDS_START

std::optional<long> env_number(const char* name) {
    const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): start-up, one thread
    if (v == nullptr || *v == '\0') {
        return std::nullopt;
    }
    long n = 0;
    const std::string_view s(v);
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || p != s.data() + s.size()) {
        return std::nullopt;
    }
    return n;
}

std::vector<std::string> split_names(const char* v, std::size_t n) {
    std::vector<std::string> out(n);
    if (v == nullptr) {
        return out;
    }
    std::string_view s(v);
    for (std::size_t i = 0; i < n && !s.empty(); ++i) {
        const auto colon = s.find(':');
        out[i] = std::string(s.substr(0, colon));
        s = colon == std::string_view::npos ? std::string_view() : s.substr(colon + 1);
    }
    return out;
}

// The local address of a listening TCP socket, or nullopt for anything else.
std::optional<tcp::endpoint> listening_tcp_address(int fd) {
    int type = 0;
    int listening = 0;
    socklen_t len = sizeof(type);
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
        return std::nullopt;
    }
    len = sizeof(listening);
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening == 0) {
        return std::nullopt;
    }
    tcp::endpoint ep;
    auto sl = static_cast<socklen_t>(ep.capacity());
    if (::getsockname(fd, ep.data(), &sl) != 0 ||
        (ep.data()->sa_family != AF_INET && ep.data()->sa_family != AF_INET6)) {
        return std::nullopt;
    }
    ep.resize(sl);
    return ep;
}

// True when something already listens on `ep` (a bind without SO_REUSEPORT fails).
bool address_in_use(const tcp::endpoint& ep) {
    const int probe = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) {
        return false;
    }
    const int one = 1;
    (void)::setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const bool in_use = ::bind(probe, ep.data(), static_cast<socklen_t>(ep.size())) != 0 && errno == EADDRINUSE;
    ::close(probe);
    return in_use;
}

// Steers every new connection of the port's SO_REUSEPORT group to socket `index`
// (an out-of-range index makes the kernel fall back to its hash).
error_code steer_group_to(int fd, std::uint32_t index) {
    sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, index)};  // NOLINT: the kernel's macro
    sock_fprog prog{};
    prog.len = 1;
    prog.filter = code;
    if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) != 0) {
        return {errno, boost::system::system_category()};
    }
    return {};
}

}  // namespace

std::vector<inherited_socket> take_inherited() {
    std::vector<inherited_socket> out;
    const auto pid = env_number("LISTEN_PID");
    const auto fds = env_number("LISTEN_FDS");
    if (pid && fds && *pid == static_cast<long>(::getpid()) && *fds > 0 && *fds < 1024) {
        const auto n = static_cast<std::size_t>(*fds);
        const auto names = split_names(std::getenv("LISTEN_FDNAMES"), n);  // NOLINT(concurrency-mt-unsafe)
        for (std::size_t i = 0; i < n; ++i) {
            const int fd = first_inherited_fd + static_cast<int>(i);
            (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
            out.push_back({fd, names[i]});
        }
    }
    // Ours alone: a child process must not think these are meant for it.
    ::unsetenv("LISTEN_PID");      // NOLINT(concurrency-mt-unsafe)
    ::unsetenv("LISTEN_FDS");      // NOLINT(concurrency-mt-unsafe)
    ::unsetenv("LISTEN_FDNAMES");  // NOLINT(concurrency-mt-unsafe)
    return out;
}

const char* to_string(listener_origin o) {
    switch (o) {
        case listener_origin::bound:
            return "bound";
        case listener_origin::inherited:
            return "inherited from systemd";
        case listener_origin::reuse_port_shared:
            return "SO_REUSEPORT, taking over from the process already listening";
        case listener_origin::reuse_port_alone:
            return "SO_REUSEPORT";
    }
    return "?";
}

error_code open_listener(net::io_context& ioc, const config::listen_address& where,
                         std::vector<inherited_socket>& inherited, const listener_options& opts,
                         std::optional<tcp::acceptor>& out, tcp::endpoint& bound, listener_origin& origin) {
    error_code ec;
    const auto address = net::ip::make_address(where.host, ec);
    if (ec) {
        return ec;
    }
    const tcp::endpoint ep(address, where.port);
    for (auto it = inherited.begin(); it != inherited.end(); ++it) {
        const auto local = listening_tcp_address(it->fd);
        if (!local || *local != ep) {
            continue;
        }
        tcp::acceptor a(ioc);
        if (a.assign(local->protocol(), it->fd, ec); ec) {
            return ec;
        }
        inherited.erase(it);
        bound = *local;
        origin = listener_origin::inherited;
        out.emplace(std::move(a));
        return {};
    }

    const bool others = opts.reuse_port && where.port != 0 && address_in_use(ep);
    tcp::acceptor a(ioc);
    if (a.open(ep.protocol(), ec); ec) {
        return ec;
    }
    if (a.set_option(tcp::acceptor::reuse_address(true), ec); ec) {
        return ec;
    }
    if (opts.reuse_port) {
        const int one = 1;
        if (::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
            return {errno, boost::system::system_category()};
        }
    }
    if (a.bind(ep, ec); ec) {
        return ec;
    }
    if (a.listen(net::socket_base::max_listen_connections, ec); ec) {
        return ec;
    }
    if (opts.reuse_port) {
        // The newest socket of the group is index 1 when one other listens, and
        // (after the old one leaves) 0, where index 1 is out of range: hash.
        if (ec = steer_group_to(a.native_handle(), 1); ec) {
            return ec;
        }
    }
    origin = !opts.reuse_port ? listener_origin::bound
             : others         ? listener_origin::reuse_port_shared
                              : listener_origin::reuse_port_alone;
    bound = a.local_endpoint(ec);
    out.emplace(std::move(a));
    return ec;
}

std::vector<tcp::socket> drain_accept_queue(tcp::acceptor& acceptor) {
    std::vector<tcp::socket> out;
    error_code ec;
    acceptor.non_blocking(true, ec);
    if (ec) {
        return out;
    }
    for (;;) {
        tcp::socket s(acceptor.get_executor());
        acceptor.accept(s, ec);
        if (ec) {
            break;  // would_block: the queue is empty (or the socket is gone)
        }
        out.push_back(std::move(s));
    }
    return out;
}

}  // namespace acp::proxy
