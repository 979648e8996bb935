#include "tokens/static_credentials.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <stdexcept>

namespace acp::tokens {
namespace {

constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string to_lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

// "https://Host:5000/v1/" -> "host:5000" (docker config keys come in all these shapes).
std::string normalize_auths_key(std::string_view key) {
    if (auto p = key.find("://"); p != std::string_view::npos) {
        key.remove_prefix(p + 3);
    }
    if (auto p = key.find('/'); p != std::string_view::npos) {
        key = key.substr(0, p);
    }
    return to_lower(key);
}

}  // namespace

net::awaitable<auth_result<authorization>> anonymous_provider::authorize(auth_request) {
    co_return authorization{};
}

basic_provider::basic_provider(config::secret header_value, std::string name)
    : header_value_(std::move(header_value)), name_(std::move(name)) {}

net::awaitable<auth_result<authorization>> basic_provider::authorize(auth_request) {
    co_return authorization{header_value_};
}

std::string base64_encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    auto byte = [&in](std::size_t k) {
        return static_cast<unsigned>(static_cast<unsigned char>(in[k]));
    };
    for (; i + 2 < in.size(); i += 3) {
        const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    if (i + 1 == in.size()) {
        const unsigned v = byte(i) << 16;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
    while (!in.empty() && in.back() == '=') {
        in.remove_suffix(1);
    }
    if (in.size() % 4 == 1) {
        return std::nullopt;
    }
    std::string out;
    out.reserve(in.size() * 3 / 4);
    unsigned acc = 0;
    int bits = 0;
    for (char c : in) {
        const auto pos = alphabet.find(c);
        if (pos == std::string_view::npos) {
            return std::nullopt;
        }
        acc = (acc << 6) | static_cast<unsigned>(pos);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xffu);
        }
    }
    return out;
}

config::secret basic_header_value(std::string_view username, const config::secret& password) {
    std::string plain(username);
    plain += ':';
    plain += password.reveal();
    return config::secret("Basic " + base64_encode(plain));
}

std::optional<config::secret> docker_config_lookup(std::string_view config_json, std::string_view host) {
    nlohmann::json doc;
    try {
        doc = nlohmann::json::parse(config_json);
    } catch (const nlohmann::json::parse_error&) {
        throw std::runtime_error("not valid JSON");  // the parser's message could quote a secret
    }
    if (!doc.is_object() || !doc.contains("auths")) {
        return std::nullopt;
    }
    const auto& auths = doc["auths"];
    if (!auths.is_object()) {
        throw std::runtime_error("\"auths\" is not an object");
    }
    const auto want = to_lower(host);
    for (const auto& [key, entry] : auths.items()) {
        if (normalize_auths_key(key) != want || !entry.is_object()) {
            continue;
        }
        if (auto it = entry.find("auth"); it != entry.end() && it->is_string()) {
            const auto& encoded = it->get_ref<const std::string&>();
            auto decoded = base64_decode(encoded);
            if (!decoded || decoded->find(':') == std::string::npos) {
                throw std::runtime_error("auths entry for " + want + ": \"auth\" is not base64 of user:password");
            }
            return config::secret("Basic " + base64_encode(*decoded));
        }
        auto user = entry.find("username");
        auto pass = entry.find("password");
        if (user != entry.end() && pass != entry.end() && user->is_string() && pass->is_string()) {
            return basic_header_value(user->get_ref<const std::string&>(),
                                      config::secret(pass->get_ref<const std::string&>()));
        }
    }
    return std::nullopt;
}

}  // namespace acp::tokens
