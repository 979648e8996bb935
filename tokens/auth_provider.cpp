#include "tokens/auth_provider.hpp"

#include "tokens/static_credentials.hpp"

#include <fstream>
#include <sstream>

namespace acp::tokens {

net::awaitable<boost::system::result<bool>> auth_provider::on_unauthorized(auth_request, auth_challenge) {
    co_return false;
}

auth_environment auth_environment::process() {
    return {.read_file = [](const std::string& path) -> std::optional<std::string> {
        std::ifstream in(path, std::ios::binary);
        if (!in) {
            return std::nullopt;
        }
        std::ostringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }};
}

std::shared_ptr<auth_provider> make_provider(const routing::route& r, const auth_environment& env,
                                             std::vector<std::string>& warnings) {
    switch (r.kind) {
        case routing::route_kind::acr_instance:
            // The ACR credential chain (GetAuthorizationToken + registry token flow) replaces this case.
            return std::make_shared<anonymous_provider>();
        case routing::route_kind::registry:
            break;
    }
    if (r.registry == nullptr) {
        return std::make_shared<anonymous_provider>();
    }
    const auto& auth = r.registry->auth;
    switch (auth.kind) {
        case config::auth_kind::anonymous:
            return std::make_shared<anonymous_provider>();
        case config::auth_kind::basic:
            return std::make_shared<basic_provider>(basic_header_value(auth.username, auth.password), "basic");
        case config::auth_kind::docker_config: {
            auto text = env.read_file(auth.docker_config_path);
            if (!text) {
                throw std::runtime_error("registry " + r.host + ": cannot read docker config '" +
                                         auth.docker_config_path + "'");
            }
            std::optional<config::secret> value;
            try {
                value = docker_config_lookup(*text, r.host);
            } catch (const std::runtime_error& e) {
                throw std::runtime_error("registry " + r.host + ": docker config '" + auth.docker_config_path +
                                         "': " + e.what());
            }
            if (!value) {
                warnings.push_back("registry " + r.host + ": docker config '" + auth.docker_config_path +
                                   "' has no usable auths entry for this host; pulling anonymously");
                return std::make_shared<anonymous_provider>();
            }
            return std::make_shared<basic_provider>(std::move(*value), "docker-config");
        }
    }
    return std::make_shared<anonymous_provider>();
}

auth_providers::auth_providers(const routing::route_table& routes, const auth_environment& env) {
    for (const auto& r : routes.routes()) {
        if (by_host_.count(r.host) == 0) {
            by_host_.emplace(r.host, make_provider(r, env, warnings_));
        }
    }
}

std::shared_ptr<auth_provider> auth_providers::for_route(const routing::route& r) const {
    if (auto it = by_host_.find(r.host); it != by_host_.end()) {
        return it->second;
    }
    static const auto anonymous = std::make_shared<anonymous_provider>();
    return anonymous;
}

}  // namespace acp::tokens
