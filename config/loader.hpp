// Loading and validating a config snapshot from our YAML file and/or a
// mounted `acr-configuration` ConfigMap directory (the Alibaba add-on's keys).
//
// Owns: parsing, defaults, validation and the precise error messages.
// Thread affinity: none; every function is re-entrant. Errors are reported by
// throwing `config_error` (startup and reload only, never the data path).
#pragma once

#include "config/config.hpp"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace acp::config {

/// One problem found in the input, pointing at the file, the key path
/// (e.g. `registries[1].auth.passwordFile`) and, when known, the line.
struct diagnostic {
    std::string file;
    std::string key;
    int line = 0;  // 1-based; 0 when unknown
    std::string message;

    /// "FILE:LINE: KEY: MESSAGE" (parts omitted when empty).
    [[nodiscard]] std::string str() const;
};

/// Thrown when the input cannot become a valid config. Holds every error found,
/// and the warnings of the same load (an unknown key often explains an error).
class config_error : public std::runtime_error {
public:
    explicit config_error(std::vector<diagnostic> errors, std::vector<diagnostic> warnings = {});
    [[nodiscard]] const std::vector<diagnostic>& errors() const noexcept { return errors_; }
    [[nodiscard]] const std::vector<diagnostic>& warnings() const noexcept { return warnings_; }

private:
    std::vector<diagnostic> errors_;
    std::vector<diagnostic> warnings_;
};

/// What the loaders may read besides their text input, injectable for tests.
struct environment {
    std::function<std::optional<std::string>(const std::string& name)> getenv;
    std::function<std::optional<std::string>(const std::string& path)> read_file;  // nullopt: unreadable
    static environment process();  // the real environment and file system
};

struct load_result {
    std::shared_ptr<const config> cfg;
    std::vector<diagnostic> warnings;  // unknown keys (with the closest known one), ignored add-on keys
};

struct load_options {
    std::string config_file;            // --config FILE (may be empty)
    std::string acr_configuration_dir;  // --acr-configuration DIR (may be empty)
};

/// Loads from the files named in `opts` (at least one must be set). When both
/// are given, the YAML file is the base and the ConfigMap adds its instances
/// and scope. Throws config_error.
load_result load(const load_options& opts, const environment& env = environment::process());

/// Pure: our YAML format from text. `source` names it in messages.
load_result load_yaml(std::string_view text, std::string_view source, const environment& env);

/// Pure: the add-on's ConfigMap from its key → value map (a mounted directory's
/// files, or a manifest's `data:`), on top of `base` (defaults when null).
load_result load_configmap(const std::map<std::string, std::string>& data, std::string_view source,
                           const environment& env, std::shared_ptr<const config> base = nullptr);

/// Pure: a Kubernetes ConfigMap manifest (`kind: ConfigMap`, `data:` map) → its data.
std::map<std::string, std::string> configmap_manifest_data(std::string_view yaml, std::string_view source);

/// The normalized config as YAML in our own format, secrets redacted.
std::string render(const config& cfg);

/// "HOST:PORT" with an IP literal host ("127.0.0.1:5005", "[::1]:5005"). nullopt when malformed.
std::optional<listen_address> parse_listen_address(std::string_view text);
/// "http(s)://host[:port][/path]" (default ports 80/443). nullopt when malformed.
std::optional<endpoint_url> parse_endpoint_url(std::string_view text);

/// Go-style duration ("15m", "1h30m", "90s", "250ms"). nullopt when malformed.
std::optional<duration> parse_duration(std::string_view text);
/// Shortest Go-style form of a duration ("1h30m").
std::string format_duration(duration d);

}  // namespace acp::config
