// Shared by the yaml_config and configmap targets: the files and variables a
// load may read (with secrets in them), and the checks on a load's outcome:
// no message or rendering shows a secret, and an accepted config renders to
// YAML that loads back to the same config (render.cpp's promise).
#pragma once

#include "config/loader.hpp"
#include "tests/fuzz/fuzz_support.hpp"

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace acp::fuzz {

inline constexpr std::string_view config_password = "FuzzRegistryPassw0rdNeverShown";
inline constexpr std::string_view config_ak_secret = "FuzzAkSecretFromFile0123456789";
inline constexpr std::string_view config_sts_token = "FuzzStsTokenFromFile0123456789";
inline constexpr std::string_view config_docker_auth = "RnV6ekRvY2tlckF1dGg6c2VjcmV0";

inline const std::map<std::string, std::string>& config_files() {
    static const std::map<std::string, std::string> files{
        {"/etc/acp/robot.pw", std::string(config_password) + "\n"},
        {"/etc/acp/ca.pem", "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"},
        {"/etc/acp/docker.json",
         R"({"auths":{"docker.example.com":{"auth":")" + std::string(config_docker_auth) + R"("}}})"},
        {"/etc/acp/ak-id", "LTAIfuzzid\n"},
        {"/etc/acp/ak-secret", std::string(config_ak_secret) + "\n"},
        {"/etc/acp/sts-token", std::string(config_sts_token) + "\n"},
        {"/var/run/secrets/tokens/oidc", "eyJfuzz.oidc.token\n"},
    };
    return files;
}

inline const config::environment& config_env() {
    static const config::environment env{
        [](const std::string& name) -> std::optional<std::string> {
            if (name == "ROBOT_PASSWORD") {
                return std::string(config_password);
            }
            if (name == "EMPTY_VAR") {
                return std::string();
            }
            return std::nullopt;
        },
        [](const std::string& path) -> std::optional<std::string> {
            const auto it = config_files().find(path);
            return it == config_files().end() ? std::nullopt : std::optional(it->second);
        },
    };
    return env;
}

/// No secret of config_files() in `text`, unless the input itself carried it.
inline void require_no_secret(std::string_view text, std::string_view input) {
    for (const auto secret : {config_password, config_ak_secret, config_sts_token, config_docker_auth}) {
        if (input.find(secret) == std::string_view::npos) {
            require(text.find(secret) == std::string_view::npos);
        }
    }
}

inline void check_rejected(const config::config_error& e, std::string_view input) {
    require(!e.errors().empty());
    require_no_secret(e.what(), input);
    for (const auto& w : e.warnings()) {
        require_no_secret(w.str(), input);
    }
}

/// An accepted config: its warnings and rendering show no secret, and the
/// rendering loads back to an equal config that renders the same again.
inline void check_accepted(const config::load_result& r, std::string_view input) {
    require(r.cfg != nullptr);
    for (const auto& w : r.warnings) {
        require_no_secret(w.str(), input);
    }
    const auto text = config::render(*r.cfg);
    require_no_secret(text, input);
    config::load_result again;
    try {
        again = config::load_yaml(text, "rendered.yaml", config_env());
    } catch (const config::config_error&) {
        std::abort();  // render() wrote something load_yaml() refuses
    }
    auto reloaded = *again.cfg;
    reloaded.source = r.cfg->source;
    require(reloaded == *r.cfg);
    require(config::render(reloaded) == text);
}

}  // namespace acp::fuzz
