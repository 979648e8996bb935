// Internal to config/: the pieces both loaders share — where a value came
// from, the diagnostics collector, and typed reads of yaml-cpp nodes that
// report every problem with file, key path, line and the bad value.
//
// Owns: nothing beyond one load call. Thread affinity: none (one load_context
// per load call, used by that call only).
#pragma once

#include "config/config.hpp"
#include "config/loader.hpp"

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace acp::config {

/// Where a value came from, for messages.
struct where {
    std::string file;
    std::string key;
    int line = 0;  // 1-based; 0 when unknown
};

/// Collects every error and warning of one load.
class diagnostics {
public:
    void error(const where& at, std::string message);
    void warn(const where& at, std::string message);
    [[nodiscard]] const std::vector<diagnostic>& errors() const noexcept { return errors_; }
    [[nodiscard]] const std::vector<diagnostic>& warnings() const noexcept { return warnings_; }
    std::vector<diagnostic> take_warnings() { return std::move(warnings_); }

private:
    std::vector<diagnostic> errors_;
    std::vector<diagnostic> warnings_;
};

/// A parsed YAML text: the file it is in and the file line of its first line.
struct yaml_doc {
    std::string file;
    int first_line = 1;  // file line of the text's line 1; 0 when unknown
};

/// A YAML node with its key path and document, so every read can say where.
struct node_ref {
    YAML::Node node;
    std::string path;
    const yaml_doc* doc = nullptr;

    [[nodiscard]] where at() const;
    [[nodiscard]] node_ref child(const std::string& key, const YAML::Node& value) const;
    [[nodiscard]] node_ref element(std::size_t index, const YAML::Node& value) const;
};

/// "a string", "a list", "a mapping", "null" — for "expected X, got Y".
std::string kind_of(const YAML::Node& node);

/// Parses `text` as one YAML document. On a syntax error, reports it (with
/// the line) under `key` and returns nullopt.
std::optional<YAML::Node> parse_yaml(std::string_view text, const yaml_doc& doc, const std::string& key,
                                     diagnostics& diags);

/// The members of a mapping whose keys are in `known`, by key. Unknown keys
/// are warnings naming the closest known key; duplicate keys and non-scalar
/// keys are errors. Null counts as an empty mapping; anything else that is not
/// a mapping is an error (and yields nothing).
std::map<std::string, node_ref> members(const node_ref& map, std::span<const std::string_view> known,
                                        diagnostics& diags);

/// Valid UTF-8 (no overlongs, surrogates or bytes past U+10FFFF).
bool is_utf8(std::string_view s);

/// Typed reads. Each reports a wrong type or value and returns nullopt.
std::optional<std::string> read_string(const node_ref& n, diagnostics& diags);  // null -> ""
std::optional<bool> read_bool(const node_ref& n, diagnostics& diags);
std::optional<std::uint32_t> read_uint(const node_ref& n, std::uint32_t min, diagnostics& diags);

/// One item of a list-or-comma-separated value, with where it was.
struct list_item {
    std::string value;
    where at;
};
/// A YAML list of strings, or one string of comma-separated items (the
/// add-on's form). Items are trimmed; empty items are dropped.
std::optional<std::vector<list_item>> read_list(const node_ref& n, diagnostics& diags);
std::vector<list_item> split_list(std::string_view text, const where& at);

/// Duration checks shared by both forms. `text` is the raw value.
struct duration_rule {
    duration min = duration::zero();
    bool min_inclusive = true;
    std::optional<duration> max;
    bool max_inclusive = true;
    bool bare_number_is_seconds = false;  // the add-on's expireDuration may be "3600"
};
std::optional<duration> check_duration(std::string_view text, const where& at, const duration_rule& rule,
                                       diagnostics& diags);
std::optional<duration> read_duration(const node_ref& n, const duration_rule& rule, diagnostics& diags);

/// The rules for the keys both forms share.
extern const duration_rule expiring_threshold_rule;  // (0, 1h)
extern const duration_rule expire_duration_rule;     // [15m, 12h], bare number = seconds

/// watch-namespace / service-account: a comma-separated string or a list of
/// Kubernetes names (lower-cased, deduplicated). Every namespace is "all" (or
/// "*"), every ServiceAccount "*" -> {"*"}; "all" as a ServiceAccount is the
/// name (with a warning), as in the add-on. The every-word mixed with names
/// is an error. `subdomain` selects ServiceAccount (RFC 1123 subdomain) vs
/// namespace (label) rules.
std::optional<std::vector<std::string>> check_scope_names(const std::vector<list_item>& items, bool subdomain,
                                                          diagnostics& diags);

}  // namespace acp::config
