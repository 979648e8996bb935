// Runs the proxy: data listener, admin listener, reload and shutdown.
//
// Owns: the io_context(s), signal handling (SIGTERM/SIGINT drain and exit,
// SIGHUP reload), the config-file watch, the hosts.toml sync (--certs-dir) and
// the systemd notifications (READY=1 once listening with the config loaded,
// WATCHDOG=1 from the event loop, STOPPING=1). Blocks the calling thread until
// shutdown completes.
#pragma once

#include "config/config.hpp"
#include "config/kube_access.hpp"
#include "config/loader.hpp"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace acp::proxy {

struct serve_options {
    std::shared_ptr<const config::config> initial;  // validated
    config::load_options reload_from;               // re-read on SIGHUP / file change
    // Command-line overrides re-applied to every reloaded config.
    std::optional<config::listen_address> listen_override;
    std::optional<config::listen_address> admin_listen_override;
    // --certs-dir: keep <dir>/<domain>/hosts.toml in step with the served
    // domains (configured and discovered) while running; see certs_sync.hpp.
    std::optional<std::filesystem::path> certs_dir;
    std::optional<std::string> dial_timeout;  // --dial-timeout, written into those files
    // --reuse-port: SO_REUSEPORT hand-over to/from another process on the same
    // addresses (a DaemonSet rolling update with maxSurge); see listeners.hpp.
    bool reuse_port = false;
    // The pull scope's access to the Kubernetes API (--kubeconfig / in-cluster) and
    // the node whose pods are watched (--node-name, else $NODE_NAME, else the host name).
    config::kube_access_options kube;
    std::optional<std::string> node_name;
};

/// Returns the process exit status: 0 after a clean shutdown, 1 when a
/// listener cannot be opened.
int serve(const serve_options& opts);

}  // namespace acp::proxy
