#include "proxy/header_policy.hpp"

#include <boost/beast/core/string.hpp>

#include <algorithm>

namespace acp::proxy {
namespace {

bool named_in(std::string_view name, const std::vector<std::string>& tokens) {
    return std::any_of(tokens.begin(), tokens.end(), [&](const std::string& t) { return beast::iequals(t, name); });
}

}  // namespace

std::string lower_ascii(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

void add_connection_tokens(std::string_view value, std::vector<std::string>& out) {
    while (!value.empty()) {
        const auto comma = value.find(',');
        const auto token = trim_ows(value.substr(0, comma));
        if (!token.empty()) {
            out.push_back(lower_ascii(token));
        }
        value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    }
}

std::vector<std::string> connection_tokens(const http::fields& f) {
    std::vector<std::string> out;
    for (auto it = f.find(http::field::connection); it != f.end() && it->name() == http::field::connection; ++it) {
        for (auto token : http::token_list{it->value()}) {
            out.push_back(lower_ascii(token));
        }
    }
    return out;
}

bool is_hop_by_hop(std::string_view name) noexcept {
    static constexpr std::string_view names[] = {
        "connection", "keep-alive",        "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
        "trailer",    "transfer-encoding", "upgrade"};
    return std::any_of(std::begin(names), std::end(names), [&](std::string_view n) { return beast::iequals(n, name); });
}

void strip_hop_by_hop(http::fields& f) {
    const auto named = connection_tokens(f);
    for (auto it = f.begin(); it != f.end();) {
        if (is_hop_by_hop(it->name_string()) || named_in(it->name_string(), named)) {
            it = f.erase(it);
        } else {
            ++it;
        }
    }
}

void copy_request_fields(const http::fields& downstream, http::fields& upstream) {
    const auto named = connection_tokens(downstream);
    for (const auto& field : downstream) {
        const auto name = field.name_string();
        if (is_hop_by_hop(name) || named_in(name, named) || field.name() == http::field::host ||
            field.name() == http::field::content_length || field.name() == http::field::expect) {
            continue;
        }
        if (field.name() == http::field::unknown) {
            upstream.insert(name, field.value());
        } else {
            upstream.insert(field.name(), field.value());
        }
    }
}

std::vector<std::string> field_values(const http::fields& f, http::field name) {
    std::vector<std::string> out;
    auto [first, last] = f.equal_range(name);
    for (auto it = first; it != last; ++it) {
        out.emplace_back(it->value());
    }
    return out;
}

}  // namespace acp::proxy
