#include "tokens/registry_token.hpp"

#include <catch2/catch.hpp>

using namespace acp::tokens;

TEST_CASE("realm URLs parse into scheme, host, port and target", "[tokens][realm]") {
    struct row {
        const char* text;
        realm_url want;
    };
    const std::vector<row> rows = {
        {"https://dockerauth.cn-hangzhou.aliyuncs.com/auth", {"https", "dockerauth.cn-hangzhou.aliyuncs.com", 443, "/auth"}},
        {"HTTPS://Auth.Example.COM:8443/token?x=1", {"https", "auth.example.com", 8443, "/token?x=1"}},
        {"http://127.0.0.1:5001/auth", {"http", "127.0.0.1", 5001, "/auth"}},
        {"https://[::1]:9/t", {"https", "::1", 9, "/t"}},
        {"https://auth.example.com", {"https", "auth.example.com", 443, "/"}},
        {"https://auth.example.com?a=b", {"https", "auth.example.com", 443, "/?a=b"}},
    };
    for (const auto& r : rows) {
        INFO(r.text);
        const auto got = parse_realm_url(r.text);
        REQUIRE(got.has_value());
        CHECK(*got == r.want);
    }
}

TEST_CASE("realm URLs that could mislead are refused", "[tokens][realm]") {
    for (const char* bad : {"", "ftp://x/auth", "https://", "https://user:pw@evil.example/auth",
                            "https://good.aliyuncs.com@evil.example/auth", "https://x/auth#frag", "https://x y/auth",
                            "https://x:0/auth", "https://x:99999/auth", "https://x:/auth", "https://[::1/auth",
                            "https://-x/auth", "//x/auth", "https://x/a\r\nInjected: 1"}) {
        INFO(bad);
        CHECK_FALSE(parse_realm_url(bad).has_value());
    }
}

TEST_CASE("host patterns: exact, wildcard suffix, optional port", "[tokens][realm]") {
    struct row {
        const char* pattern;
        const char* host;
        std::uint16_t port;
        bool want;
    };
    const std::vector<row> rows = {
        {"*.aliyuncs.com", "dockerauth.cn-hangzhou.aliyuncs.com", 443, true},
        {"*.aliyuncs.com", "DOCKERAUTH-EE.cn-beijing.aliyuncs.com", 443, true},
        {"*.aliyuncs.com", "aliyuncs.com", 443, false},
        {"*.aliyuncs.com", "evilaliyuncs.com", 443, false},
        {"*.aliyuncs.com", "aliyuncs.com.evil.example", 443, false},
        {"auth.example.com", "auth.example.com", 8443, true},
        {"auth.example.com:8443", "auth.example.com", 8443, true},
        {"auth.example.com:8443", "auth.example.com", 443, false},
        {"auth.example.com", "sub.auth.example.com", 443, false},
        {"127.0.0.1", "127.0.0.1", 5001, true},
        {"[::1]:5001", "::1", 5001, true},
        {"*", "anything", 443, false},
        {"", "x", 443, false},
    };
    for (const auto& r : rows) {
        INFO(r.pattern << " vs " << r.host << ":" << r.port);
        CHECK(host_matches(r.pattern, r.host, r.port) == r.want);
    }
}

TEST_CASE("a challenge cannot send the password to an unlisted or downgraded realm", "[tokens][realm]") {
    const std::vector<std::string> acr = {"*.aliyuncs.com"};
    const auto good = parse_realm_url("https://dockerauth-ee.cn-hangzhou.aliyuncs.com/auth");
    REQUIRE(good);
    CHECK_FALSE(realm_refusal(*good, acr, "x-registry.cn-hangzhou.cr.aliyuncs.com", "https").has_value());

    const auto evil = parse_realm_url("https://collector.evil.example/auth");
    REQUIRE(evil);
    const auto why = realm_refusal(*evil, acr, "x-registry.cn-hangzhou.cr.aliyuncs.com", "https");
    REQUIRE(why.has_value());
    CHECK_THAT(*why, Catch::Contains("collector.evil.example") && Catch::Contains("realmHosts"));

    const auto plain = parse_realm_url("http://dockerauth.cn-hangzhou.aliyuncs.com/auth");
    REQUIRE(plain);
    CHECK(realm_refusal(*plain, acr, "x-registry.cn-hangzhou.cr.aliyuncs.com", "https").has_value());
    // An explicit http:// endpoint override (tests, private clouds) allows an http realm.
    CHECK_FALSE(realm_refusal(*plain, acr, "x-registry.cn-hangzhou.cr.aliyuncs.com", "http").has_value());

    // Empty allow-list: the registry's own host name only, any port.
    const auto own = parse_realm_url("https://registry.example.com:5001/token");
    REQUIRE(own);
    CHECK_FALSE(realm_refusal(*own, {}, "registry.example.com", "https").has_value());
    CHECK(realm_refusal(*own, {}, "other.example.com", "https").has_value());
}

TEST_CASE("token request targets carry service and every scope, percent-encoded", "[tokens][realm]") {
    const auto realm = parse_realm_url("https://dockerauth.cn-hangzhou.aliyuncs.com/auth");
    REQUIRE(realm);
    CHECK(token_request_target(*realm, "registry.aliyuncs.com:cn-hangzhou:26842", {pull_scope("ns/app")}) ==
          "/auth?service=registry.aliyuncs.com%3Acn-hangzhou%3A26842&scope=repository%3Ans%2Fapp%3Apull");

    const auto with_query = parse_realm_url("https://auth.example.com/token?client=x");
    REQUIRE(with_query);
    CHECK(token_request_target(*with_query, "", {"repository:a:pull", "repository:b c:pull"}) ==
          "/token?client=x&scope=repository%3Aa%3Apull&scope=repository%3Ab%20c%3Apull");
    CHECK(token_request_target(*with_query, "", {}) == "/token?client=x");
}

TEST_CASE("token responses: token, access_token, expires_in defaults and bounds", "[tokens][token]") {
    struct row {
        const char* name;
        const char* body;
        std::optional<std::pair<std::string, long>> want;  // token, expires_in
    };
    const std::vector<row> rows = {
        {"token only, spec default lifetime", R"({"token":"t1"})", std::make_pair("t1", 60L)},
        {"access_token only", R"({"access_token":"a1","expires_in":300})", std::make_pair("a1", 300L)},
        {"both: access_token wins", R"({"token":"t","access_token":"a","expires_in":120,"issued_at":"2026-11-28T12:00:00Z"})",
         std::make_pair("a", 120L)},
        {"empty access_token falls back to token", R"({"token":"t","access_token":""})", std::make_pair("t", 60L)},
        {"null expires_in is the default", R"({"token":"t","expires_in":null})", std::make_pair("t", 60L)},
        {"neither field", R"({"expires_in":60})", std::nullopt},
        {"empty token", R"({"token":""})", std::nullopt},
        {"non-string token", R"({"token":42})", std::nullopt},
        {"not JSON", "<html>502</html>", std::nullopt},
        {"JSON array", R"(["token"])", std::nullopt},
        {"negative expires_in", R"({"token":"t","expires_in":-5})", std::nullopt},
        {"zero expires_in", R"({"token":"t","expires_in":0})", std::nullopt},
        {"string expires_in", R"({"token":"t","expires_in":"60"})", std::nullopt},
        {"fractional expires_in", R"({"token":"t","expires_in":1.5})", std::nullopt},
        {"absurd expires_in", R"({"token":"t","expires_in":99999999999})", std::nullopt},
    };
    for (const auto& r : rows) {
        INFO(r.name);
        std::string error;
        const auto got = parse_token_response(r.body, error);
        if (r.want) {
            REQUIRE(got.has_value());
            CHECK(got->token.reveal() == r.want->first);
            CHECK(got->expires_in.count() == r.want->second);
        } else {
            CHECK_FALSE(got.has_value());
            CHECK_FALSE(error.empty());
        }
    }
}

TEST_CASE("token response errors never echo the body", "[tokens][token]") {
    std::string error;
    CHECK_FALSE(parse_token_response(R"({"token":"s3cr3t-token","expires_in":"soon"})", error));
    CHECK(error.find("s3cr3t") == std::string::npos);
    const std::string huge(max_token_response_bytes + 1, 'x');
    CHECK_FALSE(parse_token_response(huge, error));
    CHECK_THAT(error, Catch::Contains("larger than"));
}
