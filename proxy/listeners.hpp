// Listening sockets that survive restarts: systemd socket activation and
// SO_REUSEPORT hand-over.
//
// Socket activation (sd_listen_fds(3) protocol, without libsystemd): when
// LISTEN_PID is this process, LISTEN_FDS sockets start at fd 3; take_inherited()
// claims them once (and unsets the variables so children do not see them).
// An inherited listening TCP socket whose local address equals a configured
// listener (`listen`, `adminListen`) is used instead of binding: systemd keeps
// it open across restarts, so connections made while the proxy restarts wait
// in its queue instead of being refused (a refused connection is a failed pull:
// containerd falls back to the registry, which has no credentials).
//
// SO_REUSEPORT hand-over (`serve --reuse-port`, for a DaemonSet rolling update
// with maxSurge): the new process binds the same address beside the old one
// and attaches a classic BPF program to the port's group that steers every
// new connection to itself (the newest socket of the group). The old process
// then gets none, empties its accept queue, and closes its listener on
// SIGTERM without resetting anything. When the old one is gone the program's
// index is out of range and the kernel falls back to its hash over the one
// socket left. Limits: a hand-over between exactly two processes at a time
// (a third started during one takes over from both); an old process without
// the steering program (a version before this one) resets what is left in its
// queue when it closes — net.ipv4.tcp_migrate_req=1 moves those instead.
//
// Thread affinity: call from the thread that owns the io_context, before it
// runs (start-up). No async calls.
#pragma once

#include "config/config.hpp"
#include "proxy/net.hpp"

#include <optional>
#include <string>
#include <vector>

namespace acp::proxy {

struct inherited_socket {
    int fd = -1;
    std::string name;  // LISTEN_FDNAMES entry ("" when not given)
};

/// The sockets systemd passed to this process (empty when none or meant for
/// another process). Marks them close-on-exec and unsets LISTEN_* .
std::vector<inherited_socket> take_inherited();

struct listener_options {
    bool reuse_port = false;
};

/// How a listener came to be, for the start-up log line.
enum class listener_origin { bound, inherited, reuse_port_shared, reuse_port_alone };
const char* to_string(listener_origin o);

/// Opens `where`: an inherited socket with that local address when there is
/// one (removed from `inherited`), else a new socket bound there. On error
/// returns it; `out` is left empty.
error_code open_listener(net::io_context& ioc, const config::listen_address& where,
                         std::vector<inherited_socket>& inherited, const listener_options& opts,
                         std::optional<tcp::acceptor>& out, tcp::endpoint& bound, listener_origin& origin);

/// Accepts, without waiting, whatever completed connections sit in the
/// socket's queue (so closing it resets nothing). Returns them.
std::vector<tcp::socket> drain_accept_queue(tcp::acceptor& acceptor);

}  // namespace acp::proxy
