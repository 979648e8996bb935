// Runs the proxy: data listener, admin listener, reload and shutdown.
//
// Owns: the io_context(s), signal handling (SIGTERM/SIGINT drain and exit,
// SIGHUP reload) and the config-file watch. Blocks the calling thread until
// shutdown completes.
#pragma once

#include "config/config.hpp"
#include "config/loader.hpp"

#include <memory>

namespace acp::proxy {

struct serve_options {
    std::shared_ptr<const config::config> initial;  // validated
    config::load_options reload_from;               // re-read on SIGHUP / file change
    // Command-line overrides re-applied to every reloaded config.
    std::optional<config::listen_address> listen_override;
    std::optional<config::listen_address> admin_listen_override;
};

/// Returns the process exit status: 0 after a clean shutdown, 1 when a
/// listener cannot be opened.
int serve(const serve_options& opts);

}  // namespace acp::proxy
