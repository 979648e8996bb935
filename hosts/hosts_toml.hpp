// containerd's hosts.toml for one registry domain: the managed block and the merge.
//
// Owns: the pure text transformation, no file system. A rendered file is
//
//     # Managed by acr-credential-proxy 0.1.0 (block between >>> and <<< is rewritten; ...)
//     <the user's root keys and comments, if any>
//     # >>> acr-credential-proxy
//     server = "https://<domain>"                 (only when the user has no server line)
//     [host."http://127.0.0.1:5005"]              (the proxy: first [host], so tried first)
//       capabilities = ["pull", "resolve"]        (resolve: tag lookups skip mirrors without it)
//     # <<< acr-credential-proxy
//     <the user's tables, [host] entries included, byte for byte>
//
// The user's text stays as written when splicing our block in keeps its meaning
// (checked by re-parsing); otherwise (hosts as inline tables or dotted keys, our
// address already listed) the user's part is re-rendered in standard form,
// which drops comments. Facts: shared/reference/acr-containerd-facts.md §4.1.
//
// Thread affinity: none; every function is pure and re-entrant. No async calls.
#pragma once

#include "acp_version.hpp"
#include "config/config.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace acp::hosts {

/// First line of every managed file; `is_managed` looks for it (and for the block).
inline constexpr std::string_view marker_prefix = "# Managed by acr-credential-proxy";
inline constexpr std::string_view block_begin = "# >>> acr-credential-proxy";
inline constexpr std::string_view block_end = "# <<< acr-credential-proxy";

struct render_options {
    std::optional<std::string> dial_timeout;  // Go duration; only containerd >= 2.1 reads it
    std::string version = ACP_VERSION;        // written into the marker line
};

/// The proxy's data address as containerd dials it: "http://127.0.0.1:5005",
/// "http://[::1]:5005". A wildcard bind (0.0.0.0, ::) becomes the loopback
/// address of its family.
std::string proxy_url(const config::listen_address& listen);

/// The lower-case `host[:port]` directory name containerd looks up for a
/// registry domain, or nullopt when `domain` is not one (empty, path
/// separators, bad port, IPv6 literal, `_default`, ...).
std::optional<std::string> normalize_domain(std::string_view domain);

/// `server` for a domain: "https://<domain>", except docker.io whose API lives
/// at registry-1.docker.io (as containerd itself does).
std::string server_url(std::string_view domain);

/// Go's time.ParseDuration syntax without a sign: "0", "200ms", "1.5s", "1m30s".
bool is_go_duration(std::string_view text);

/// Where a TOML document failed to parse (1-based).
struct toml_error {
    int line = 0;
    int column = 0;
    std::string description;
    /// "line L, column C: DESCRIPTION"
    [[nodiscard]] std::string str() const;
};

enum class render_status {
    ok,
    unparsable,    // the existing file is not valid TOML: leave it untouched
    cannot_merge,  // valid TOML, but no merged file keeps its meaning (e.g. `host` is not a table)
};

struct rendered {
    render_status status = render_status::ok;
    std::string content;              // ok: the whole file to write
    std::string user_text;            // ok: the user's part of `content` (= strip_managed(content).user_text)
    bool normalized = false;          // ok: the user's part was re-rendered (comments/layout not kept)
    std::vector<std::string> notes;   // ok: what the caller should warn about
    std::optional<toml_error> error;  // unparsable: where (in `existing` as given)
    std::string reason;               // unparsable / cannot_merge: one line for the operator
};

/// Renders the managed hosts.toml for `domain` with the proxy at `proxy` first.
/// `existing`: the file found on disk (nullopt: none). A file we manage is
/// stripped of our block first, so rendering is idempotent:
/// render(d, p, render(d, p, x).content).content == render(d, p, x).content.
rendered render(std::string_view domain, std::string_view proxy, std::optional<std::string_view> existing,
                const render_options& opts = {});

/// True when `text` carries our marker line or managed block.
bool is_managed(std::string_view text);

struct stripped {
    bool managed = false;
    std::string user_text;             // `text` without our marker line and block
    std::optional<std::string> error;  // a block without its end line
};

/// Removes our marker line and block; everything else is returned byte for byte.
stripped strip_managed(std::string_view text);

/// The proxy URL in a managed file's block (the first [host] key), if any.
std::optional<std::string> managed_proxy_url(std::string_view text);

}  // namespace acp::hosts
