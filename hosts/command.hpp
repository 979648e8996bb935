// The `acr-credential-proxy hosts install | remove | print` subcommand.
//
// Owns: its argument parsing and the human-readable output; the work itself
// is certs_dir.hpp. Thread affinity: none; blocking file I/O on the calling
// thread (main, before anything else runs). No async calls. `remove --wait`
// blocks SIGTERM and SIGINT in the calling thread and then waits for one of
// them (sigwait); the thread's signal mask is restored before it returns.
#pragma once

#include "config/config.hpp"

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace acp::hosts {

/// The part of `acr-credential-proxy --help` about this command.
inline constexpr std::string_view hosts_usage =
    R"(Usage:
  acr-credential-proxy hosts install (--config FILE | --acr-configuration DIR) [--certs-dir DIR] [--dial-timeout DURATION]
  acr-credential-proxy hosts print   (--config FILE | --acr-configuration DIR) [--certs-dir DIR] [--dial-timeout DURATION]
  acr-credential-proxy hosts remove  [--certs-dir DIR] [--wait]

  hosts install  For every registry domain the proxy serves (acrInstances[].domains and
                 registries[].host), write <certs-dir>/<domain>/hosts.toml so containerd tries
                 the proxy (listen) first, with capabilities ["pull", "resolve"]. An existing
                 hosts.toml is merged, never wiped: its server line and [host] entries are kept
                 (after the proxy) and the original is saved beside it as
                 hosts.toml.acr-credential-proxy.orig. Files already up to date are not
                 rewritten; a domain no longer configured gets its original back. A file that
                 is not valid TOML is left untouched with a warning.
  hosts print    Show what install would write, file by file, without writing anything.
  hosts remove   Undo install: restore every original byte for byte, delete the files and
                 directories install created, and nothing else.

  --certs-dir DIR          containerd's registry config_path (default /etc/containerd/certs.d)
  --dial-timeout DURATION  also write dial_timeout (e.g. 200ms) so containerd gives up on a
                           stopped proxy quickly; only containerd >= 2.1 reads it
  --wait                   remove only: after everything was undone, stay running until
                           SIGTERM or SIGINT, then exit 0 (so a DaemonSet can run remove on
                           every node); a signal that arrives while files are being restored
                           waits until they all are. When something could not be undone it
                           exits 1 at once, so the pod restarts and tries again.

  Exit status: 0 every file in place, 1 a file was left untouched or could not be
  written (see the warnings), 2 usage or configuration error.
)";

/// Runs `hosts <args...>`: `args` starts with install | remove | print (the
/// words after "hosts", without the config options main consumed). Domains
/// are config_domains(cfg). Returns the exit status.
int run_hosts_command(const std::vector<std::string>& args, const config::config& cfg, std::ostream& out,
                      std::ostream& err);

/// The same, with domains discovered at run time (ListInstanceEndpoint) added.
int run_hosts_command(const std::vector<std::string>& args, const config::config& cfg,
                      const std::vector<std::string>& discovered_domains, std::ostream& out, std::ostream& err);

}  // namespace acp::hosts
