#include "tokens/registry_token.hpp"

#include "routing/route_table.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace acp::tokens {
namespace {

std::string lowered(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

// RFC 3986 unreserved characters pass; everything else is %XX.
std::string percent_encode(std::string_view s) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            out.push_back(c);
        } else {
            out.push_back('%');
            out.push_back(hex[u >> 4U]);
            out.push_back(hex[u & 0xFU]);
        }
    }
    return out;
}

}  // namespace

std::optional<realm_url> parse_realm_url(std::string_view text) {
    realm_url out;
    std::string_view rest;
    if (text.size() > 8 && lowered(text.substr(0, 8)) == "https://") {
        out.scheme = "https";
        rest = text.substr(8);
    } else if (text.size() > 7 && lowered(text.substr(0, 7)) == "http://") {
        out.scheme = "http";
        rest = text.substr(7);
    } else {
        return std::nullopt;
    }
    if (text.find('#') != std::string_view::npos) {
        return std::nullopt;
    }
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) {
            return std::nullopt;  // no spaces, controls or raw non-ASCII in a request target
        }
    }
    const auto end_of_authority = rest.find_first_of("/?");
    const auto authority = rest.substr(0, end_of_authority);
    if (authority.find('@') != std::string_view::npos) {
        return std::nullopt;
    }
    auto hp = routing::split_host_port(authority);
    if (!hp) {
        return std::nullopt;
    }
    out.host = hp->host;
    out.port = hp->port.value_or(out.scheme == "https" ? 443 : 80);
    out.target = end_of_authority == std::string_view::npos ? "/" : std::string(rest.substr(end_of_authority));
    if (out.target.front() == '?') {
        out.target.insert(out.target.begin(), '/');
    }
    return out;
}

bool host_matches(std::string_view pattern, std::string_view host, std::uint16_t port) {
    auto p = std::string(pattern);
    bool wildcard = false;
    if (p.size() > 2 && p[0] == '*' && p[1] == '.') {
        wildcard = true;
        p = p.substr(1);  // ".suffix[:port]"
    }
    auto hp = routing::split_host_port(wildcard ? std::string_view(p).substr(1) : std::string_view(p));
    if (!hp) {
        return false;
    }
    if (hp->port && *hp->port != port) {
        return false;
    }
    const auto h = lowered(host);
    if (!wildcard) {
        return h == hp->host;
    }
    const auto suffix = "." + hp->host;
    return h.size() > suffix.size() && h.compare(h.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::optional<std::string> realm_refusal(const realm_url& realm, const std::vector<std::string>& realm_hosts,
                                         std::string_view registry_host, std::string_view registry_scheme) {
    if (realm.scheme != "https" && registry_scheme != "http") {
        return "realm uses http but the registry is reached over https; credentials are sent to https realms only";
    }
    bool allowed = false;
    if (realm_hosts.empty()) {
        // Default: the registry's own host name, any port.
        auto hp = routing::split_host_port(registry_host);
        allowed = hp && hp->host == realm.host;
    } else {
        allowed = std::any_of(realm_hosts.begin(), realm_hosts.end(),
                              [&](const std::string& pattern) { return host_matches(pattern, realm.host, realm.port); });
    }
    if (!allowed) {
        return "realm host " + realm.host + " is not in the registry's realmHosts allow-list";
    }
    return std::nullopt;
}

std::string token_request_target(const realm_url& realm, std::string_view service,
                                 const std::vector<std::string>& scopes) {
    std::string target = realm.target;
    char sep = target.find('?') == std::string::npos ? '?' : '&';
    if (target.back() == '?' || target.back() == '&') {
        sep = '\0';
    }
    auto append = [&](std::string_view key, std::string_view value) {
        if (sep != '\0') {
            target.push_back(sep);
        }
        target += key;
        target.push_back('=');
        target += percent_encode(value);
        sep = '&';
    };
    if (!service.empty()) {
        append("service", service);
    }
    for (const auto& s : scopes) {
        if (!s.empty()) {
            append("scope", s);
        }
    }
    return target;
}

std::string pull_scope(std::string_view repository) { return "repository:" + std::string(repository) + ":pull"; }

std::optional<registry_token> parse_token_response(std::string_view body, std::string& error) {
    if (body.size() > max_token_response_bytes) {
        error = "token response larger than " + std::to_string(max_token_response_bytes) + " bytes";
        return std::nullopt;
    }
    const auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
        error = "token response is not a JSON object";
        return std::nullopt;
    }
    auto text_field = [&](const char* key) -> std::optional<std::string> {
        const auto it = j.find(key);
        if (it == j.end() || it->is_null()) {
            return std::nullopt;
        }
        if (!it->is_string()) {
            return std::string();  // present but not a string: treated as empty
        }
        return it->get<std::string>();
    };
    const auto access_token = text_field("access_token");
    const auto token = text_field("token");
    std::string chosen;
    if (access_token && !access_token->empty()) {
        chosen = *access_token;  // as distribution's client: access_token wins when both are sent
    } else if (token && !token->empty()) {
        chosen = *token;
    } else {
        error = "token response has neither a non-empty \"token\" nor \"access_token\"";
        return std::nullopt;
    }
    registry_token out;
    out.token = config::secret(std::move(chosen));
    if (const auto it = j.find("expires_in"); it != j.end() && !it->is_null()) {
        if (!it->is_number_integer() && !it->is_number_unsigned()) {
            error = "token response \"expires_in\" is not an integer";
            return std::nullopt;
        }
        const auto v = it->get<std::int64_t>();
        if (v <= 0 || v > 366LL * 24 * 3600) {
            error = "token response \"expires_in\" " + std::to_string(v) + " is out of range (1 s .. 366 days)";
            return std::nullopt;
        }
        out.expires_in = std::chrono::seconds(v);
    }
    return out;
}

}  // namespace acp::tokens
