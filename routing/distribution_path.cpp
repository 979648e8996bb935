#include "routing/distribution_path.hpp"

#include <algorithm>
#include <charconv>
#include <vector>

namespace acp::routing {
namespace {

constexpr bool is_lower_alnum(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
constexpr bool is_alnum(char c) noexcept {
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}
constexpr bool is_hex_lower(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}
constexpr bool is_word(char c) noexcept {
    return is_alnum(c) || c == '_';
}

// path-component := [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
bool is_valid_component(std::string_view c) noexcept {
    if (c.empty() || !is_lower_alnum(c.front()) || !is_lower_alnum(c.back())) {
        return false;
    }
    std::size_t i = 0;
    while (i < c.size()) {
        if (is_lower_alnum(c[i])) {
            ++i;
            continue;
        }
        const std::size_t start = i;
        while (i < c.size() && !is_lower_alnum(c[i])) {
            ++i;
        }
        const auto sep = c.substr(start, i - start);
        const bool ok = sep == "." || sep == "_" || sep == "__" ||
                        std::all_of(sep.begin(), sep.end(), [](char ch) { return ch == '-'; });
        if (!ok) {
            return false;
        }
    }
    return true;
}

// algorithm-component := [a-z0-9]+ ; separators [+._-]
bool is_valid_algorithm(std::string_view a) noexcept {
    if (a.empty() || !is_lower_alnum(a.front()) || !is_lower_alnum(a.back())) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        const char c = a[i];
        if (is_lower_alnum(c)) {
            continue;
        }
        if (c != '+' && c != '.' && c != '_' && c != '-') {
            return false;
        }
        if (!is_lower_alnum(a[i + 1])) {  // back() is alnum, so i + 1 is in range
            return false;
        }
    }
    return true;
}

bool is_valid_port(std::string_view p) noexcept {
    if (p.empty() || p.size() > 5) {
        return false;
    }
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    return ec == std::errc() && ptr == p.data() + p.size() && v > 0 && v <= 65535;
}

bool is_valid_hostname(std::string_view h) noexcept {
    if (h.empty() || h.size() > 253) {
        return false;
    }
    std::size_t label_start = 0;
    for (std::size_t i = 0; i <= h.size(); ++i) {
        if (i == h.size() || h[i] == '.') {
            const auto label = h.substr(label_start, i - label_start);
            if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
                return false;
            }
            label_start = i + 1;
            continue;
        }
        if (!is_alnum(h[i]) && h[i] != '-') {
            return false;
        }
    }
    return true;
}

std::string to_lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    for (;;) {
        const auto pos = s.find(sep, start);
        if (pos == std::string_view::npos) {
            out.push_back(s.substr(start));
            return out;
        }
        out.push_back(s.substr(start, pos - start));
        start = pos + 1;
    }
}

struct query_params {
    std::optional<std::string> ns;
    std::optional<std::string> n;
    std::optional<std::string> last;
};

// Parses the query; every known parameter may appear at most once. Unknown
// parameters are dropped (never forwarded), so nothing can be smuggled upstream.
boost::system::result<query_params, path_error> parse_query(std::string_view q) {
    query_params out;
    if (q.empty()) {
        return out;
    }
    for (auto pair : split(q, '&')) {
        if (pair.empty()) {
            continue;
        }
        const auto eq = pair.find('=');
        auto key = decode_query_component(pair.substr(0, eq));
        auto value = decode_query_component(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
        if (!key) {
            return path_error::query_invalid;
        }
        if (!value) {
            return *key == "ns" ? path_error::ns_invalid : path_error::query_invalid;
        }
        std::optional<std::string>* slot = nullptr;
        if (*key == "ns") {
            slot = &out.ns;
        } else if (*key == "n") {
            slot = &out.n;
        } else if (*key == "last") {
            slot = &out.last;
        } else {
            continue;
        }
        if (slot->has_value()) {
            // A repeated parameter is ambiguous: refuse it.
            return slot == &out.ns ? path_error::ns_invalid : path_error::query_invalid;
        }
        *slot = std::move(*value);
    }
    if (out.ns && !is_valid_host(*out.ns)) {
        return path_error::ns_invalid;
    }
    if (out.ns) {
        out.ns = to_lower(*out.ns);
    }
    if (out.n) {
        const auto& n = *out.n;
        unsigned v = 0;
        auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
        if (n.empty() || n.size() > 6 || ec != std::errc() || ptr != n.data() + n.size()) {
            return path_error::query_invalid;
        }
    }
    if (out.last && !is_valid_tag(*out.last)) {
        return path_error::query_invalid;
    }
    return out;
}

}  // namespace

std::string_view to_string(request_kind k) noexcept {
    switch (k) {
        case request_kind::ping:
            return "ping";
        case request_kind::manifest:
            return "manifest";
        case request_kind::blob:
            return "blob";
        case request_kind::tags_list:
            return "tags";
    }
    return "unknown";
}

std::string_view to_string(path_error e) noexcept {
    switch (e) {
        case path_error::not_found:
            return "not a registry API path served by this proxy";
        case path_error::bad_target:
            return "malformed request target";
        case path_error::name_invalid:
            return "invalid repository name";
        case path_error::tag_invalid:
            return "invalid tag or digest";
        case path_error::digest_invalid:
            return "invalid digest";
        case path_error::ns_invalid:
            return "ns is not a registry host";
        case path_error::query_invalid:
            return "invalid query";
    }
    return "unknown";
}

bool distribution_path::is_digest() const noexcept {
    return reference.find(':') != std::string::npos;
}

std::string distribution_path::upstream_target() const {
    std::string out = "/v2/";
    if (kind == request_kind::ping) {
        return out;
    }
    out += name;
    switch (kind) {
        case request_kind::manifest:
            out += "/manifests/" + reference;
            break;
        case request_kind::blob:
            out += "/blobs/" + reference;
            break;
        case request_kind::tags_list:
            out += "/tags/list";
            break;
        case request_kind::ping:
            break;
    }
    if (!upstream_query.empty()) {
        out += '?';
        out += upstream_query;
    }
    return out;
}

bool is_valid_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > max_name_length) {
        return false;
    }
    std::size_t start = 0;
    for (;;) {
        const auto pos = name.find('/', start);
        const auto comp = name.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start);
        if (!is_valid_component(comp)) {
            return false;
        }
        if (pos == std::string_view::npos) {
            return true;
        }
        start = pos + 1;
    }
}

bool is_valid_tag(std::string_view tag) noexcept {
    if (tag.empty() || tag.size() > max_tag_length || !is_word(tag.front())) {
        return false;
    }
    return std::all_of(tag.begin(), tag.end(), [](char c) { return is_word(c) || c == '.' || c == '-'; });
}

bool is_valid_digest(std::string_view digest) noexcept {
    const auto colon = digest.find(':');
    if (colon == std::string_view::npos) {
        return false;
    }
    const auto algorithm = digest.substr(0, colon);
    const auto encoded = digest.substr(colon + 1);
    if (!is_valid_algorithm(algorithm) || encoded.empty()) {
        return false;
    }
    // Registered algorithms have a fixed lower-case hex encoding (OCI image-spec descriptor.md).
    if (algorithm == "sha256" || algorithm == "sha512") {
        const std::size_t want = algorithm == "sha256" ? 64 : 128;
        return encoded.size() == want && std::all_of(encoded.begin(), encoded.end(), is_hex_lower);
    }
    return encoded.size() <= 1024 && std::all_of(encoded.begin(), encoded.end(), [](char c) {
               return is_alnum(c) || c == '=' || c == '_' || c == '-';
           });
}

bool is_valid_host(std::string_view host) noexcept {
    if (host.empty() || host.size() > 261) {
        return false;
    }
    if (host.front() == '[') {
        const auto close = host.find(']');
        if (close == std::string_view::npos || close < 3) {
            return false;
        }
        const auto inner = host.substr(1, close - 1);
        const bool ok = std::all_of(inner.begin(), inner.end(), [](char c) {
            return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
        });
        if (!ok || inner.find(':') == std::string_view::npos) {
            return false;
        }
        const auto rest = host.substr(close + 1);
        return rest.empty() || (rest.front() == ':' && is_valid_port(rest.substr(1)));
    }
    const auto colon = host.find(':');
    if (colon == std::string_view::npos) {
        return is_valid_hostname(host);
    }
    return is_valid_hostname(host.substr(0, colon)) && is_valid_port(host.substr(colon + 1));
}

std::optional<std::string> decode_query_component(std::string_view s) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
            return c - 'a' + 10;
        }
        if (c >= 'A' && c <= 'F') {
            return c - 'A' + 10;
        }
        return -1;
    };
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size()) {
                return std::nullopt;
            }
            const int hi = hex(s[i + 1]);
            const int lo = hex(s[i + 2]);
            if (hi < 0 || lo < 0) {
                return std::nullopt;
            }
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            return std::nullopt;
        }
        out.push_back(c);
    }
    return out;
}

boost::system::result<distribution_path, path_error> parse_target(std::string_view target) {
    if (target.empty() || target.front() != '/') {
        return path_error::bad_target;  // absolute-form or asterisk-form: we are not a forward proxy
    }
    for (char c : target) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == '#') {
            return path_error::bad_target;
        }
    }
    const auto qpos = target.find('?');
    const auto path = target.substr(0, qpos);
    const auto query = qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1);

    distribution_path out;
    if (path == "/v2" || path == "/v2/") {
        out.kind = request_kind::ping;
        return out;
    }
    constexpr std::string_view prefix = "/v2/";
    if (path.substr(0, prefix.size()) != prefix) {
        return path_error::not_found;
    }
    const auto rest = path.substr(prefix.size());

    constexpr std::string_view tags_suffix = "/tags/list";
    if (rest.size() > tags_suffix.size() && rest.substr(rest.size() - tags_suffix.size()) == tags_suffix) {
        out.kind = request_kind::tags_list;
        out.name = std::string(rest.substr(0, rest.size() - tags_suffix.size()));
    } else {
        const auto last = rest.rfind('/');
        if (last == std::string_view::npos) {
            return path_error::not_found;  // e.g. /v2/_catalog
        }
        const auto before = rest.substr(0, last);
        const auto word_start = before.rfind('/');
        if (word_start == std::string_view::npos) {
            return path_error::not_found;
        }
        const auto word = before.substr(word_start + 1);
        if (word == "manifests") {
            out.kind = request_kind::manifest;
        } else if (word == "blobs") {
            out.kind = request_kind::blob;
        } else {
            return path_error::not_found;  // uploads, referrers, anything else
        }
        out.name = std::string(before.substr(0, word_start));
        out.reference = std::string(rest.substr(last + 1));
    }

    if (!is_valid_name(out.name)) {
        return path_error::name_invalid;
    }
    if (out.kind == request_kind::manifest && !is_valid_tag(out.reference) && !is_valid_digest(out.reference)) {
        return out.reference.find(':') != std::string::npos ? path_error::digest_invalid : path_error::tag_invalid;
    }
    if (out.kind == request_kind::blob && !is_valid_digest(out.reference)) {
        return path_error::digest_invalid;
    }

    auto params = parse_query(query);
    if (!params) {
        return params.error();
    }
    out.ns = std::move(params->ns);
    if (out.kind == request_kind::tags_list) {
        if (params->n) {
            out.upstream_query = "n=" + *params->n;
        }
        if (params->last) {
            out.upstream_query += (out.upstream_query.empty() ? "last=" : "&last=") + *params->last;
        }
    }
    return out;
}

}  // namespace acp::routing
