#include "hosts/hosts_toml.hpp"

#include "hosts/toml_writer.hpp"

#include <algorithm>
#include <cstdint>
#include <toml++/toml.h>

namespace acp::hosts {

namespace {

struct parsed {
    std::optional<toml::table> doc;
    std::optional<toml_error> error;
};

parsed parse(std::string_view text) {
    try {
        return {toml::parse(text), std::nullopt};
    } catch (const toml::parse_error& e) {
        return {std::nullopt, toml_error{static_cast<int>(e.source().begin.line),
                                         static_cast<int>(e.source().begin.column), std::string(e.description())}};
    }
}

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

// Lines with their terminators, so joining them gives the text back byte for byte.
std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto eol = text.find('\n', pos);
        const auto end = eol == std::string_view::npos ? text.size() : eol + 1;
        lines.push_back(text.substr(pos, end - pos));
        pos = end;
    }
    return lines;
}

char first_non_blank(std::string_view line) {
    const auto p = line.find_first_not_of(" \t");
    return p == std::string_view::npos ? '\0' : line[p];
}

std::string_view line_ending_of(std::string_view text) {
    return text.find("\r\n") != std::string_view::npos ? "\r\n" : "\n";
}

toml::table expected_proxy_host(const render_options& opts) {
    toml::table t{{"capabilities", toml::array{"pull", "resolve"}}};
    if (opts.dial_timeout) {
        t.insert("dial_timeout", *opts.dial_timeout);
    }
    return t;
}

std::string marker_line(const render_options& opts, std::string_view nl) {
    std::string s(marker_prefix);
    s += " " + opts.version + " (block between >>> and <<< is rewritten; \"hosts remove\" restores the original)";
    s += nl;
    return s;
}

std::string managed_block(std::string_view domain, std::string_view proxy, bool with_server, const render_options& opts,
                          std::string_view nl) {
    std::string b(block_begin);
    b += nl;
    if (with_server) {
        b += "server = " + toml_writer::quote(server_url(domain));
        b += nl;
    }
    b += "[host." + toml_writer::quote(proxy) + "]";
    b += nl;
    b += R"(  capabilities = ["pull", "resolve"])";
    b += nl;
    if (opts.dial_timeout) {
        b += "  dial_timeout = " + toml_writer::quote(*opts.dial_timeout);
        b += nl;
    }
    b += block_end;
    b += nl;
    return b;
}

// Lines (1-based) holding a [table] or [[array]] header.
void collect_header_lines(const toml::table& t, std::vector<std::uint32_t>& lines) {
    for (const auto& [k, n] : t) {
        if (const auto* sub = n.as_table(); sub != nullptr && !sub->is_inline()) {
            lines.push_back(sub->source().begin.line);
            collect_header_lines(*sub, lines);
        } else if (const auto* arr = n.as_array()) {
            for (const auto& e : *arr) {
                if (const auto* et = e.as_table(); et != nullptr && !et->is_inline()) {
                    lines.push_back(et->source().begin.line);
                    collect_header_lines(*et, lines);
                }
            }
        }
    }
}

// The last line touched by a value (multi-line strings and arrays) starting before `line`.
std::uint32_t last_value_line_before(const toml::node& n, std::uint32_t line) {
    std::uint32_t last = 0;
    if (const auto* t = n.as_table()) {
        for (const auto& [k, v] : *t) {
            last = std::max(last, last_value_line_before(v, line));
        }
    } else {
        if (n.source().begin.line < line) {
            last = n.source().end.line;
        }
        if (const auto* a = n.as_array()) {
            for (const auto& v : *a) {
                last = std::max(last, last_value_line_before(v, line));
            }
        }
    }
    return last;
}

// Where our block goes in the user's text: before the first table header (so
// `server` stays a root key and our [host] comes before every other), moved
// up over the comment lines directly above that header (they belong to it).
std::size_t insertion_offset(std::string_view text, const toml::table& doc) {
    const auto lines = split_lines(text);
    std::vector<std::uint32_t> header_lines;
    collect_header_lines(doc, header_lines);
    std::uint32_t first = 0;  // 1-based; 0: no header
    for (const auto l : header_lines) {
        if (l >= 1 && l <= lines.size() && first_non_blank(lines[l - 1]) == '[' && (first == 0 || l < first)) {
            first = l;
        }
    }
    if (first == 0) {
        return text.size();
    }
    const auto values_end = last_value_line_before(doc, first);
    while (first > 1 && first - 1 > values_end && first_non_blank(lines[first - 2]) == '#') {
        --first;
    }
    std::size_t offset = 0;
    for (std::uint32_t i = 0; i + 1 < first; ++i) {
        offset += lines[i].size();
    }
    return offset;
}

struct spliced {
    std::string content;
    std::string user_text;
};

spliced splice(std::string_view user_text, const toml::table& user, std::string_view domain, std::string_view proxy,
               const render_options& opts, std::string_view nl) {
    spliced s;
    s.user_text = std::string(user_text);
    auto at = insertion_offset(user_text, user);
    if (at == user_text.size() && !user_text.empty() && user_text.back() != '\n') {
        s.user_text += nl;  // our block must start on its own line
        at = s.user_text.size();
    }
    s.content = marker_line(opts, nl) + s.user_text.substr(0, at) +
                managed_block(domain, proxy, !user.contains("server"), opts, nl) + s.user_text.substr(at);
    return s;
}

std::vector<std::string> host_order(const toml::table& doc, std::string_view skip_a, std::string_view skip_b) {
    std::vector<std::string> keys;
    if (const auto* h = doc.get_as<toml::table>("host")) {
        for (const auto& [k, n] : toml_writer::in_source_order(*h)) {
            if (n->is_table() && k->str() != skip_a && k->str() != skip_b) {
                keys.emplace_back(k->str());
            }
        }
    }
    return keys;
}

// Does `merged` mean exactly the user's file plus our entry (first, by line)
// and, when the user had none, our server?
bool keeps_meaning(std::string_view merged, const toml::table& user, std::string_view domain, std::string_view proxy,
                   const render_options& opts, std::string_view dropped) {
    auto m = parse(merged);
    if (!m.doc) {
        return false;
    }
    toml::table& doc = *m.doc;
    auto* host = doc.get_as<toml::table>("host");
    const auto* ours = host != nullptr ? host->get_as<toml::table>(proxy) : nullptr;
    if (ours == nullptr || *ours != expected_proxy_host(opts)) {
        return false;
    }
    // containerd tries hosts in the order of their line in the file.
    const auto our_line = ours->source().begin.line;
    for (const auto& [k, n] : *host) {
        if (k.str() != proxy && n.is_table() && n.source().begin.line <= our_line) {
            return false;
        }
    }
    if (host_order(doc, proxy, "") != host_order(user, proxy, dropped)) {
        return false;
    }
    host->erase(proxy);
    if (host->empty() && !user.contains("host")) {
        doc.erase("host");
    }
    if (!user.contains("server")) {
        const auto* server = doc.get_as<std::string>("server");
        if (server == nullptr || server->get() != server_url(domain)) {
            return false;
        }
        doc.erase("server");
    }
    if (dropped.empty()) {
        return doc == user;
    }
    toml::table expected = user;
    if (auto* uh = expected.get_as<toml::table>("host")) {
        uh->erase(dropped);
    }
    return doc == expected;
}

bool is_unit(std::string_view u) {
    static constexpr std::string_view units[] = {"ns", "us", "\xC2\xB5s", "\xCE\xBCs", "ms", "s", "m", "h"};
    return std::find(std::begin(units), std::end(units), u) != std::end(units);
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

}  // namespace

std::string toml_error::str() const {
    return "line " + std::to_string(line) + ", column " + std::to_string(column) + ": " + description;
}

std::string proxy_url(const config::listen_address& listen) {
    std::string host = listen.host;
    if (host.empty() || host == "0.0.0.0") {
        host = "127.0.0.1";
    } else if (host == "::" || host == "[::]") {
        host = "::1";
    }
    if (host.find(':') != std::string::npos && host.front() != '[') {
        host = "[" + host + "]";
    }
    return "http://" + host + ":" + std::to_string(listen.port);
}

std::optional<std::string> normalize_domain(std::string_view domain) {
    std::string d(domain);
    std::transform(d.begin(), d.end(), d.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
    if (d.empty() || d.size() > 260 || std::count(d.begin(), d.end(), ':') > 1) {
        return std::nullopt;
    }
    std::string_view host = d;
    if (const auto colon = d.find(':'); colon != std::string::npos) {
        const std::string_view port = std::string_view(d).substr(colon + 1);
        if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), is_digit) ||
            std::stoul(std::string(port)) == 0 || std::stoul(std::string(port)) > 65535) {
            return std::nullopt;
        }
        host = std::string_view(d).substr(0, colon);
    }
    if (host.empty() || host.size() > 253 || host == "_default") {
        return std::nullopt;
    }
    std::size_t start = 0;
    while (start <= host.size()) {
        const auto dot = std::min(host.find('.', start), host.size());
        const auto label = host.substr(start, dot - start);
        const bool ok = !label.empty() && label.size() <= 63 && label.front() != '-' && label.back() != '-' &&
                        std::all_of(label.begin(), label.end(), [](char c) {
                            return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_';
                        });
        if (!ok) {
            return std::nullopt;
        }
        start = dot + 1;
    }
    return d;
}

std::string server_url(std::string_view domain) {
    if (domain == "docker.io") {
        return "https://registry-1.docker.io";
    }
    return "https://" + std::string(domain);
}

bool is_go_duration(std::string_view text) {
    if (text == "0") {
        return true;
    }
    if (text.empty()) {
        return false;
    }
    std::size_t i = 0;
    while (i < text.size()) {
        std::size_t digits = 0;
        for (; i < text.size() && is_digit(text[i]); ++i) {
            ++digits;
        }
        if (i < text.size() && text[i] == '.') {
            for (++i; i < text.size() && is_digit(text[i]); ++i) {
                ++digits;
            }
        }
        if (digits == 0) {
            return false;
        }
        const auto unit_start = i;
        while (i < text.size() && !is_digit(text[i]) && text[i] != '.') {
            ++i;
        }
        if (!is_unit(text.substr(unit_start, i - unit_start))) {
            return false;
        }
    }
    return true;
}

bool is_managed(std::string_view text) {
    for (const auto line : split_lines(text)) {
        if (starts_with(line, marker_prefix) || starts_with(line, block_begin)) {
            return true;
        }
    }
    return false;
}

stripped strip_managed(std::string_view text) {
    stripped s;
    bool in_block = false;
    for (const auto line : split_lines(text)) {
        if (in_block) {
            in_block = !starts_with(line, block_end);
            continue;
        }
        if (starts_with(line, marker_prefix)) {
            s.managed = true;
            continue;
        }
        if (starts_with(line, block_begin)) {
            s.managed = true;
            in_block = true;
            continue;
        }
        s.user_text += line;
    }
    if (in_block) {
        s.error = "the managed block (\"" + std::string(block_begin) + "\") has no end line (\"" +
                  std::string(block_end) + "\")";
    }
    return s;
}

std::optional<std::string> managed_proxy_url(std::string_view text) {
    std::string block;
    bool in_block = false;
    for (const auto line : split_lines(text)) {
        if (in_block && starts_with(line, block_end)) {
            break;
        }
        if (in_block) {
            block += line;
        }
        in_block = in_block || starts_with(line, block_begin);
    }
    auto p = parse(block);
    if (!p.doc) {
        return std::nullopt;
    }
    const auto* host = p.doc->get_as<toml::table>("host");
    if (host == nullptr) {
        return std::nullopt;
    }
    const auto entries = toml_writer::in_source_order(*host);
    if (entries.empty()) {
        return std::nullopt;
    }
    return std::string(entries.front().first->str());
}

rendered render(std::string_view domain, std::string_view proxy, std::optional<std::string_view> existing,
                const render_options& opts) {
    rendered r;
    std::string user_text;
    if (existing) {
        auto whole = parse(*existing);
        if (!whole.doc) {
            r.status = render_status::unparsable;
            r.error = whole.error;
            r.reason = "not valid TOML (" + whole.error->str() + ")";
            return r;
        }
        auto s = strip_managed(*existing);
        if (s.error) {
            r.status = render_status::cannot_merge;
            r.reason = *s.error;
            return r;
        }
        user_text = std::move(s.user_text);
    }
    const auto u = parse(user_text);
    if (!u.doc) {
        r.status = render_status::cannot_merge;
        r.reason = "the file without the managed block is not valid TOML (" + u.error->str() + ")";
        return r;
    }
    const toml::table& user = *u.doc;
    if (const auto* h = user.get("host"); h != nullptr && !h->is_table()) {
        r.status = render_status::cannot_merge;
        r.reason = "its `host` key is not a table, so no [host] entry can be added";
        return r;
    }
    if (const auto* h = user.get_as<toml::table>("host")) {
        for (const auto& [k, n] : *h) {
            if (!n.is_table()) {
                r.status = render_status::cannot_merge;
                r.reason = "host." + toml_writer::key(k.str()) + " is not a table (containerd cannot read this file)";
                return r;
            }
        }
    }
    const auto nl = line_ending_of(existing.value_or(""));

    // 1. The user's text as written, our block spliced in.
    if (auto kept = splice(user_text, user, domain, proxy, opts, nl);
        keeps_meaning(kept.content, user, domain, proxy, opts, "")) {
        r.content = std::move(kept.content);
        r.user_text = std::move(kept.user_text);
        return r;
    }

    // 2. The user's entries re-rendered in standard form, then spliced.
    const auto* user_hosts = user.get_as<toml::table>("host");
    const bool lists_proxy = user_hosts != nullptr && user_hosts->contains(proxy);
    const std::string normalized = toml_writer::normalized_document(user, proxy, nl);
    const auto n = parse(normalized);
    if (n.doc) {
        auto kept = splice(normalized, *n.doc, domain, proxy, opts, nl);
        if (keeps_meaning(kept.content, user, domain, proxy, opts, lists_proxy ? proxy : "")) {
            r.content = std::move(kept.content);
            r.user_text = std::move(kept.user_text);
            r.normalized = true;
            r.notes.emplace_back(
                "its own entries were rewritten as standard [host.\"…\"] tables so the proxy can come first "
                "(comments and layout outside the managed block are not kept)");
            if (lists_proxy) {
                r.notes.push_back("it already listed " + std::string(proxy) +
                                  " as a [host]; the managed entry replaces it");
            }
            return r;
        }
    }
    r.status = render_status::cannot_merge;
    r.reason = "no merged file keeps its meaning with the proxy as the first [host]";
    return r;
}

}  // namespace acp::hosts
