// Internal to config/: the stages of one load — read our YAML into a config,
// read a ConfigMap into a config, then cross-check the result — and the
// bookkeeping they share (where each cross-checked value came from).
//
// Owns: nothing beyond one load call. Thread affinity: none.
#pragma once

#include "config/config.hpp"
#include "config/loader.hpp"
#include "config/reader.hpp"

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace acp::config {

/// Where each value that is checked across sections came from, parallel to
/// the config's vectors (filled with key paths only for a base config).
struct origin_table {
    std::vector<where> instances;
    std::vector<std::vector<where>> domains;  // per instance, per domain
    std::vector<where> registry_hosts;
    where default_registry;
    std::map<std::string, where> endpoint_overrides;  // by host
    where admin_listen;
    where tls_listen;
    std::optional<where> tls_files;  // tlsCertFile (or tlsKeyFile) when given
    bool listeners_valid = true;     // false: one was rejected, a collision would be noise
};

struct load_context {
    const environment& env;
    diagnostics diags;
    origin_table origins;
};

/// Our YAML format, on top of `cfg` (normally defaults).
void read_yaml_into(config& cfg, std::string_view text, const std::string& source, load_context& ctx);

/// One ConfigMap key's value and where it lives.
struct configmap_entry {
    std::string value;
    std::string file;    // the key's own file (mounted directory) or the manifest
    int first_line = 0;  // file line of the value's first line; 0 when unknown
};
using configmap_entries = std::map<std::string, configmap_entry>;

/// A manifest (`kind: ConfigMap`), a bare `data:` map, or a map of the keys themselves.
std::optional<configmap_entries> read_configmap_manifest(std::string_view yaml, const std::string& source,
                                                         diagnostics& diags);
/// A directory mounted by Kubernetes (entries starting with ".." skipped).
std::optional<configmap_entries> read_configmap_directory(const std::string& dir, const environment& env,
                                                          diagnostics& diags);

/// The add-on's keys on top of `cfg`: instances appended, scope enabled and
/// replaced, expiring-threshold replaced when given.
void read_configmap_into(config& cfg, const configmap_entries& data, const std::string& source, load_context& ctx);

/// What one ACR instance entry set explicitly (for the ConfigMap's top-level defaults).
struct instance_read {
    acr_instance instance;
    where at;
    std::vector<where> domain_origins;
    bool has_assume_role_arn = false;
    bool has_expire_duration = false;
    bool has_rrsa_role_arn = false;
    bool has_rrsa_oidc_provider_role_arn = false;
};
enum class instance_form { ours, addon };
/// One entry of `acrInstances` (ours) or `acr-registry-info` (the add-on's).
std::optional<instance_read> read_acr_instance(const node_ref& n, instance_form form, load_context& ctx);
/// Checks between an instance's fields (after the ConfigMap's defaults apply).
void check_acr_instance(const instance_read& r, load_context& ctx);

/// Fills origins for a config that came without them (a `base`).
void seed_origins(const config& cfg, origin_table& origins);

/// Cross-section checks, then either the result or config_error with every error.
load_result finish(config cfg, load_context& ctx);

}  // namespace acp::config
