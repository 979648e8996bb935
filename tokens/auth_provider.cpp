#include "tokens/auth_provider.hpp"

#include "tokens/acr_password_store.hpp"
#include "tokens/static_credentials.hpp"
#include "tokens/token_auth_provider.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>

#include <fstream>
#include <sstream>

namespace acp::tokens {

net::awaitable<auth_result<bool>> auth_provider::on_unauthorized(auth_request, auth_challenge) {
    co_return false;
}

void throw_exception_from_error(const auth_error& e, const boost::source_location& loc) {
    boost::throw_exception(boost::system::system_error(e.code, e.detail), loc);
}

void auth_provider::append_metrics(std::string&) const {}

auth_environment auth_environment::process() {
    return {.read_file = [](const std::string& path) -> std::optional<std::string> {
        std::ifstream in(path, std::ios::binary);
        if (!in) {
            return std::nullopt;
        }
        std::ostringstream ss;
        ss << in.rdbuf();
        return ss.str();
    },
            .realm_fetcher = {},
            .acr = nullptr};
}

namespace {

token_auth_provider::options flow_options(const routing::route& r, std::string name,
                                          const std::vector<std::string>& realm_hosts, bool preemptive) {
    token_auth_provider::options o;
    o.name = std::move(name);
    o.registry_host = r.host;
    o.registry_scheme = r.upstream.scheme;
    o.realm_hosts = realm_hosts;
    o.preemptive_basic = preemptive;
    return o;
}

// Static credentials through the token flow when the proxy can reach realms,
// else sent as they are.
std::shared_ptr<auth_provider> static_provider(const routing::route& r, config::secret header_value, std::string name,
                                               const auth_environment& env) {
    if (!env.realm_fetcher) {
        return std::make_shared<basic_provider>(std::move(header_value), std::move(name));
    }
    basic_source_fn basic = [value = std::move(header_value)](
                                const auth_request&) -> net::awaitable<std::variant<config::secret, token_failure>> {
        co_return value;
    };
    return std::make_shared<token_auth_provider>(flow_options(r, std::move(name), r.registry->realm_hosts, true),
                                                 std::move(basic), env.realm_fetcher(r));
}

// The ACR temporary password for the route's host, waiting (bounded, in the
// store) for the first fetch.
basic_source_fn acr_basic_source(acr_password_store* store) {
    return [store](const auth_request& req) -> net::awaitable<std::variant<config::secret, token_failure>> {
        auto host = req.registry;  // named: no non-trivial temporary inside the co_await (GCC 12)
        auto wait = store->async_get(std::move(host), net::use_awaitable);
        const auto answer = co_await std::move(wait);
        switch (answer.state) {
            case credential_state::ready:
                co_return config::secret(answer.credential->authorization());
            case credential_state::cancelled:
                co_return token_failure{token_failure::kind::cancelled, "request cancelled"};
            case credential_state::unknown_host:
                co_return token_failure{token_failure::kind::credentials_unavailable,
                                        req.registry + " is not a domain of any configured ACR instance"};
            case credential_state::pending:
            case credential_state::unavailable:
                break;
        }
        co_return token_failure{token_failure::kind::credentials_unavailable, answer.reason};  // names the instance
    };
}

}  // namespace

std::shared_ptr<auth_provider> make_provider(const routing::route& r, const auth_environment& env,
                                             std::vector<std::string>& warnings) {
    switch (r.kind) {
        case routing::route_kind::acr_instance:
            if (env.acr == nullptr || !env.realm_fetcher || r.acr == nullptr) {
                warnings.push_back("ACR domain " + r.host +
                                   ": no ACR credential store or realm client; pulling anonymously");
                return std::make_shared<anonymous_provider>();
            }
            return std::make_shared<token_auth_provider>(flow_options(r, "acr", r.acr->realm_hosts, false),
                                                         acr_basic_source(env.acr), env.realm_fetcher(r));
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
            return static_provider(r, basic_header_value(auth.username, auth.password), "basic", env);
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
            return static_provider(r, std::move(*value), "docker-config", env);
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

void auth_providers::append_metrics(std::string& out) const {
    for (const auto& [host, provider] : by_host_) {
        provider->append_metrics(out);
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
