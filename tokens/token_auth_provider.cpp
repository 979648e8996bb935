#include "tokens/token_auth_provider.hpp"

#include "config/logging.hpp"
#include "tokens/auth_error.hpp"
#include "tokens/bearer_challenge.hpp"

#include <boost/asio/error.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace acp::tokens {
namespace {

// The remembered challenge scopes are bounded; past this the map starts over.
constexpr std::size_t max_remembered_scopes = 1024;

std::vector<std::string> split_scopes(std::string_view s) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < s.size()) {
        const auto j = s.find(' ', i);
        const auto part = s.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i);
        if (!part.empty()) {
            out.emplace_back(part);
        }
        if (j == std::string_view::npos) {
            break;
        }
        i = j + 1;
    }
    return out;
}

std::string describe(const realm_url& r) {
    const bool default_port = (r.scheme == "https" && r.port == 443) || (r.scheme == "http" && r.port == 80);
    const auto host = r.host.find(':') != std::string::npos ? "[" + r.host + "]" : r.host;
    return r.scheme + "://" + host + (default_port ? "" : ":" + std::to_string(r.port));
}

token_failure failure(auth_errc code, std::string detail) {
    using k = token_failure::kind;
    k what = k::realm_bad_response;
    switch (code) {
        case auth_errc::credentials_unavailable: what = k::credentials_unavailable; break;
        case auth_errc::realm_refused: what = k::realm_refused; break;
        case auth_errc::realm_unreachable: what = k::realm_unreachable; break;
        case auth_errc::realm_timeout: what = k::realm_timeout; break;
        case auth_errc::realm_rejected_credentials: what = k::realm_rejected_credentials; break;
        case auth_errc::realm_bad_response:
        case auth_errc::bad_challenge: what = k::realm_bad_response; break;
        case auth_errc::shutting_down: what = k::shutting_down; break;
    }
    return token_failure{what, std::move(detail)};
}

// The one realm exchange: Basic credentials in, a token (or why not) out.
// Values only: it may outlive the provider (a reload while a fetch is in flight).
net::awaitable<fetch_result> fetch_token(basic_source_fn basic, realm_fetch_fn fetch, auth_request req,
                                         realm_url realm, std::string service, std::vector<std::string> scopes,
                                         std::string provider_name) {
    auto log = logging::logger("tokens");
    auto creds = co_await basic(req);
    if (auto* f = std::get_if<token_failure>(&creds)) {
        log->warn("{}: no credentials for {} to log in to realm {}: {}", provider_name, req.registry, describe(realm),
                  f->detail);
        co_return *f;
    }
    realm_request rr{realm, token_request_target(realm, service, scopes), std::get<config::secret>(std::move(creds))};
    auto exchange = fetch(std::move(rr));
    auto answer = co_await std::move(exchange);
    if (auto* f = std::get_if<token_failure>(&answer)) {
        log->warn("{}: token realm {} for {} failed: {}", provider_name, describe(realm), req.registry, f->detail);
        co_return *f;
    }
    const auto& resp = std::get<realm_response>(answer);
    if (resp.status == 401 || resp.status == 403) {
        auto detail = "token realm " + describe(realm) + " answered " + std::to_string(resp.status) +
                      " to the credentials for " + req.registry;
        log->warn("{}: {}", provider_name, detail);
        co_return failure(auth_errc::realm_rejected_credentials, std::move(detail));
    }
    if (resp.status < 200 || resp.status > 299) {
        auto detail = "token realm " + describe(realm) + " answered " + std::to_string(resp.status) + " for " +
                      req.registry;
        log->warn("{}: {}", provider_name, detail);
        co_return failure(auth_errc::realm_bad_response, std::move(detail));
    }
    std::string error;
    auto token = parse_token_response(resp.body, error);
    if (!token) {
        auto detail = "token realm " + describe(realm) + " for " + req.registry + ": " + error;
        log->warn("{}: {}", provider_name, detail);
        co_return failure(auth_errc::realm_bad_response, std::move(detail));
    }
    log->debug("{}: token for {} scope {} from realm {}, valid {} s", provider_name, req.registry,
               fmt::join(scopes, " "), describe(realm), token->expires_in.count());
    co_return std::move(*token);
}

auth_result<bool> error_result(auth_errc e, std::string detail) {
    return {boost::system::in_place_error, auth_error{make_error_code(e), std::move(detail)}};
}

auth_error to_auth_error(const token_failure& f) { return auth_error{to_error_code(f), f.detail}; }

}  // namespace

boost::system::error_code to_error_code(const token_failure& f) {
    using k = token_failure::kind;
    switch (f.what) {
        case k::credentials_unavailable: return auth_errc::credentials_unavailable;
        case k::realm_refused: return auth_errc::realm_refused;
        case k::realm_unreachable: return auth_errc::realm_unreachable;
        case k::realm_timeout: return auth_errc::realm_timeout;
        case k::realm_rejected_credentials: return auth_errc::realm_rejected_credentials;
        case k::realm_bad_response: return auth_errc::realm_bad_response;
        case k::shutting_down: return auth_errc::shutting_down;
        case k::cancelled: return boost::asio::error::operation_aborted;
        case k::backing_off: return auth_errc::credentials_unavailable;
    }
    return auth_errc::realm_bad_response;
}

token_auth_provider::token_auth_provider(options opts, basic_source_fn basic, realm_fetch_fn fetch,
                                         token_cache::clock_fn clock)
    : opts_(std::move(opts)),
      basic_(std::move(basic)),
      fetch_(std::move(fetch)),
      cache_(std::make_shared<token_cache>(opts_.cache, std::move(clock))) {}

net::awaitable<auth_result<authorization>> token_auth_provider::authorize(auth_request req) {
    switch (scheme_) {
        case scheme::unknown:
            if (!opts_.preemptive_basic) {
                // First contact: the registry's challenge tells us what it wants. But
                // without credentials to answer it there is no point asking: 503 now
                // (this also waits, bounded, for a first ACR password being fetched).
                auto creds = co_await basic_(req);
                if (auto* f = std::get_if<token_failure>(&creds)) {
                    co_return to_auth_error(*f);
                }
                co_return authorization{};
            }
            [[fallthrough]];
        case scheme::basic: {
            auto creds = co_await basic_(req);
            if (auto* f = std::get_if<token_failure>(&creds)) {
                co_return to_auth_error(*f);
            }
            co_return authorization{std::get<config::secret>(std::move(creds))};
        }
        case scheme::bearer:
            break;
    }
    co_return co_await bearer_for(req);
}

std::pair<std::string, std::vector<std::string>> token_auth_provider::scopes_for(const auth_request& req) const {
    std::set<std::string> scope_set{req.pull_scope()};
    if (const auto it = challenge_scopes_.find(req.repository); it != challenge_scopes_.end()) {
        scope_set.insert(it->second.begin(), it->second.end());
    }
    std::string key = opts_.registry_host;
    for (const auto& s : scope_set) {
        key += " " + s;
    }
    return {std::move(key), std::vector<std::string>(scope_set.begin(), scope_set.end())};
}

net::awaitable<auth_result<authorization>> token_auth_provider::bearer_for(const auth_request& req) {
    auto [key, scopes] = scopes_for(req);
    // scopes by init-capture: clang before 16 cannot capture a structured binding.
    auto fetch = [basic = basic_, fetch = fetch_, req, realm = bearer_->realm, service = bearer_->service,
                  scope_list = scopes, name = opts_.name]() {
        return fetch_token(basic, fetch, req, realm, service, scope_list, name);
    };
    // Awaitables built before co_await: GCC 12 destroys non-trivial temporaries
    // of a co_await full-expression twice.
    auto lookup = cache_->get(std::move(key), std::move(fetch));
    auto got = co_await std::move(lookup);
    if (auto* f = std::get_if<token_failure>(&got)) {
        co_return to_auth_error(*f);
    }
    co_return authorization{config::secret("Bearer " + std::get<config::secret>(got).reveal())};
}

net::awaitable<auth_result<bool>> token_auth_provider::on_unauthorized(auth_request req,
                                                                                 auth_challenge challenge) {
    auto log = logging::logger("tokens");
    std::vector<std::string_view> lines(challenge.www_authenticate.begin(), challenge.www_authenticate.end());
    const auto parsed = parse_challenges(lines);
    if (!parsed) {
        auto detail = fmt::format("{} answered 401 with {} malformed WWW-Authenticate header(s)", opts_.registry_host,
                                  lines.size());
        log->warn("{}: {} for {}", opts_.name, detail, req.repository);
        co_return error_result(auth_errc::bad_challenge, std::move(detail));
    }
    if (const auto bearer = find_bearer(*parsed)) {
        const auto realm = parse_realm_url(bearer->realm);
        if (!realm) {
            auto detail = opts_.registry_host + " challenged with an unusable realm URL; credentials not sent";
            log->warn("{}: {}", opts_.name, detail);
            co_return error_result(auth_errc::bad_challenge, std::move(detail));
        }
        if (auto why = realm_refusal(*realm, opts_.realm_hosts, opts_.registry_host, opts_.registry_scheme)) {
            auto detail = "not sending credentials for " + opts_.registry_host + " to token realm " + describe(*realm) +
                          ": " + *why;
            log->warn("{}: {}", opts_.name, detail);
            co_return error_result(auth_errc::realm_refused, std::move(detail));
        }
        // The token we sent (if any) is no good: forget it so the retry fetches a fresh one.
        const auto& sent = challenge.sent_authorization.reveal();
        constexpr std::string_view bearer_prefix = "Bearer ";
        if (sent.size() > bearer_prefix.size() && sent.compare(0, bearer_prefix.size(), bearer_prefix) == 0) {
            cache_->invalidate(scopes_for(req).first, config::secret(sent.substr(bearer_prefix.size())));
        }
        auto extra = split_scopes(bearer->scope);
        if (challenge_scopes_.size() >= max_remembered_scopes) {
            challenge_scopes_.clear();
        }
        if (extra.empty()) {
            challenge_scopes_.erase(req.repository);
        } else {
            challenge_scopes_[req.repository] = std::move(extra);
        }
        bearer_ = learned_bearer{*realm, bearer->service};
        scheme_ = scheme::bearer;
        co_return true;
    }
    if (has_basic(*parsed)) {
        const bool sent_basic = challenge.sent_authorization.reveal().rfind("Basic ", 0) == 0;
        scheme_ = scheme::basic;
        co_return !sent_basic;  // Basic credentials already refused: nothing better to offer
    }
    log->warn("{}: {} challenged with no Bearer or Basic scheme; cannot authenticate", opts_.name, opts_.registry_host);
    co_return false;
}

void token_auth_provider::append_metrics(std::string& out) const {
    const auto c = cache_->counters();
    const auto label = "{registry=\"" + opts_.registry_host + "\",provider=\"" + opts_.name + "\"";
    const auto line = [&](std::string_view name, std::string_view extra, double value) {
        out += fmt::format("{}{}{}}} {}\n", name, label, extra, value);
    };
    line("acp_token_fetches_total", ",outcome=\"success\"", static_cast<double>(c.fetches - c.fetch_failures));
    line("acp_token_fetches_total", ",outcome=\"failure\"", static_cast<double>(c.fetch_failures));
    line("acp_token_cache_hits_total", "", static_cast<double>(c.hits));
    line("acp_token_cache_misses_total", "", static_cast<double>(c.misses));
    line("acp_token_singleflight_waiters_total", "", static_cast<double>(c.waiters));
    line("acp_token_fast_failures_total", "", static_cast<double>(c.fast_failures));
    line("acp_token_background_refreshes_total", "", static_cast<double>(c.background_refreshes));
    line("acp_token_fetch_seconds_sum", "", c.fetch_seconds_sum);
    line("acp_token_fetch_seconds_count", "", static_cast<double>(c.fetches));
}

}  // namespace acp::tokens
