#include "tokens/bearer_challenge.hpp"

#include <catch2/catch.hpp>

#include <string>

using acp::tokens::bearer_params;
using acp::tokens::challenge;
using acp::tokens::find_bearer;
using acp::tokens::has_basic;
using acp::tokens::parse_challenges;

namespace {

challenge make(std::string scheme, std::vector<std::pair<std::string, std::string>> params, std::string t68 = {}) {
    return challenge{std::move(scheme), std::move(params), std::move(t68)};
}

}  // namespace

TEST_CASE("well-formed WWW-Authenticate values parse to the expected challenges", "[tokens][challenge]") {
    struct row {
        const char* name;
        std::string header;
        std::vector<challenge> want;
    };
    const std::vector<row> rows = {
        {"ACR Personal Edition challenge (facts §3.1)",
         R"(Bearer realm="https://dockerauth.cn-hangzhou.aliyuncs.com/auth",service="registry.aliyuncs.com:cn-hangzhou:26842")",
         {make("bearer", {{"realm", "https://dockerauth.cn-hangzhou.aliyuncs.com/auth"},
                          {"service", "registry.aliyuncs.com:cn-hangzhou:26842"}})}},
        {"ACR Enterprise Edition challenge with scope",
         R"(Bearer realm="https://dockerauth-ee.cn-hangzhou.aliyuncs.com/auth",service="registry.aliyuncs.com:cn-hangzhou:china:cri-abc",scope="repository:ns/app:pull")",
         {make("bearer", {{"realm", "https://dockerauth-ee.cn-hangzhou.aliyuncs.com/auth"},
                          {"service", "registry.aliyuncs.com:cn-hangzhou:china:cri-abc"},
                          {"scope", "repository:ns/app:pull"}})}},
        {"docker-registry htpasswd Basic challenge", R"(Basic realm="Registry Realm")",
         {make("basic", {{"realm", "Registry Realm"}})}},
        {"scheme and keys are case-insensitive, values keep their case", R"(BEARER Realm="https://X/Auth",SERVICE=Svc)",
         {make("bearer", {{"realm", "https://X/Auth"}, {"service", "Svc"}})}},
        {"commas and spaces inside quotes stay in the value",
         R"(Bearer realm="https://x/auth?a=1,2", scope="repository:a/b:pull repository:c:pull,push")",
         {make("bearer", {{"realm", "https://x/auth?a=1,2"}, {"scope", "repository:a/b:pull repository:c:pull,push"}})}},
        {"quoted-pair escapes are unescaped", R"(Bearer realm="https://x/\"q\"\\z",error="invalid_token")",
         {make("bearer", {{"realm", R"(https://x/"q"\z)"}, {"error", "invalid_token"}})}},
        {"bad whitespace around '=' is allowed", "Bearer realm = \"https://x\" ,\tservice =s",
         {make("bearer", {{"realm", "https://x"}, {"service", "s"}})}},
        {"two challenges in one header", R"(Basic realm="x", Bearer realm="https://y", service="z")",
         {make("basic", {{"realm", "x"}}), make("bearer", {{"realm", "https://y"}, {"service", "z"}})}},
        {"a scheme with no parameters, then another", R"(Negotiate, Bearer realm="https://y")",
         {make("negotiate", {}), make("bearer", {{"realm", "https://y"}})}},
        {"token68 with padding", "Negotiate abc+/==", {make("negotiate", {}, "abc+/==")}},
        {"token68 without padding", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", {make("basic", {}, "YWxhZGRpbjpvcGVuc2VzYW1l")}},
        {"empty list elements are ignored", R"(, ,Bearer realm="https://y",,)", {make("bearer", {{"realm", "https://y"}})}},
        {"empty quoted value", R"(Bearer realm="https://y",service="")",
         {make("bearer", {{"realm", "https://y"}, {"service", ""}})}},
    };
    for (const auto& r : rows) {
        INFO(r.name);
        const auto got = parse_challenges(r.header);
        REQUIRE(got.has_value());
        CHECK(*got == r.want);
    }
}

TEST_CASE("malformed or hostile WWW-Authenticate values are rejected", "[tokens][challenge]") {
    const std::vector<std::pair<const char*, std::string>> rows = {
        {"empty", ""},
        {"only commas and spaces", " , ,"},
        {"unterminated quote", R"(Bearer realm="https://x)"},
        {"missing value before comma", "Bearer realm=,service=x"},
        {"starts with '='", "=x"},
        {"two params without a comma", R"(Bearer realm="a" service="b")"},
        {"duplicate realm makes the challenge ambiguous", R"(Bearer realm="https://good",realm="https://evil")"},
        {"duplicate key differing in case", R"(Bearer realm="https://good",REALM="https://evil")"},
        {"control character inside a quoted string", std::string("Bearer realm=\"a\x01b\"")},
        {"NUL inside a quoted string", std::string("Bearer realm=\"a\0b\"", 17)},
        {"DEL inside a quoted string", "Bearer realm=\"a\x7f\""},
        {"escape at end of input", R"(Bearer realm="a\)"},
        {"scheme glued to a quote", R"(Bearer"x")"},
        {"garbage after a quoted value", R"(Bearer realm="a"x)"},
        {"non-token scheme", "(Bearer) realm=x"},
        {"over the byte bound", "Bearer realm=\"" + std::string(9000, 'a') + "\""},
    };
    for (const auto& [name, header] : rows) {
        INFO(name);
        CHECK_FALSE(parse_challenges(header).has_value());
    }
}

TEST_CASE("the challenge and parameter counts are bounded", "[tokens][challenge]") {
    std::string many;
    for (int i = 0; i < 17; ++i) {
        many += "Basic realm=\"r" + std::to_string(i) + "\", ";
    }
    CHECK_FALSE(parse_challenges(many).has_value());

    std::string params = "Bearer ";
    for (int i = 0; i < 33; ++i) {
        params += "k" + std::to_string(i) + "=v,";
    }
    CHECK_FALSE(parse_challenges(params).has_value());
}

TEST_CASE("several header lines are combined in order; one bad line rejects all", "[tokens][challenge]") {
    const auto both = parse_challenges(std::vector<std::string_view>{R"(Basic realm="a")", R"(Bearer realm="https://b")"});
    REQUIRE(both.has_value());
    REQUIRE(both->size() == 2);
    CHECK((*both)[0].scheme == "basic");
    CHECK((*both)[1].scheme == "bearer");

    CHECK_FALSE(parse_challenges(std::vector<std::string_view>{R"(Basic realm="a")", R"(Bearer realm="x)"}).has_value());
    CHECK_FALSE(parse_challenges(std::vector<std::string_view>{}).has_value());
}

TEST_CASE("find_bearer picks the first Bearer challenge that has a realm", "[tokens][challenge]") {
    const auto chs = parse_challenges(
        R"(Basic realm="x", Bearer service="no-realm", Bearer realm="https://auth/t",service="svc",scope="repository:a:pull")");
    REQUIRE(chs.has_value());
    CHECK(find_bearer(*chs) == bearer_params{"https://auth/t", "svc", "repository:a:pull"});
    CHECK(has_basic(*chs));

    const auto basic_only = parse_challenges(R"(Basic realm="Registry Realm")");
    REQUIRE(basic_only.has_value());
    CHECK_FALSE(find_bearer(*basic_only).has_value());
    CHECK(has_basic(*basic_only));

    // `realm=` with no value is, by the grammar, a token68 -- and so no realm at all.
    const auto token68_realm = parse_challenges("Bearer realm=");
    REQUIRE(token68_realm.has_value());
    CHECK((*token68_realm)[0].token68 == "realm=");
    CHECK_FALSE(find_bearer(*token68_realm).has_value());

    const auto empty_realm = parse_challenges(R"(Bearer realm="")");
    REQUIRE(empty_realm.has_value());
    CHECK_FALSE(find_bearer(*empty_realm).has_value());
    CHECK_FALSE(has_basic(*empty_realm));
}
