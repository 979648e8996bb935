#include "config/values.hpp"

#include "config/loader.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <vector>

namespace acp::config {
namespace {

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_lower_alnum(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z');
}
bool is_alnum(char c) {
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}
char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_ipv4(std::string_view s) {
    if (s.size() > INET_ADDRSTRLEN - 1) {
        return false;
    }
    std::array<unsigned char, 4> buf{};
    return ::inet_pton(AF_INET, std::string(s).c_str(), buf.data()) == 1;
}

bool is_ipv6(std::string_view s) {
    if (s.size() > INET6_ADDRSTRLEN - 1) {
        return false;
    }
    std::array<unsigned char, 16> buf{};
    return ::inet_pton(AF_INET6, std::string(s).c_str(), buf.data()) == 1;
}

// A decimal port 0..65535 with digits only.
std::optional<std::uint16_t> parse_port(std::string_view s) {
    if (s.empty() || s.size() > 5 || !std::all_of(s.begin(), s.end(), is_digit)) {
        return std::nullopt;
    }
    unsigned v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    if (v > 65535) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(v);
}

// RFC 1123 host name (lower-case already): labels of [a-z0-9-], 1-63 chars,
// no leading/trailing '-', 253 chars total. An all-numeric last label must be
// part of a valid IPv4 literal.
bool is_dns_name(std::string_view s) {
    if (s.empty() || s.size() > 253) {
        return false;
    }
    const auto last = s.substr(s.rfind('.') == std::string_view::npos ? 0 : s.rfind('.') + 1);
    if (!last.empty() && std::all_of(last.begin(), last.end(), is_digit) && !is_ipv4(s)) {
        return false;
    }
    std::size_t start = 0;
    while (true) {
        const auto dot = s.find('.', start);
        const auto label = s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
            !std::all_of(label.begin(), label.end(), [](char c) { return is_lower_alnum(c) || c == '-'; })) {
            return false;
        }
        if (dot == std::string_view::npos) {
            return true;
        }
        start = dot + 1;
    }
}

// Splits "host[:port]" where an IPv6 host is bracketed. `host` keeps brackets.
struct host_port {
    std::string_view host;
    std::optional<std::string_view> port;
};

std::optional<host_port> split_host_port(std::string_view s) {
    if (!s.empty() && s.front() == '[') {
        const auto close = s.find(']');
        if (close == std::string_view::npos) {
            return std::nullopt;
        }
        host_port hp{s.substr(0, close + 1), std::nullopt};
        const auto rest = s.substr(close + 1);
        if (rest.empty()) {
            return hp;
        }
        if (rest.front() != ':') {
            return std::nullopt;
        }
        hp.port = rest.substr(1);
        return hp;
    }
    const auto colon = s.find(':');
    if (colon == std::string_view::npos) {
        return host_port{s, std::nullopt};
    }
    if (s.find(':', colon + 1) != std::string_view::npos) {
        return std::nullopt;  // an unbracketed IPv6 literal is ambiguous
    }
    return host_port{s.substr(0, colon), s.substr(colon + 1)};
}

// A URL/registry host without port: DNS name, IPv4, or "[IPv6]". Lower-case.
std::optional<std::string> normalize_bare_host(std::string_view host) {
    auto h = to_lower(host);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
        return is_ipv6(std::string_view(h).substr(1, h.size() - 2)) ? std::optional(h) : std::nullopt;
    }
    if (is_dns_name(h)) {
        return h;
    }
    return std::nullopt;
}

struct duration_unit {
    std::string_view name;
    std::int64_t nanos;
};

// Longest names first so "ms" wins over "m".
constexpr std::array<duration_unit, 8> duration_units{{
    {"ns", 1},
    {"us", 1'000},
    {"\xC2\xB5s", 1'000},  // U+00B5 micro sign
    {"\xCE\xBCs", 1'000},  // U+03BC Greek mu
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60'000'000'000},
    {"h", 3'600'000'000'000},
}};

std::optional<std::int64_t> unit_nanos(std::string_view name) {
    for (const auto& u : duration_units) {
        if (u.name == name) {
            return u.nanos;
        }
    }
    return std::nullopt;
}

bool add_checked(std::int64_t& acc, std::int64_t v) {
    if (acc > std::numeric_limits<std::int64_t>::max() - v) {
        return false;
    }
    acc += v;
    return true;
}

}  // namespace

std::optional<duration> parse_duration(std::string_view text) {
    // Grammar as Go's time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?unit)+ or "0".
    auto s = text;
    bool negative = false;
    if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
        negative = s.front() == '-';
        s.remove_prefix(1);
    }
    if (s == "0") {
        return duration::zero();
    }
    if (s.empty()) {
        return std::nullopt;
    }
    std::int64_t total_ns = 0;
    while (!s.empty()) {
        // Integer part.
        std::size_t i = 0;
        std::int64_t whole = 0;
        bool overflow = false;
        while (i < s.size() && is_digit(s[i])) {
            const auto d = s[i] - '0';
            if (whole > (std::numeric_limits<std::int64_t>::max() - d) / 10) {
                overflow = true;
            } else {
                whole = whole * 10 + d;
            }
            ++i;
        }
        const bool had_whole = i > 0;
        // Fraction: keep at most 9 digits; a further non-zero digit is below 1 ns.
        std::int64_t frac = 0;
        std::int64_t scale = 1;
        bool had_frac = false;
        bool sub_nano = false;
        if (i < s.size() && s[i] == '.') {
            ++i;
            while (i < s.size() && is_digit(s[i])) {
                had_frac = true;
                if (scale < 1'000'000'000) {
                    frac = frac * 10 + (s[i] - '0');
                    scale *= 10;
                } else if (s[i] != '0') {
                    sub_nano = true;
                }
                ++i;
            }
        }
        if (overflow || (!had_whole && !had_frac) || sub_nano) {
            return std::nullopt;
        }
        std::size_t j = i;
        while (j < s.size() && !is_digit(s[j]) && s[j] != '.') {
            ++j;
        }
        const auto unit = unit_nanos(s.substr(i, j - i));
        if (!unit) {
            return std::nullopt;
        }
        if (whole > std::numeric_limits<std::int64_t>::max() / *unit) {
            return std::nullopt;
        }
        // frac * unit / scale without overflow: frac < scale <= 1e9.
        const auto frac_ns = (*unit / scale) * frac + ((*unit % scale) * frac) / scale;
        if (((*unit % scale) * frac) % scale != 0) {
            return std::nullopt;  // finer than a nanosecond
        }
        if (!add_checked(total_ns, whole * *unit) || !add_checked(total_ns, frac_ns)) {
            return std::nullopt;
        }
        s.remove_prefix(j);
    }
    if (total_ns % 1'000'000 != 0) {
        return std::nullopt;  // the config keeps milliseconds
    }
    const auto ms = total_ns / 1'000'000;
    return duration(negative ? -ms : ms);
}

std::string format_duration(duration d) {
    auto ms = d.count();
    if (ms == 0) {
        return "0s";
    }
    std::string out;
    if (ms < 0) {
        out = "-";
        ms = -ms;  // a config duration is never near the minimum value
    }
    const auto hours = ms / 3'600'000;
    const auto minutes = (ms / 60'000) % 60;
    const auto seconds = (ms / 1000) % 60;
    const auto millis = ms % 1000;
    if (hours != 0) {
        out += std::to_string(hours) + "h";
    }
    if (minutes != 0) {
        out += std::to_string(minutes) + "m";
    }
    if (hours == 0 && minutes == 0 && seconds == 0) {
        return out + std::to_string(millis) + "ms";
    }
    if (seconds != 0 || millis != 0) {
        out += std::to_string(seconds);
        if (millis != 0) {
            auto frac = std::to_string(1000 + millis).substr(1);  // three digits
            while (frac.back() == '0') {
                frac.pop_back();
            }
            out += "." + frac;
        }
        out += "s";
    }
    return out;
}

std::optional<listen_address> parse_listen_address(std::string_view text) {
    const auto hp = split_host_port(text);
    if (!hp || !hp->port) {
        return std::nullopt;
    }
    const auto port = parse_port(*hp->port);
    if (!port) {
        return std::nullopt;
    }
    auto host = hp->host;
    if (!host.empty() && host.front() == '[') {
        host = host.substr(1, host.size() - 2);
        if (!is_ipv6(host)) {
            return std::nullopt;
        }
    } else if (!is_ipv4(host)) {
        return std::nullopt;
    }
    return listen_address{to_lower(host), *port};
}

std::optional<endpoint_url> parse_endpoint_url(std::string_view text) {
    const auto sep = text.find("://");
    if (sep == std::string_view::npos) {
        return std::nullopt;
    }
    endpoint_url url;
    url.scheme = to_lower(text.substr(0, sep));
    if (url.scheme != "http" && url.scheme != "https") {
        return std::nullopt;
    }
    auto rest = text.substr(sep + 3);
    if (rest.find_first_of("?#@ \t\r\n\\") != std::string_view::npos) {
        return std::nullopt;  // no query, fragment, credentials or whitespace in an endpoint
    }
    const auto slash = rest.find('/');
    const auto authority = rest.substr(0, slash);
    url.path = slash == std::string_view::npos ? std::string() : std::string(rest.substr(slash));
    if (url.path == "/") {
        url.path.clear();
    }
    const auto hp = split_host_port(authority);
    if (!hp || hp->host.empty()) {
        return std::nullopt;
    }
    const auto host = normalize_bare_host(hp->host);
    if (!host) {
        return std::nullopt;
    }
    url.host = (*host)[0] == '[' ? host->substr(1, host->size() - 2) : *host;
    if (hp->port) {
        const auto port = parse_port(*hp->port);
        if (!port || *port == 0) {
            return std::nullopt;
        }
        url.port = *port;
    } else {
        url.port = url.scheme == "https" ? 443 : 80;
    }
    return url;
}

std::optional<std::string> normalize_host(std::string_view text) {
    const auto hp = split_host_port(text);
    if (!hp || hp->host.empty()) {
        return std::nullopt;
    }
    auto host = normalize_bare_host(hp->host);
    if (!host) {
        return std::nullopt;
    }
    if (hp->port) {
        const auto port = parse_port(*hp->port);
        if (!port || *port == 0) {
            return std::nullopt;
        }
        *host += ":" + std::to_string(*port);  // drops leading zeros
    }
    return host;
}

bool is_host_pattern(std::string_view pattern) {
    if (pattern.substr(0, 2) == "*.") {
        const auto suffix = pattern.substr(2);
        return suffix.find('.') != std::string_view::npos && is_dns_name(suffix);
    }
    const auto n = normalize_host(pattern);
    return n && *n == pattern;
}

bool host_matches(std::string_view pattern, std::string_view host) {
    if (pattern.substr(0, 2) != "*.") {
        return pattern == host;
    }
    if (const auto hp = split_host_port(host)) {
        host = hp->host;
    }
    const auto suffix = pattern.substr(1);  // ".aliyuncs.com"
    return host.size() > suffix.size() && host.substr(host.size() - suffix.size()) == suffix;
}

bool is_loopback_ip(std::string_view ip) {
    if (is_ipv4(ip)) {
        return ip.substr(0, 4) == "127.";
    }
    if (!is_ipv6(ip)) {
        return false;
    }
    std::array<unsigned char, 16> b{};
    ::inet_pton(AF_INET6, std::string(ip).c_str(), b.data());
    const bool first_ten_zero = std::all_of(b.begin(), b.begin() + 10, [](unsigned char c) { return c == 0; });
    if (first_ten_zero && b[10] == 0xff && b[11] == 0xff) {
        return b[12] == 127;  // IPv4-mapped
    }
    return first_ten_zero && std::all_of(b.begin() + 10, b.begin() + 15, [](unsigned char c) { return c == 0; }) &&
           b[15] == 1;
}

bool is_wildcard_ip(std::string_view ip) {
    if (is_ipv4(ip)) {
        return ip == "0.0.0.0";
    }
    if (!is_ipv6(ip)) {
        return false;
    }
    std::array<unsigned char, 16> b{};
    ::inet_pton(AF_INET6, std::string(ip).c_str(), b.data());
    return std::all_of(b.begin(), b.end(), [](unsigned char c) { return c == 0; });
}

bool is_region_id(std::string_view text) {
    return !text.empty() && text.size() <= 64 && is_lower_alnum(text.front()) && is_lower_alnum(text.back()) &&
           std::all_of(text.begin(), text.end(), [](char c) { return is_lower_alnum(c) || c == '-'; });
}

bool is_ram_arn(std::string_view text) {
    constexpr std::string_view prefix = "acs:ram::";
    if (text.substr(0, prefix.size()) != prefix) {
        return false;
    }
    const auto rest = text.substr(prefix.size());
    const auto colon = rest.find(':');
    if (colon == 0 || colon == std::string_view::npos || colon + 1 == rest.size()) {
        return false;
    }
    const auto account = rest.substr(0, colon);
    return std::all_of(account.begin(), account.end(), is_digit) &&
           std::none_of(rest.begin(), rest.end(), [](char c) { return c == ' ' || c == '\t' || c == '\n'; });
}

bool is_role_session_name(std::string_view text) {
    return text.size() >= 2 && text.size() <= 64 && std::all_of(text.begin(), text.end(), [](char c) {
               return is_alnum(c) || c == '.' || c == '@' || c == '_' || c == '-';
           });
}

bool is_k8s_label(std::string_view text) {
    return text.size() <= 63 && is_dns_name(text) && text.find('.') == text.npos;
}

bool is_k8s_subdomain(std::string_view text) {
    return is_dns_name(text);
}

std::string quote(std::string_view value) {
    constexpr std::size_t max_shown = 80;
    std::string out = "\"";
    for (std::size_t i = 0; i < value.size() && i < max_shown; ++i) {
        const auto c = value[i];
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            static constexpr char hex[] = "0123456789abcdef";
            const auto u = static_cast<unsigned char>(c);
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 0xf];
        } else {
            out += c;
        }
    }
    if (value.size() > max_shown) {
        out += "...";
    }
    return out + "\"";
}

std::size_t key_distance(std::string_view a, std::string_view b) {
    auto fold = [](std::string_view s) {
        std::string out;
        for (auto c : s) {
            if (c != '-' && c != '_') {
                out += lower(c);
            }
        }
        return out;
    };
    const auto x = fold(a);
    const auto y = fold(b);
    std::vector<std::size_t> prev(y.size() + 1);
    std::vector<std::size_t> cur(y.size() + 1);
    for (std::size_t j = 0; j <= y.size(); ++j) {
        prev[j] = j;
    }
    for (std::size_t i = 1; i <= x.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= y.size(); ++j) {
            const auto subst = prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1);
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
        }
        std::swap(prev, cur);
    }
    return prev[y.size()];
}

std::string closest_key(std::string_view key, std::span<const std::string_view> known) {
    std::string best;
    auto best_distance = std::numeric_limits<std::size_t>::max();
    for (auto k : known) {
        const auto d = key_distance(key, k);
        if (d < best_distance) {
            best_distance = d;
            best = std::string(k);
        }
    }
    return best;
}

std::string_view trim(std::string_view s) {
    constexpr std::string_view ws = " \t\r\n\f\v";
    const auto b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) {
        return {};
    }
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string to_lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), lower);
    return out;
}

}  // namespace acp::config
