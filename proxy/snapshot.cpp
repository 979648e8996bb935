#include "proxy/snapshot.hpp"

#include "proxy/realm_client.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <map>
#include <stdexcept>

namespace acp::proxy {

std::shared_ptr<net::ssl::context> make_client_tls_context(const std::string& ca_file, bool insecure) {
    auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
    if (SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION) != 1) {
        throw std::runtime_error("cannot require TLS 1.2");
    }
    ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_compression);
    if (insecure) {
        ctx->set_verify_mode(net::ssl::verify_none);
        return ctx;
    }
    ctx->set_verify_mode(net::ssl::verify_peer);
    error_code ec;
    if (ca_file.empty()) {
        ctx->set_default_verify_paths(ec);
        if (ec) {
            throw std::runtime_error("cannot load the system CA bundle: " + ec.message());
        }
    } else {
        ctx->load_verify_file(ca_file, ec);
        if (ec) {
            throw std::runtime_error("cannot load caFile '" + ca_file + "': " + ec.message());
        }
    }
    return ctx;
}

upstream_endpoint make_endpoint(const http_url& url, std::string path_prefix, std::shared_ptr<net::ssl::context> tls,
                                bool verify_peer) {
    upstream_endpoint ep;
    ep.origin = url;
    ep.origin.target = "/";
    ep.path_prefix = std::move(path_prefix);
    if (url.scheme == "https") {
        ep.tls = std::move(tls);
        ep.verify_peer = verify_peer;
    }
    ep.pool_key = fmt::format("{}://{}#{}", url.scheme, url.authority(), static_cast<const void*>(ep.tls.get()));
    return ep;
}

const upstream_endpoint* snapshot::endpoint_for(const routing::route& r) const {
    auto it = endpoints.find(r.host);
    return it == endpoints.end() ? nullptr : &it->second;
}

std::shared_ptr<const snapshot> build_snapshot(std::shared_ptr<const config::config> cfg,
                                               const tokens::auth_environment& env,
                                               std::shared_ptr<const shared_upstreams> shared) {
    auto s = std::make_shared<snapshot>();
    s->cfg = cfg;
    s->routes = routing::route_table(cfg);

    // One context per (caFile, insecure): loading a bundle is not free.
    std::map<std::pair<std::string, bool>, std::shared_ptr<net::ssl::context>> contexts;
    auto context_for = [&contexts](const std::string& ca_file, bool insecure) {
        auto& slot = contexts[{insecure ? std::string() : ca_file, insecure}];
        if (!slot) {
            slot = make_client_tls_context(ca_file, insecure);
        }
        return slot;
    };
    for (const auto& r : s->routes.routes()) {
        if (s->endpoints.count(r.host) != 0) {
            continue;
        }
        http_url origin{r.upstream.scheme, r.upstream.host, r.upstream.port, "/"};
        std::shared_ptr<net::ssl::context> tls;
        if (origin.scheme == "https") {
            try {
                tls = context_for(r.ca_file, r.insecure_skip_verify);
            } catch (const std::runtime_error& e) {
                throw std::runtime_error("registry " + r.host + ": " + e.what());
            }
        }
        auto path = r.upstream.path;
        while (!path.empty() && path.back() == '/') {
            path.pop_back();
        }
        auto ep = make_endpoint(origin, path, tls, !r.insecure_skip_verify);
        ep.http2 = r.registry != nullptr ? r.registry->http2
                   : r.acr != nullptr    ? r.acr->http2
                                         : config::http2_mode::automatic;
        s->endpoints.emplace(r.host, std::move(ep));
    }
    if (cfg->follow_redirects) {
        s->default_tls = context_for("", false);
    }
    // Providers last: the token flow reaches a route's realm with the route's TLS settings.
    auto auth_env = env;
    if (!auth_env.realm_fetcher) {
        // An http registry (explicit override) may still name an https realm.
        const bool any_http = std::any_of(s->routes.routes().begin(), s->routes.routes().end(),
                                          [](const routing::route& r) { return r.upstream.scheme == "http"; });
        auto system_tls = any_http ? context_for("", false) : nullptr;
        auth_env.realm_fetcher = [snap = s.get(), system_tls, shared](const routing::route& r) {
            const auto* ep = snap->endpoint_for(r);
            return make_realm_fetcher(ep != nullptr ? ep->tls : nullptr, ep == nullptr || ep->verify_peer, system_tls,
                                      snap->cfg->timeouts, ep != nullptr ? ep->http2 : config::http2_mode::off, shared);
        };
    }
    s->auth = tokens::auth_providers(s->routes, auth_env);
    s->warnings = s->auth.warnings();
    return s;
}

}  // namespace acp::proxy
