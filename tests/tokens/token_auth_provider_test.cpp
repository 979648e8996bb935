#include "tokens/token_auth_provider.hpp"

#include "tokens/auth_error.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

namespace asio = boost::asio;
using namespace acp::tokens;
using acp::config::secret;
using namespace std::chrono_literals;

namespace {

// A scripted realm: records what it was sent, answers what the test says.
struct fake_realm {
    std::vector<realm_request> seen;
    unsigned status = 200;
    std::string body = R"({"token":"tok-1","expires_in":300})";
    std::optional<token_failure> transport;
    int served = 0;

    realm_fetch_fn fn(asio::io_context& io) {
        return [this, &io](realm_request r) -> net::awaitable<std::variant<realm_response, token_failure>> {
            seen.push_back(std::move(r));
            asio::steady_timer t(io, 5ms);
            co_await t.async_wait(asio::use_awaitable);
            if (transport) {
                co_return *transport;
            }
            ++served;
            auto b = body;
            if (const auto pos = b.find("tok-1"); pos != std::string::npos) {
                b.replace(pos, 5, "tok-" + std::to_string(served));
            }
            co_return realm_response{status, b};
        };
    }
};

basic_source_fn fixed_basic(std::string value) {
    return [value](const auth_request&) -> net::awaitable<std::variant<secret, token_failure>> {
        co_return secret(value);
    };
}

token_auth_provider::options acr_options() {
    token_auth_provider::options o;
    o.name = "acr";
    o.registry_host = "x-registry.cn-hangzhou.cr.aliyuncs.com";
    o.registry_scheme = "https";
    o.realm_hosts = {"*.aliyuncs.com"};
    return o;
}

const auth_request app_pull{"x-registry.cn-hangzhou.cr.aliyuncs.com", "ns/app", acp::routing::request_kind::manifest};

auth_challenge bearer_challenge(std::string realm, std::string extra = {}) {
    return auth_challenge{401, {"Bearer realm=\"" + realm + "\",service=\"registry.aliyuncs.com:cn-hangzhou:26842\"" + extra}, {}};
}

template <class T>
T run(asio::io_context& io, net::awaitable<T> a) {
    std::optional<T> out;
    asio::co_spawn(io, std::move(a), [&](std::exception_ptr ep, T v) {
        if (ep) {
            std::rethrow_exception(ep);
        }
        out = std::move(v);
    });
    io.restart();
    io.run();
    REQUIRE(out.has_value());
    return std::move(*out);
}

std::string header_of(const auth_result<authorization>& r) {
    REQUIRE(r.has_value());
    return r.value() ? r.value()->reveal() : std::string("<none>");
}

}  // namespace

TEST_CASE("bearer challenge: token fetched once with Basic credentials, then injected", "[tokens][token-flow]") {
    asio::io_context io;
    fake_realm realm;
    token_auth_provider p(acr_options(), fixed_basic("Basic dGVtcDpwdw=="), realm.fn(io));

    CHECK(header_of(run(io, p.authorize(app_pull))) == "<none>");  // first contact: learn the challenge
    const auto retry = run(io, p.on_unauthorized(app_pull, bearer_challenge("https://dockerauth.cn-hangzhou.aliyuncs.com/auth")));
    REQUIRE(retry.has_value());
    CHECK(retry.value());
    CHECK(header_of(run(io, p.authorize(app_pull))) == "Bearer tok-1");
    REQUIRE(realm.seen.size() == 1);
    CHECK(realm.seen[0].realm.host == "dockerauth.cn-hangzhou.aliyuncs.com");
    CHECK(realm.seen[0].target ==
          "/auth?service=registry.aliyuncs.com%3Acn-hangzhou%3A26842&scope=repository%3Ans%2Fapp%3Apull");
    CHECK(realm.seen[0].authorization.reveal() == "Basic dGVtcDpwdw==");

    // Warm: no new fetch. Another repository: its own scope, fetched before the request (no 401 round trip).
    CHECK(header_of(run(io, p.authorize(app_pull))) == "Bearer tok-1");
    const auth_request other{app_pull.registry, "ns/other", acp::routing::request_kind::blob};
    CHECK(header_of(run(io, p.authorize(other))) == "Bearer tok-2");
    CHECK(realm.seen.size() == 2);
    CHECK(realm.seen[1].target.find("repository%3Ans%2Fother%3Apull") != std::string::npos);

    std::string metrics;
    p.append_metrics(metrics);
    const std::string base = R"(registry="x-registry.cn-hangzhou.cr.aliyuncs.com",provider="acr")";
    CHECK_THAT(metrics, Catch::Contains("acp_token_fetches_total{" + base + R"(,outcome="success"} 2)"));
    CHECK_THAT(metrics, Catch::Contains("acp_token_cache_hits_total{" + base + "} 1"));
    CHECK_THAT(metrics, Catch::Contains("acp_token_cache_misses_total{" + base + "} 2"));
}

TEST_CASE("cold scope: 200 concurrent requests make one realm fetch", "[tokens][token-flow]") {
    asio::io_context io;
    fake_realm realm;
    token_auth_provider p(acr_options(), fixed_basic("Basic x"), realm.fn(io));
    REQUIRE(run(io, p.on_unauthorized(app_pull, bearer_challenge("https://dockerauth.cn-hangzhou.aliyuncs.com/auth"))).value());
    std::vector<std::string> got;
    for (int i = 0; i < 200; ++i) {
        asio::co_spawn(io, p.authorize(app_pull), [&](std::exception_ptr, auth_result<authorization> r) {
            got.push_back(r.has_value() && r.value() ? r.value()->reveal() : "error");
        });
    }
    io.restart();
    io.run();
    CHECK(realm.seen.size() == 1);
    CHECK(got == std::vector<std::string>(200, "Bearer tok-1"));
}

TEST_CASE("a challenge cannot exfiltrate the password", "[tokens][token-flow]") {
    asio::io_context io;
    fake_realm realm;
    token_auth_provider p(acr_options(), fixed_basic("Basic c2VjcmV0"), realm.fn(io));
    for (const char* bad : {"https://collector.evil.example/auth", "http://dockerauth.cn-hangzhou.aliyuncs.com/auth",
                            "https://aliyuncs.com.evil.example/auth", "https://user@dockerauth.cn-hangzhou.aliyuncs.com/auth"}) {
        INFO(bad);
        const auto r = run(io, p.on_unauthorized(app_pull, bearer_challenge(bad)));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code.category() == auth_category());
        CHECK_THAT(r.error().detail, Catch::Contains("realm"));
    }
    CHECK(realm.seen.empty());  // the credentials never left
    // ... and since no challenge was accepted, nothing is injected.
    CHECK(header_of(run(io, p.authorize(app_pull))) == "<none>");
}

TEST_CASE("an explicit http registry may use an http realm on an allow-listed host", "[tokens][token-flow]") {
    asio::io_context io;
    fake_realm realm;
    auto o = acr_options();
    o.registry_host = "127.0.0.1:5000";
    o.registry_scheme = "http";
    o.realm_hosts = {"127.0.0.1"};
    token_auth_provider p(o, fixed_basic("Basic x"), realm.fn(io));
    const auth_request req{"127.0.0.1:5000", "a/b", acp::routing::request_kind::manifest};
    REQUIRE(run(io, p.on_unauthorized(req, bearer_challenge("http://127.0.0.1:5001/auth"))).value());
    CHECK(header_of(run(io, p.authorize(req))) == "Bearer tok-1");
}

TEST_CASE("realm failures map to distinct errors and are remembered briefly", "[tokens][token-flow]") {
    struct row {
        const char* name;
        unsigned status;
        std::string body;
        std::optional<token_failure> transport;
        auth_errc want;
    };
    const std::vector<row> rows = {
        {"realm refuses the password", 401, R"({"errors":[]})", std::nullopt, auth_errc::realm_rejected_credentials},
        {"realm forbids", 403, "", std::nullopt, auth_errc::realm_rejected_credentials},
        {"realm is broken", 500, "oops", std::nullopt, auth_errc::realm_bad_response},
        {"realm answers garbage", 200, "<html>", std::nullopt, auth_errc::realm_bad_response},
        {"realm answers without a token", 200, R"({"expires_in":60})", std::nullopt, auth_errc::realm_bad_response},
        {"realm unreachable", 0, "", token_failure{token_failure::kind::realm_unreachable, "connection refused"},
         auth_errc::realm_unreachable},
        {"realm times out", 0, "", token_failure{token_failure::kind::realm_timeout, "timed out"}, auth_errc::realm_timeout},
    };
    for (const auto& r : rows) {
        INFO(r.name);
        asio::io_context io;
        fake_realm realm;
        realm.status = r.status;
        realm.body = r.body;
        realm.transport = r.transport;
        token_auth_provider p(acr_options(), fixed_basic("Basic x"), realm.fn(io));
        REQUIRE(run(io, p.on_unauthorized(app_pull, bearer_challenge("https://dockerauth.cn-hangzhou.aliyuncs.com/auth"))).value());
        const auto got = run(io, p.authorize(app_pull));
        REQUIRE_FALSE(got.has_value());
        CHECK(got.error() == make_error_code(r.want));
        (void)run(io, p.authorize(app_pull));
        CHECK(realm.seen.size() == 1);  // within the negative TTL: no second fetch
    }
}

TEST_CASE("a refused bearer token is dropped and the retry gets a fresh one", "[tokens][token-flow]") {
    asio::io_context io;
    fake_realm realm;
    token_auth_provider p(acr_options(), fixed_basic("Basic x"), realm.fn(io));
    const auto ch = bearer_challenge("https://dockerauth.cn-hangzhou.aliyuncs.com/auth");
    REQUIRE(run(io, p.on_unauthorized(app_pull, ch)).value());
    const auto first = header_of(run(io, p.authorize(app_pull)));
    CHECK(first == "Bearer tok-1");
    auto refused = ch;
    refused.sent_authorization = secret(first);
    REQUIRE(run(io, p.on_unauthorized(app_pull, refused)).value());
    CHECK(header_of(run(io, p.authorize(app_pull))) == "Bearer tok-2");
    // A late 401 for the old token does not throw away the new one.
    REQUIRE(run(io, p.on_unauthorized(app_pull, refused)).value());
    CHECK(header_of(run(io, p.authorize(app_pull))) == "Bearer tok-2");
    CHECK(realm.seen.size() == 2);
}

TEST_CASE("scopes named by the challenge are requested too", "[tokens][token-flow]") {
    asio::io_context io;
    fake_realm realm;
    token_auth_provider p(acr_options(), fixed_basic("Basic x"), realm.fn(io));
    REQUIRE(run(io, p.on_unauthorized(app_pull, bearer_challenge("https://dockerauth.cn-hangzhou.aliyuncs.com/auth",
                                                                 ",scope=\"repository:ns/app:pull repository:ns/base:pull\"")))
                .value());
    CHECK(header_of(run(io, p.authorize(app_pull))) == "Bearer tok-1");
    REQUIRE(realm.seen.size() == 1);
    CHECK(realm.seen[0].target.find("scope=repository%3Ans%2Fapp%3Apull&scope=repository%3Ans%2Fbase%3Apull") !=
          std::string::npos);
}

TEST_CASE("Basic challenge: Basic credentials sent directly, once refused never retried", "[tokens][token-flow]") {
    asio::io_context io;
    fake_realm realm;
    token_auth_provider p(acr_options(), fixed_basic("Basic dTpw"), realm.fn(io));
    const auth_challenge basic{401, {R"(Basic realm="Registry Realm")"}, {}};
    REQUIRE(run(io, p.on_unauthorized(app_pull, basic)).value());
    CHECK(header_of(run(io, p.authorize(app_pull))) == "Basic dTpw");
    auto refused = basic;
    refused.sent_authorization = secret("Basic dTpw");
    const auto again = run(io, p.on_unauthorized(app_pull, refused));
    REQUIRE(again.has_value());
    CHECK_FALSE(again.value());  // the proxy answers 403 DENIED
    CHECK(realm.seen.empty());
}

TEST_CASE("malformed challenges and missing credentials are errors, not guesses", "[tokens][token-flow]") {
    asio::io_context io;
    fake_realm realm;
    basic_source_fn none = [](const auth_request&) -> net::awaitable<std::variant<secret, token_failure>> {
        co_return token_failure{token_failure::kind::credentials_unavailable, "ACR password for cri-x not fetched yet"};
    };
    token_auth_provider p(acr_options(), none, realm.fn(io));
    // No credentials at all: 503 at once, before any upstream round trip.
    const auto first = run(io, p.authorize(app_pull));
    REQUIRE_FALSE(first.has_value());
    CHECK(first.error() == make_error_code(auth_errc::credentials_unavailable));

    const auto bad = run(io, p.on_unauthorized(app_pull, auth_challenge{401, {R"(Bearer realm="https://x)"}, {}}));
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error() == make_error_code(auth_errc::bad_challenge));

    const auto unknown = run(io, p.on_unauthorized(app_pull, auth_challenge{401, {"Negotiate abc=="}, {}}));
    REQUIRE(unknown.has_value());
    CHECK_FALSE(unknown.value());

    REQUIRE(run(io, p.on_unauthorized(app_pull, bearer_challenge("https://dockerauth.cn-hangzhou.aliyuncs.com/auth"))).value());
    const auto r = run(io, p.authorize(app_pull));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == make_error_code(auth_errc::credentials_unavailable));
    CHECK(realm.seen.empty());
}

TEST_CASE("preemptive Basic for static credentials; a Bearer challenge still switches to tokens", "[tokens][token-flow]") {
    asio::io_context io;
    fake_realm realm;
    auto o = acr_options();
    o.preemptive_basic = true;
    token_auth_provider p(o, fixed_basic("Basic dTpw"), realm.fn(io));
    CHECK(header_of(run(io, p.authorize(app_pull))) == "Basic dTpw");
    auto ch = bearer_challenge("https://dockerauth.cn-hangzhou.aliyuncs.com/auth");
    ch.sent_authorization = secret("Basic dTpw");
    REQUIRE(run(io, p.on_unauthorized(app_pull, ch)).value());
    CHECK(header_of(run(io, p.authorize(app_pull))) == "Bearer tok-1");
}
