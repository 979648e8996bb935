// The configuration model: plain, immutable-after-load structs.
//
// Owns: nothing but data. A `config` is built once by one of the loaders
// (config/loader.hpp), validated, then shared read-only as
// `std::shared_ptr<const config>`; a reload builds a new one and swaps the
// pointer. No thread affinity: immutable after load.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace acp::config {

using duration = std::chrono::milliseconds;

/// A value that must never be printed. It has no stream operator and no
/// implicit conversion; `reveal()` is greppable. Its bytes are wiped
/// (OPENSSL_cleanse, which the optimiser cannot drop) when it is destroyed,
/// replaced, or moved from, so a replaced password or token does not linger
/// in freed memory. Copies the caller made of the string it came from are
/// the caller's to wipe.
class secret {
public:
    secret() = default;
    explicit secret(std::string v) noexcept : value_(std::move(v)) {}
    secret(const secret& other) = default;
    secret(secret&& other) noexcept;
    secret& operator=(const secret& other);
    secret& operator=(secret&& other) noexcept;
    ~secret();
    [[nodiscard]] const std::string& reveal() const noexcept { return value_; }
    [[nodiscard]] bool empty() const noexcept { return value_.empty(); }
    bool operator==(const secret& other) const { return value_ == other.value_; }

private:
    void wipe() noexcept;
    std::string value_;
};

/// host:port to listen on. `host` is an IP literal (IPv6 without brackets).
struct listen_address {
    std::string host;
    std::uint16_t port = 0;
    bool operator==(const listen_address&) const = default;
};

/// Which HTTP version the proxy speaks to an upstream (`http2:` per registry
/// and ACR instance). automatic: over TLS, ALPN offers h2 and http/1.1 and the
/// registry picks (plain http stays HTTP/1.1); on: h2 only (over plain http,
/// h2c with prior knowledge); off: HTTP/1.1 only.
enum class http2_mode { automatic, on, off };

/// A parsed absolute http(s) URL for an upstream endpoint.
struct endpoint_url {
    std::string scheme;  // "http" | "https"
    std::string host;    // lower-case; IPv6 without brackets
    std::uint16_t port = 0;
    std::string path;  // "" or starting with '/'
    bool operator==(const endpoint_url&) const = default;
};

enum class log_format { text, json };

struct log_config {
    std::string level = "info";  // trace|debug|info|warn|error|critical|off
    log_format format = log_format::text;
    bool operator==(const log_config&) const = default;
};

/// Alibaba Cloud identity and endpoints. Every field is optional.
struct alibaba_config {
    std::string region_id;  // empty: from instance metadata
    std::string imds_endpoint = "http://100.100.100.200";
    std::string sts_endpoint = "https://sts.aliyuncs.com";
    std::string acr_endpoint = "https://cr.{regionId}.aliyuncs.com";  // {regionId} expanded per instance
    bool use_vpc_endpoints = false;
    std::string access_key_id_file;  // optional AK from files (secrets never on the command line)
    std::string access_key_secret_file;
    std::string security_token_file;

    // ECS RAM role through instance metadata (env ALIBABA_CLOUD_ECS_METADATA,
    // ALIBABA_CLOUD_ECS_METADATA_DISABLED, ALIBABA_CLOUD_IMDSV1_DISABLED also apply).
    std::string ecs_role_name;                        // empty: discovered from metadata
    bool ecs_metadata_disabled = false;               // never use the ECS RAM role
    bool imdsv1_disabled = false;                     // hardened mode: fail rather than fall back to token-less IMDSv1
    duration imds_token_ttl = std::chrono::hours(6);  // X-aliyun-ecs-metadata-token-ttl-seconds (1..21600 s)
    duration sts_duration = std::chrono::hours(1);    // DurationSeconds for RRSA AssumeRoleWithOIDC (>= 900 s)

    // Control-path behaviour of the ACR temporary-password refresher.
    duration api_timeout = std::chrono::seconds(10);            // one STS / OpenAPI call
    duration first_credential_wait = std::chrono::seconds(15);  // a request waiting for an instance's first password
    duration refresh_backoff_initial = std::chrono::seconds(1);
    duration refresh_backoff_max = std::chrono::minutes(5);
    duration endpoint_relist_interval = std::chrono::minutes(10);  // ListInstanceEndpoint re-listing
    bool operator==(const alibaba_config&) const = default;
};

/// One ACR instance (Enterprise when instance_id is set, Personal otherwise).
struct acr_instance {
    std::string instance_id;
    std::string region_id;             // empty: the node's region
    std::vector<std::string> domains;  // empty: discovered with ListInstanceEndpoint
    std::string assume_role_arn;       // optional cross-account role
    duration expire_duration = std::chrono::hours(1);
    std::string role_session_name;
    std::string rrsa_role_arn;  // the add-on's per-instance RRSA keys
    std::string rrsa_oidc_provider_role_arn;
    std::vector<std::string> realm_hosts = {"*.aliyuncs.com"};
    http2_mode http2 = http2_mode::automatic;
    bool operator==(const acr_instance&) const = default;
};

enum class auth_kind { anonymous, basic, docker_config };

struct registry_auth {
    auth_kind kind = auth_kind::anonymous;
    std::string username;
    std::string password_file;       // basic: where the password came from (for messages)
    std::string password_env;        // basic: or the environment variable it came from
    secret password;                 // basic: loaded at config load time
    std::string docker_config_path;  // docker_config: a config.json with "auths"
    bool operator==(const registry_auth&) const = default;
};

/// Any non-ACR registry.
struct registry {
    std::string host;  // lower-case, may carry :port
    registry_auth auth;
    std::string ca_file;
    bool insecure_skip_verify = false;
    std::vector<std::string> realm_hosts;  // empty: the registry host itself only
    http2_mode http2 = http2_mode::automatic;
    bool operator==(const registry&) const = default;
};

/// Who may pull (the add-on's watch-namespace / service-account). Stored now,
/// enforced by the scope issue.
struct scope_config {
    bool enabled = false;                                     // true in the ConfigMap form
    std::vector<std::string> namespaces = {"default"};        // {"*"} means all
    std::vector<std::string> service_accounts = {"default"};  // {"*"} means all
    duration wait_for_pod = std::chrono::seconds(5);
    bool operator==(const scope_config&) const = default;
};

struct timeout_config {
    duration header_read = std::chrono::seconds(10);  // downstream request head
    duration idle = std::chrono::seconds(60);         // downstream keep-alive idle
    duration upstream_connect = std::chrono::seconds(5);
    duration upstream_headers = std::chrono::seconds(25);  // below containerd 2.3's 30 s
    duration upstream_idle = std::chrono::seconds(60);     // no body byte for this long
    duration shutdown_grace = std::chrono::seconds(30);
    bool operator==(const timeout_config&) const = default;
};

struct limit_config {
    std::uint32_t max_connections = 1024;
    std::uint32_t max_idle_upstream_per_host = 16;
    std::uint32_t max_concurrent_streams = 100;  // per downstream HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS)
    bool operator==(const limit_config&) const = default;
};

struct config {
    std::string source;  // file or directory it was loaded from, for messages
    listen_address listen{"127.0.0.1", 5005};
    listen_address admin_listen{"127.0.0.1", 5006};
    // The optional TLS data listener (ALPN h2 / http/1.1); both files required with it.
    std::optional<listen_address> tls_listen;
    std::string tls_cert_file;
    std::string tls_key_file;
    duration expiring_threshold = std::chrono::minutes(15);
    bool follow_redirects = false;
    log_config log;
    alibaba_config alibaba;
    std::vector<acr_instance> acr_instances;
    std::vector<registry> registries;
    std::string default_registry;                            // empty: requests without ?ns= get 404
    std::map<std::string, endpoint_url> endpoint_overrides;  // lower-case host[:port] -> URL
    scope_config scope;
    timeout_config timeouts;
    limit_config limits;
    bool operator==(const config&) const = default;
};

}  // namespace acp::config
