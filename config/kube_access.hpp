// How the proxy reaches the Kubernetes API server to watch this node's pods
// (issue 10): from a kubeconfig file (--kubeconfig, bare nodes) or in-cluster
// (a DaemonSet: KUBERNETES_SERVICE_HOST/PORT and the ServiceAccount token and
// CA that kubelet mounts), plus the node whose pods are watched.
//
// Owns: kube_access (a plain value), parse_kubeconfig (pure: text in, value or
// one-line errors out, no I/O) and load_kube_access (reads the files).
//
// Thread affinity: none (plain functions). Credentials (bearer token, client
// key) never reach an error message: errors name the file, the key and the
// context, never a value. The token is re-read from token_file on every
// (re)connect by the watcher (projected ServiceAccount tokens rotate), so only
// the path is kept when the token comes from a file.
#pragma once

#include "config/config.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace acp::config {

inline constexpr std::string_view in_cluster_serviceaccount_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
inline constexpr std::size_t max_kubeconfig_bytes = 1024 * 1024;

struct kube_access {
    std::string source;  // for messages: "kubeconfig /etc/kubernetes/kubelet.conf (context x)" / "in-cluster"
    std::string server;  // "https://10.0.0.1:443" / "https://127.0.0.1:6443", no trailing slash
    // Trust for the server's certificate: PEM text, or a file; both empty means the system store.
    std::string ca_pem;
    std::string ca_file;
    bool insecure_skip_tls_verify = false;
    // Client authentication, any of: a bearer token (literal, or a file re-read on every connect),
    // a client certificate and key (PEM text, or files).
    secret bearer_token;
    std::string token_file;
    std::string client_cert_pem;
    std::string client_cert_file;
    secret client_key_pem;
    std::string client_key_file;
    std::string tls_server_name;  // cluster.tls-server-name, may be empty
};

struct kubeconfig_result {
    std::optional<kube_access> access;
    // One line each (at most 400 characters, at most 16 lines), naming the key
    // ("users[admin].user.tokenFile: …").
    std::vector<std::string> errors;
};

/// A kubeconfig document (YAML or JSON). `base_dir` resolves relative file
/// paths (the kubeconfig's own directory, as kubectl does). `context` empty:
/// current-context. Supported: clusters[].cluster.{server, certificate-authority,
/// certificate-authority-data, insecure-skip-tls-verify, tls-server-name},
/// users[].user.{token, tokenFile, client-certificate(-data), client-key(-data)}.
/// Refused with a clear error: exec / auth-provider users, username/password,
/// a server that is not http(s)://, a missing context/cluster/user.
[[nodiscard]] kubeconfig_result parse_kubeconfig(std::string_view text, const std::filesystem::path& base_dir,
                                                 std::string_view context = {});

struct kube_access_options {
    std::optional<std::filesystem::path> kubeconfig{};  // --kubeconfig
    std::string context{};                              // --kube-context (empty: current-context)
    // In-cluster discovery (used when kubeconfig is not set); overridable for tests.
    std::filesystem::path serviceaccount_dir = std::string(in_cluster_serviceaccount_dir);
    std::optional<std::string> service_host{};  // $KUBERNETES_SERVICE_HOST
    std::optional<std::string> service_port{};  // $KUBERNETES_SERVICE_PORT
};

/// kubeconfig when given (read, bounded by max_kubeconfig_bytes, parsed);
/// otherwise in-cluster: https://<service_host>:<service_port> (IPv6 bracketed),
/// token_file = <dir>/token (must exist and be non-empty now), ca_file =
/// <dir>/ca.crt. Returns errors (one line each, naming the file or variable)
/// when neither works: "scope needs the Kubernetes API: no --kubeconfig and
/// KUBERNETES_SERVICE_HOST is not set (not running in a pod)".
[[nodiscard]] kubeconfig_result load_kube_access(const kube_access_options& opts);

/// The node whose pods are watched: `flag` (--node-name), else `env_node_name`
/// ($NODE_NAME from the downward API), else `host_name` lower-cased. Returns
/// the name and where it came from ("--node-name", "NODE_NAME", "host name"),
/// or an error when the chosen one is not a DNS subdomain.
struct node_name_result {
    std::string name;
    std::string from;
    std::string error;
};
[[nodiscard]] node_name_result choose_node_name(std::optional<std::string_view> flag,
                                                std::optional<std::string_view> env_node_name,
                                                std::string_view host_name);

/// choose_node_name with this process's $NODE_NAME (empty counts as unset)
/// and host name: what serve and doctor both use.
[[nodiscard]] node_name_result node_name_of_this_node(const std::optional<std::string>& flag);

}  // namespace acp::config
