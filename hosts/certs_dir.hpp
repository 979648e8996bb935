// containerd's certs.d directory (`config_path`): installing, removing and
// planning the managed `<certs-dir>/<host[:port]>/hosts.toml` files.
//
// Owns: the files it writes under <certs-dir>/<domain>/, and nothing else:
//   hosts.toml                               the managed file (hosts_toml.hpp)
//   hosts.toml.acr-credential-proxy.orig     a user's hosts.toml as it was before our first change
//   hosts.toml.acr-credential-proxy.created  we created hosts.toml ("file") or its directory too ("directory")
// A directory is ours to touch only when it holds one of these or a hosts.toml
// carrying our marker. `remove` puts a backed-up file back byte for byte and
// deletes only what it created. Every write is atomic (atomic_file.hpp); a
// failure leaves the previous state, and errors name the path and the reason.
//
// Thread affinity: none, but one writer per certs dir at a time (no lock is
// taken). Blocking file I/O: the CLI and the control path, never the data path.
#pragma once

#include "config/config.hpp"
#include "hosts/hosts_toml.hpp"

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace acp::hosts {

inline constexpr std::string_view default_certs_dir = "/etc/containerd/certs.d";
inline constexpr std::string_view hosts_file_name = "hosts.toml";
inline constexpr std::string_view backup_file_name = "hosts.toml.acr-credential-proxy.orig";
inline constexpr std::string_view state_file_name = "hosts.toml.acr-credential-proxy.created";

enum class action {
    create,     // no hosts.toml: write ours (and the directory when missing)
    merge,      // a user's hosts.toml: back it up, then write it merged with ours
    update,     // our file, out of date: rewrite it
    unchanged,  // our file, already as rendered: no write at all
    restore,    // no longer wanted: put the backed-up original back, byte for byte
    strip,      // no longer wanted, edited since install: remove only our block
    remove,     // no longer wanted, created by us: delete it (and its directory if we made it and it is empty)
    skip,       // left untouched (not valid TOML, a symlink, ...): see `reason`
};

/// "create", "merge", ... as printed by the CLI.
std::string_view to_string(action a);

struct file_change {
    std::string domain;          // the directory name under certs_dir
    std::filesystem::path path;  // <certs_dir>/<domain>/hosts.toml
    action what = action::skip;
    bool configured = true;          // false: the domain left the config (or `remove`)
    std::string content;             // the file's bytes afterwards (all but remove/skip)
    std::string original;            // the bytes found; re-checked just before any change
    bool create_dir = false;         // create: the directory does not exist yet
    bool replace_backup = false;     // merge: an older, different backup is overwritten
    std::vector<std::string> notes;  // warnings, each naming a path
    std::string reason;              // skip: why it is left untouched
    std::string error;               // install/remove: why applying failed (empty: done)
};

struct report {
    std::filesystem::path certs_dir;
    std::vector<file_change> files;
    std::vector<std::string> errors;  // not about one file: invalid domain or option, unreadable certs dir

    /// Nothing skipped, nothing failed.
    [[nodiscard]] bool ok() const;
};

/// What `install` would do, without writing anything. `domains`: every
/// registry host the proxy serves (configured and discovered); invalid ones
/// are reported in `errors`, duplicates ignored.
report plan(const std::filesystem::path& certs_dir, const std::vector<std::string>& domains,
            const config::listen_address& listen, const render_options& opts = {});

/// Writes hosts.toml for every domain (proxy first), and undoes it for
/// directories we manage whose domain is no longer in `domains`.
report install(const std::filesystem::path& certs_dir, const std::vector<std::string>& domains,
               const config::listen_address& listen, const render_options& opts = {});

/// What `remove` would do, without writing anything.
report plan_remove(const std::filesystem::path& certs_dir);

/// Undoes every managed file under certs_dir: originals restored, our files
/// and the directories we created deleted.
report remove(const std::filesystem::path& certs_dir);

/// The registry domains in a config: every acrInstances[].domains entry, then
/// every registries[].host, in that order, without duplicates.
std::vector<std::string> config_domains(const config::config& cfg);

}  // namespace acp::hosts
