// Keeps containerd's certs.d in step with what `serve` serves (`serve --certs-dir`).
//
// Owns: nothing on disk itself; every write goes through hosts::install
// (atomic, merge-never-wipe, originals backed up). After each configuration
// (start, reload, newly discovered ACR domains) it installs hosts.toml for
// every configured and discovered domain and undoes it for domains that left.
// Files stay in place when the proxy exits: containerd then falls back to the
// registry itself (`hosts remove` or the cleanup manifest undoes them).
//
// Thread affinity: call sync() from one thread at a time (serve uses its
// control thread); blocking file I/O, never on the data path. It does not
// throw: every failure comes back in certs_sync_result::errors. Logs each file
// that changed and each warning once per distinct text (a file left untouched
// is not re-reported at every reload).
#pragma once

#include "config/config.hpp"
#include "hosts/hosts_toml.hpp"

#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace acp::proxy {

struct certs_sync_result {
    bool attempted = false;            // false: waiting for ACR domain discovery
    std::size_t changed = 0;           // files created, merged, updated, restored or removed
    std::vector<std::string> errors;   // one line each, naming the path
    std::vector<std::string> pending;  // ACR instances whose domains are not known yet
};

class certs_sync {
public:
    certs_sync(std::filesystem::path certs_dir, hosts::render_options opts);

    /// Installs hosts.toml for config_domains(cfg). `cfg` must already hold
    /// discovered domains (an ACR instance with empty `domains` has not been
    /// discovered yet): until every instance has domains nothing is written,
    /// so a restart does not remove and re-add files a previous run wrote.
    certs_sync_result sync(const config::config& cfg);

    [[nodiscard]] const std::filesystem::path& certs_dir() const { return certs_dir_; }

private:
    std::filesystem::path certs_dir_;
    hosts::render_options opts_;
    std::set<std::string> reported_;  // warnings already logged
    bool waiting_logged_ = false;
};

}  // namespace acp::proxy
