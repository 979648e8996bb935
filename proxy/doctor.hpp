// `acr-credential-proxy doctor [--image REF]`: the Alibaba add-on's FAQ as a
// checklist. In order: the configuration; the Alibaba credential source and
// its expiry; per ACR instance GetAuthorizationToken and ListInstanceEndpoint
// (configured vs discovered domains); per served domain DNS, connect and TLS
// to the address the proxy dials (endpointOverrides win; an overridden name is
// never resolved), `GET /v2/` → 401 → the token realm's DNS, connect and TLS;
// each domain's hosts.toml; containerd's config_path; the running proxy's
// /readyz; with --image, whether its host is served and a manifest HEAD
// through the running proxy.
//
// Owns: the runner and its output (the pure checks are doctor_checks.hpp).
// Thread affinity: the calling thread (main); it blocks. Every network call is
// bounded by `timeout`: Alibaba calls through a clamped libcurl client, name
// lookups on a detached thread it stops waiting for, connect/TLS/HTTP on a
// private io_context with per-operation deadlines. Never prints a secret: the
// AccessKey secret, STS token, temporary password and bearer tokens stay in
// config::secret; only names, sources, hosts and expiry times are shown.
#pragma once

#include "config/config.hpp"
#include "config/kube_access.hpp"
#include "config/loader.hpp"

#include <chrono>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>

namespace acp::proxy {

struct doctor_options {
    config::load_options load;                           // --config / --acr-configuration
    std::optional<config::listen_address> listen;        // --listen
    std::optional<config::listen_address> admin_listen;  // --admin-listen
    std::filesystem::path certs_dir = "/etc/containerd/certs.d";
    std::filesystem::path containerd_config = "/etc/containerd/config.toml";
    std::optional<std::string> image;  // --image REF
    config::kube_access_options kube;  // --kubeconfig / in-cluster, for the pull scope
    std::optional<std::string> node_name;
    std::chrono::milliseconds timeout{5000};
    config::environment env = config::environment::process();
};

/// Runs every check, printing one line per check to `out`. Returns 0 when
/// nothing failed (warnings allowed), 1 when a check failed, 2 when the
/// configuration cannot be loaded.
int run_doctor(const doctor_options& opts, std::ostream& out);

}  // namespace acp::proxy
