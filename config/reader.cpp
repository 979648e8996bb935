#include "config/reader.hpp"

#include "config/values.hpp"

#include <algorithm>
#include <charconv>
#include <set>

namespace acp::config {
namespace {

std::string describe_range(const duration_rule& rule) {
    std::string out;
    if (rule.max) {
        out = std::string(rule.min_inclusive ? "from " : "more than ") + format_duration(rule.min) +
              (rule.max_inclusive ? " to " : " and less than ") + format_duration(*rule.max);
        if (rule.max_inclusive) {
            out += " inclusive";
        }
    } else {
        out = std::string(rule.min_inclusive ? "at least " : "more than ") + format_duration(rule.min);
    }
    return out;
}

bool in_range(duration d, const duration_rule& rule) {
    if (rule.min_inclusive ? d < rule.min : d <= rule.min) {
        return false;
    }
    if (rule.max && (rule.max_inclusive ? d > *rule.max : d >= *rule.max)) {
        return false;
    }
    return true;
}

}  // namespace

// YAML text is UTF-8 (YAML 1.2 §5.2), but yaml-cpp passes invalid bytes
// through; render() would then write U+FFFD instead, a different value.
bool is_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;
        unsigned min = 0;
        if (c < 0x80) {
            ++i;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            min = 0x10000;
        } else {
            return false;
        }
        if (i + n >= s.size()) {
            return false;
        }
        unsigned cp = c & (0x3fu >> n);
        for (std::size_t k = 1; k <= n; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (cc & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

void diagnostics::error(const where& at, std::string message) {
    errors_.push_back({at.file, at.key, at.line, std::move(message)});
}

void diagnostics::warn(const where& at, std::string message) {
    warnings_.push_back({at.file, at.key, at.line, std::move(message)});
}

where node_ref::at() const {
    where w{doc ? doc->file : std::string(), path, 0};
    if (doc && doc->first_line > 0 && node.IsDefined()) {
        const auto mark = node.Mark();
        if (!mark.is_null()) {
            w.line = doc->first_line + mark.line;
        }
    }
    return w;
}

node_ref node_ref::child(const std::string& key, const YAML::Node& value) const {
    return {value, path.empty() ? key : path + "." + key, doc};
}

node_ref node_ref::element(std::size_t index, const YAML::Node& value) const {
    return {value, path + "[" + std::to_string(index) + "]", doc};
}

std::string kind_of(const YAML::Node& node) {
    switch (node.Type()) {
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined:
            return "nothing";
        case YAML::NodeType::Scalar:
            return "the string " + quote(node.Scalar());
        case YAML::NodeType::Sequence:
            return "a list";
        case YAML::NodeType::Map:
            return "a mapping";
    }
    return "something else";
}

std::optional<YAML::Node> parse_yaml(std::string_view text, const yaml_doc& doc, const std::string& key,
                                     diagnostics& diags) {
    try {
        return YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
        where w{doc.file, key, 0};
        if (!e.mark.is_null() && doc.first_line > 0) {
            w.line = doc.first_line + e.mark.line;
        }
        diags.error(w, "not valid YAML: " + e.msg);
        return std::nullopt;
    }
}

std::map<std::string, node_ref> members(const node_ref& map, std::span<const std::string_view> known,
                                        diagnostics& diags) {
    std::map<std::string, node_ref> out;
    if (map.node.IsNull() || !map.node.IsDefined()) {
        return out;
    }
    if (!map.node.IsMap()) {
        diags.error(map.at(), "expected a mapping of keys to values, got " + kind_of(map.node));
        return out;
    }
    std::set<std::string> seen;
    for (const auto& kv : map.node) {
        const node_ref key_ref{kv.first, map.path, map.doc};
        if (!kv.first.IsScalar()) {
            diags.error(key_ref.at(), "expected a plain key, got " + kind_of(kv.first));
            continue;
        }
        const auto& key = kv.first.Scalar();
        const auto child = map.child(key, kv.second);
        if (!seen.insert(key).second) {
            diags.error(node_ref{kv.first, child.path, map.doc}.at(),
                        "duplicate key " + quote(key) + "; expected each key once");
            continue;
        }
        if (std::find(known.begin(), known.end(), key) == known.end()) {
            auto message = "unknown key " + quote(key) + " ignored";
            if (!known.empty()) {
                message += " (closest known key: " + quote(closest_key(key, known)) + ")";
            }
            diags.warn(node_ref{kv.first, child.path, map.doc}.at(), std::move(message));
            continue;
        }
        out.emplace(key, child);
    }
    return out;
}

std::optional<std::string> read_string(const node_ref& n, diagnostics& diags) {
    if (n.node.IsNull()) {
        return std::string();
    }
    if (!n.node.IsScalar()) {
        diags.error(n.at(), "expected a string, got " + kind_of(n.node));
        return std::nullopt;
    }
    if (!is_utf8(n.node.Scalar())) {
        diags.error(n.at(), "not valid UTF-8; expected UTF-8 text");
        return std::nullopt;
    }
    return std::string(trim(n.node.Scalar()));
}

std::optional<bool> read_bool(const node_ref& n, diagnostics& diags) {
    if (n.node.IsScalar()) {
        const auto& v = n.node.Scalar();
        if (v == "true" || v == "True" || v == "TRUE") {
            return true;
        }
        if (v == "false" || v == "False" || v == "FALSE") {
            return false;
        }
    }
    diags.error(n.at(), "expected true or false, got " + kind_of(n.node));
    return std::nullopt;
}

std::optional<std::uint32_t> read_uint(const node_ref& n, std::uint32_t min, diagnostics& diags) {
    const auto expected = "expected a whole number from " + std::to_string(min) + " to 4294967295";
    if (!n.node.IsScalar()) {
        diags.error(n.at(), expected + ", got " + kind_of(n.node));
        return std::nullopt;
    }
    const auto text = trim(n.node.Scalar());
    std::uint32_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v < min) {
        diags.error(n.at(), quote(n.node.Scalar()) + " is out of range or not a number; " + expected);
        return std::nullopt;
    }
    return v;
}

std::vector<list_item> split_list(std::string_view text, const where& at) {
    std::vector<list_item> out;
    std::size_t start = 0;
    while (start <= text.size()) {
        const auto comma = text.find(',', start);
        const auto item =
            trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
        if (!item.empty()) {
            out.push_back({std::string(item), at});
        }
        if (comma == std::string_view::npos) {
            break;
        }
        start = comma + 1;
    }
    return out;
}

std::optional<std::vector<list_item>> read_list(const node_ref& n, diagnostics& diags) {
    if (n.node.IsNull()) {
        return std::vector<list_item>{};
    }
    if (n.node.IsScalar() && !is_utf8(n.node.Scalar())) {
        diags.error(n.at(), "not valid UTF-8; expected UTF-8 text");
        return std::nullopt;
    }
    if (n.node.IsScalar()) {
        return split_list(n.node.Scalar(), n.at());
    }
    if (!n.node.IsSequence()) {
        diags.error(n.at(), "expected a list or a comma-separated string, got " + kind_of(n.node));
        return std::nullopt;
    }
    std::vector<list_item> out;
    bool ok = true;
    for (std::size_t i = 0; i < n.node.size(); ++i) {
        const auto e = n.element(i, n.node[i]);
        if (!e.node.IsScalar()) {
            diags.error(e.at(), "expected a string, got " + kind_of(e.node));
            ok = false;
            continue;
        }
        if (!is_utf8(e.node.Scalar())) {
            diags.error(e.at(), "not valid UTF-8; expected UTF-8 text");
            ok = false;
            continue;
        }
        out.push_back({std::string(trim(e.node.Scalar())), e.at()});
    }
    if (!ok) {
        return std::nullopt;
    }
    return out;
}

std::optional<duration> check_duration(std::string_view text, const where& at, const duration_rule& rule,
                                       diagnostics& diags) {
    const auto t = trim(text);
    std::optional<duration> d;
    if (rule.bare_number_is_seconds && !t.empty() && t.size() <= 9 &&
        std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        long long seconds = 0;
        std::from_chars(t.data(), t.data() + t.size(), seconds);
        d = std::chrono::seconds(seconds);
    } else {
        d = parse_duration(t);
    }
    if (!d) {
        diags.error(at, quote(t) + " is not a duration; expected Go syntax such as \"15m\", \"1h30m\" or \"90s\"" +
                            std::string(rule.bare_number_is_seconds ? " (or a whole number of seconds)" : "") +
                            ", in whole milliseconds");
        return std::nullopt;
    }
    if (!in_range(*d, rule)) {
        diags.error(at, quote(t) + " is out of range; expected " + describe_range(rule));
        return std::nullopt;
    }
    return d;
}

std::optional<duration> read_duration(const node_ref& n, const duration_rule& rule, diagnostics& diags) {
    if (!n.node.IsScalar()) {
        diags.error(n.at(), "expected a duration such as \"15m\", got " + kind_of(n.node));
        return std::nullopt;
    }
    return check_duration(n.node.Scalar(), n.at(), rule, diags);
}

const duration_rule expiring_threshold_rule{.min = duration::zero(),
                                            .min_inclusive = false,
                                            .max = std::chrono::hours(1),
                                            .max_inclusive = false,
                                            .bare_number_is_seconds = false};

// STS AssumeRole / AssumeRoleWithOIDC DurationSeconds: 900..43200.
const duration_rule expire_duration_rule{.min = std::chrono::minutes(15),
                                         .min_inclusive = true,
                                         .max = std::chrono::hours(12),
                                         .max_inclusive = true,
                                         .bare_number_is_seconds = true};

std::optional<std::vector<std::string>> check_scope_names(const std::vector<list_item>& items, bool subdomain,
                                                          diagnostics& diags) {
    // The add-on's words: watch-namespace "all" (we also take "*", which no
    // namespace can be called), service-account "*". "all" is a valid
    // ServiceAccount name, so there it is a name, as in the add-on.
    const auto* what = subdomain ? "ServiceAccount" : "namespace";
    std::vector<std::string> out;
    const list_item* every = nullptr;
    bool ok = true;
    for (const auto& item : items) {
        const auto name = to_lower(item.value);
        if (name == "*" || (!subdomain && name == "all")) {
            every = &item;
            continue;
        }
        if (!(subdomain ? is_k8s_subdomain(name) : is_k8s_label(name))) {
            diags.error(item.at, quote(item.value) + " is not a valid " + what + " name; expected " +
                                     (subdomain ? "\"*\"" : "\"all\"") + " or " +
                                     "lower-case names of letters, digits and '-'" + (subdomain ? " (and '.')" : "") +
                                     ", comma-separated or as a list");
            ok = false;
            continue;
        }
        if (subdomain && name == "all") {
            diags.warn(item.at,
                       "\"all\" is the ServiceAccount named all (as in the add-on); \"*\" means every "
                       "ServiceAccount");
        }
        if (std::find(out.begin(), out.end(), name) == out.end()) {
            out.push_back(name);
        }
    }
    if (every != nullptr && (!out.empty() || !ok)) {
        diags.error(every->at,
                    quote(every->value) + " means every " + what + " and cannot be combined with " + what + " names");
        return std::nullopt;
    }
    if (!ok) {
        return std::nullopt;
    }
    if (every != nullptr) {
        return std::vector<std::string>{"*"};
    }
    return out;
}

}  // namespace acp::config
