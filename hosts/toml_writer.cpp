#include "hosts/toml_writer.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <sstream>

namespace acp::hosts::toml_writer {

namespace {

std::string format_double(double d) {
    std::array<char, 64> buf{};
    const auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), d);
    std::string s(buf.data(), ec == std::errc{} ? end : buf.data());
    if (s.find_first_of(".eEn") == std::string::npos) {  // "n": inf and nan
        s += ".0";
    }
    return s;
}

template <typename T>
std::string streamed(const T& v) {
    std::ostringstream os;
    os << v;
    return os.str();
}

// Tables written as [headers] (and arrays of them as [[headers]]) rather than as values.
bool is_standard_table(const toml::node& n) {
    const auto* t = n.as_table();
    return t != nullptr && !t->is_inline();
}

bool is_array_of_standard_tables(const toml::node& n) {
    const auto* a = n.as_array();
    if (a == nullptr || a->empty()) {
        return false;
    }
    return std::all_of(a->begin(), a->end(), [](const toml::node& e) { return is_standard_table(e); });
}

bool is_header_like(const toml::node& n) {
    return is_standard_table(n) || is_array_of_standard_tables(n);
}

void write_values(std::string& out, const toml::table& t, std::string_view nl, bool force_tables_as_headers) {
    for (const auto& [k, n] : in_source_order(t)) {
        if (is_header_like(*n) || (force_tables_as_headers && n->is_table())) {
            continue;
        }
        out += key(k->str()) + " = " + value(*n);
        out += nl;
    }
}

void write_table(std::string& out, const std::string& path, const toml::table& t, std::string_view nl,
                 bool force_header);

void write_subtables(std::string& out, const std::string& path, const toml::table& t, std::string_view nl) {
    for (const auto& [k, n] : in_source_order(t)) {
        const std::string sub = path + "." + key(k->str());
        if (is_standard_table(*n)) {
            write_table(out, sub, *n->as_table(), nl, false);
        } else if (is_array_of_standard_tables(*n)) {
            for (const auto& e : *n->as_array()) {
                out += "[[" + sub + "]]";
                out += nl;
                write_values(out, *e.as_table(), nl, false);
                write_subtables(out, sub, *e.as_table(), nl);
            }
        }
    }
}

void write_table(std::string& out, const std::string& path, const toml::table& t, std::string_view nl,
                 bool force_header) {
    const bool has_values = std::any_of(t.begin(), t.end(), [](const auto& kv) { return !is_header_like(kv.second); });
    const bool has_subtables =
        std::any_of(t.begin(), t.end(), [](const auto& kv) { return is_header_like(kv.second); });
    if (force_header || has_values || !has_subtables) {
        out += "[" + path + "]";
        out += nl;
    }
    write_values(out, t, nl, false);
    write_subtables(out, path, t, nl);
}

void write_host_table(std::string& out, const toml::table& host, std::string_view drop_host, std::string_view nl) {
    const bool has_values = std::any_of(host.begin(), host.end(), [](const auto& kv) { return !kv.second.is_table(); });
    if (has_values) {
        out += "[host]";
        out += nl;
        write_values(out, host, nl, true);
    }
    for (const auto& [k, n] : in_source_order(host)) {
        if (!n->is_table() || k->str() == drop_host) {
            continue;
        }
        // Each entry gets its own header line: containerd orders hosts by line.
        write_table(out, "host." + key(k->str()), *n->as_table(), nl, true);
    }
}

}  // namespace

std::string quote(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    for (const char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\f':
                out += "\\f";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20 || c == '\x7f') {
                    std::array<char, 8> buf{};
                    std::snprintf(buf.data(), buf.size(), "\\u%04X",
                                  static_cast<unsigned>(static_cast<unsigned char>(c)));
                    out += buf.data();
                } else {
                    out += c;
                }
        }
    }
    out += '"';
    return out;
}

std::string key(std::string_view k) {
    const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
    return bare ? std::string(k) : quote(k);
}

std::string value(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::string:
            return quote(n.as_string()->get());
        case toml::node_type::integer:
            return std::to_string(n.as_integer()->get());
        case toml::node_type::floating_point:
            return format_double(n.as_floating_point()->get());
        case toml::node_type::boolean:
            return n.as_boolean()->get() ? "true" : "false";
        case toml::node_type::date:
            return streamed(n.as_date()->get());
        case toml::node_type::time:
            return streamed(n.as_time()->get());
        case toml::node_type::date_time:
            return streamed(n.as_date_time()->get());
        case toml::node_type::array: {
            std::string out = "[";
            bool first = true;
            for (const auto& e : *n.as_array()) {
                out += first ? "" : ", ";
                out += value(e);
                first = false;
            }
            return out + "]";
        }
        case toml::node_type::table: {
            const auto entries = in_source_order(*n.as_table());
            if (entries.empty()) {
                return "{}";
            }
            std::string out = "{ ";
            bool first = true;
            for (const auto& [k, v] : entries) {
                out += first ? "" : ", ";
                out += key(k->str()) + " = " + value(*v);
                first = false;
            }
            return out + " }";
        }
        case toml::node_type::none:
            break;
    }
    return "\"\"";
}

std::vector<std::pair<const toml::key*, const toml::node*>> in_source_order(const toml::table& t) {
    std::vector<std::pair<const toml::key*, const toml::node*>> entries;
    entries.reserve(t.size());
    for (const auto& [k, n] : t) {
        entries.emplace_back(&k, &n);
    }
    // Keys without a position (built in code, line 0) keep map order after the others.
    auto position = [](const toml::key* k) {
        const auto& b = k->source().begin;
        return std::pair{b.line == 0 ? UINT32_MAX : b.line, b.column};
    };
    std::stable_sort(entries.begin(), entries.end(),
                     [&](const auto& a, const auto& b) { return position(a.first) < position(b.first); });
    return entries;
}

std::string normalized_document(const toml::table& root, std::string_view drop_host, std::string_view nl) {
    std::string out;
    auto is_root_table = [](std::string_view k, const toml::node& n) {
        return (k == "host" && n.is_table()) || is_header_like(n);
    };
    for (const auto& [k, n] : in_source_order(root)) {
        if (!is_root_table(k->str(), *n)) {
            out += key(k->str()) + " = " + value(*n);
            out += nl;
        }
    }
    for (const auto& [k, n] : in_source_order(root)) {
        if (k->str() == "host" && n->is_table()) {
            write_host_table(out, *n->as_table(), drop_host, nl);
        } else if (is_standard_table(*n)) {
            write_table(out, key(k->str()), *n->as_table(), nl, false);
        } else if (is_array_of_standard_tables(*n)) {
            for (const auto& e : *n->as_array()) {
                out += "[[" + key(k->str()) + "]]";
                out += nl;
                write_values(out, *e.as_table(), nl, false);
                write_subtables(out, key(k->str()), *e.as_table(), nl);
            }
        }
    }
    return out;
}

}  // namespace acp::hosts::toml_writer
