// The pure parts of `acr-credential-proxy doctor`: what a check found, how it
// is printed, and the checks that need no I/O: containerd's config.toml
// (registry config_path for the 1.x and 2.x layouts, `mirrors`, the 2.x
// transfer-service pitfall), a hosts.toml file, configured vs discovered ACR
// domains, the fix for an Alibaba API failure, and image references (the
// docker reference grammar with docker.io normalisation).
//
// Owns: pure functions and plain data; no file system, no network, no
// thread affinity, no async calls. Facts: shared/reference/acr-containerd-facts.md
// §4.1–4.4 (hosts.toml, config_path, transfer service), §1.4 (endpoints).
#pragma once

#include "routing/image_ref.hpp"
#include "tokens/acr_openapi.hpp"
#include "tokens/alibaba_error.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace acp::proxy::doctor {

/// ✓ / ✗ / ! on the checklist.
enum class mark { pass, fail, warn };

/// One line of the checklist (plus, for ✗, the fix).
struct finding {
    mark status = mark::pass;
    std::string text;  // one line; never a secret
    std::string fix;   // fail: exactly what to do (required); warn: optional
    bool operator==(const finding&) const = default;
};

[[nodiscard]] finding pass(std::string text);
[[nodiscard]] finding fail(std::string text, std::string fix);
[[nodiscard]] finding warn(std::string text, std::string fix = {});

/// "✓ text", "✗ text\n    fix: ..." or "! text[\n    fix: ...]", newline-terminated.
/// Continuation lines of `text` are indented under it.
[[nodiscard]] std::string render(const finding& f);

// ---- containerd config.toml ------------------------------------------------------

/// Where containerd 2.x looks when config_path is not set and no other
/// registry option is (facts §4.2).
inline constexpr std::string_view containerd2_default_config_path = "/etc/containerd/certs.d:/etc/docker/certs.d";

/// Checks containerd's config for reading hosts.toml files from `certs_dir`:
///   version 2 (containerd 1.x): [plugins."io.containerd.grpc.v1.cri".registry] config_path
///   version 3 (containerd 2.x): [plugins."io.containerd.cri.v1.images".registry] config_path
///   (no version: version 1, [plugins.cri.registry] or the version 2 name)
/// ✗ when config_path is unset/empty (except the 2.x default), does not list
/// `certs_dir`, sits beside `mirrors` (a hard error for containerd), or is a
/// colon-separated list in a version 3 file whose CRI pulls go through the
/// transfer service (no `use_local_image_pull = true`), which does not split it.
/// `text`: the file's content, nullopt when there is no such file (a `!`:
/// containerd runs on defaults). `path` names the file in messages.
[[nodiscard]] std::vector<finding> check_containerd_config(std::optional<std::string_view> text, std::string_view path,
                                                           std::string_view certs_dir);

// ---- hosts.toml ------------------------------------------------------------------

/// Checks <certs-dir>/<domain>/hosts.toml: present, carries our marker, its
/// first [host] (by position in the file, as containerd orders them) is
/// `proxy_url`, whose capabilities (when listed) include "pull" and "resolve".
/// `text`: nullopt when the file does not exist. `install_command`: the
/// command line that writes the file, quoted in the fix.
[[nodiscard]] finding check_hosts_toml(std::string_view domain, std::string_view path,
                                       std::optional<std::string_view> text, std::string_view proxy_url,
                                       std::string_view install_command);

// ---- ACR instances ---------------------------------------------------------------

/// Configured domains against the ones ListInstanceEndpoint returned: `!` for
/// a configured domain not discovered (a typo or the wrong instance) and for a
/// discovered domain not configured (images on it do not go through the
/// proxy); a ✓ when they match. With nothing configured, the discovered
/// domains are what is served (✗ when there are none).
[[nodiscard]] std::vector<finding> compare_domains(std::string_view instance,
                                                   const std::vector<std::string>& configured,
                                                   const std::vector<tokens::instance_domain>& discovered);

/// What to do about a failed IMDS / STS / ACR OpenAPI call made with `identity`.
[[nodiscard]] std::string fix_for_api_error(const tokens::api_error& err, std::string_view identity);

// ---- image references ------------------------------------------------------------

/// The image reference parser lives in routing/ (the pod-scope index uses it
/// too); doctor keeps its names.
using routing::image_reference;
using routing::image_reference_result;
using routing::parse_image_reference;

}  // namespace acp::proxy::doctor
