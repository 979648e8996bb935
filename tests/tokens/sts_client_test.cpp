#include "tokens/sts_client.hpp"

#include "tests/support/fake_alibaba.hpp"
#include "tokens/alibaba_error.hpp"
#include "tokens/imds_client.hpp"
#include "tokens/signing_primitives.hpp"

#include <catch2/catch.hpp>

using namespace acp::tokens;
using acp::test::fake_alibaba;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* static_id = "LTAI5tStaticExample";
constexpr const char* static_secret = "static-secret-EXAMPLE";
constexpr const char* role_arn = "acs:ram::1234567890123456:role/acr-puller";

time_point t0() {
    return *parse_iso8601_utc("2025-03-04T05:06:07Z");
}

cloud_credential static_key(const char* secret = static_secret) {
    cloud_credential c;
    c.access_key_id = static_id;
    c.access_key_secret = acp::config::secret(secret);
    c.source = "environment";
    return c;
}

struct sts_fixture {
    explicit sts_fixture(const json& knobs = json::object())
        : fake(json{{"static_keys", {{static_id, static_secret}}}}), clock(t0()) {
        fake.configure(knobs);
        fake.set_now(t0());
    }
    fake_alibaba fake;
    manual_clock clock;
    std::unique_ptr<http_client> http = make_curl_http_client();
    alibaba_metrics metrics;
    sts_client sts{*http, clock, 5000ms, &metrics};
};

assume_role_params params(std::chrono::seconds d = 3600s) {
    assume_role_params p;
    p.role_arn = role_arn;
    p.role_session_name = "acr-credential-proxy";
    p.duration = d;
    return p;
}

}  // namespace

TEST_CASE("AssumeRole with a long-term AccessKey: V1 signature accepted by the fake", "[alibaba][sts]") {
    sts_fixture f;
    const auto r = f.sts.assume_role(f.fake.sts_url(), static_key(), params());
    REQUIRE(r.ok());
    CHECK(r->access_key_id.rfind("STS.", 0) == 0);
    CHECK(r->is_sts());
    REQUIRE(r->expiration);
    CHECK(*r->expiration == t0() + 1h);
    CHECK(r->obtained_at == t0());
    CHECK(r->source == std::string("assume_role/") + role_arn + " via environment");

    const auto seen = f.fake.requests("sts", "AssumeRole", 200);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0]["source_principal"] == std::string("user:") + static_id);
    CHECK(seen[0]["duration"] == 3600);
    // credentials-go's split: role parameters in the form body, the rest in the query.
    CHECK(seen[0]["body_params"] == json::array({"DurationSeconds", "RoleArn", "RoleSessionName"}));
    CHECK(f.metrics.api[static_cast<std::size_t>(alibaba_api::sts_assume_role)].success == 1);
}

TEST_CASE("AssumeRole on top of an STS credential sends and signs its SecurityToken", "[alibaba][sts]") {
    sts_fixture f;
    imds_options io;
    io.endpoint = f.fake.imds_url();
    imds_client imds(*f.http, f.clock, io);
    const auto node = imds.role_credentials();
    REQUIRE(node.ok());
    const auto r = f.sts.assume_role(f.fake.sts_url(), node.value(), params());
    REQUIRE(r.ok());
    const auto seen = f.fake.requests("sts", "AssumeRole", 200);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0]["source_principal"] == "ecs-role:acr-node-role");
    const auto& signed_params = seen[0]["signed_params"];
    CHECK(std::find(signed_params.begin(), signed_params.end(), "SecurityToken") != signed_params.end());
}

TEST_CASE("AssumeRole rejections become scrubbed api_errors", "[alibaba][sts]") {
    SECTION("a wrong secret: SignatureDoesNotMatch, the server's echo (with the token) removed") {
        sts_fixture f;
        imds_options io;
        io.endpoint = f.fake.imds_url();
        imds_client imds(*f.http, f.clock, io);
        auto node = imds.role_credentials();
        REQUIRE(node.ok());
        node.value().access_key_secret = acp::config::secret("not-the-secret");
        const auto r = f.sts.assume_role(f.fake.sts_url(), node.value(), params());
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == "SignatureDoesNotMatch");
        CHECK(r.error().http_status == 400);
        CHECK(r.error().credential_rejected());
        CHECK_FALSE(r.error().request_id.empty());
        const auto text = r.error().describe();
        CHECK(text.find(node->security_token.reveal()) == std::string::npos);
        CHECK(text.find(percent_encode(node->security_token.reveal())) == std::string::npos);
        CHECK(text.find("SecurityToken") == std::string::npos);
        CHECK(text.find("[server echo removed]") != std::string::npos);
    }
    SECTION("an unknown AccessKeyId") {
        sts_fixture f;
        auto c = static_key();
        c.access_key_id = "LTAI5tUnknown";
        const auto r = f.sts.assume_role(f.fake.sts_url(), c, params());
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == "InvalidAccessKeyId.NotFound");
        CHECK(r.error().credential_rejected());
    }
    SECTION("a role the caller may not assume: NoPermission with the RAM hint") {
        sts_fixture f(json{{"sts", {{"deny_roles", {role_arn}}}}});
        const auto r = f.sts.assume_role(f.fake.sts_url(), static_key(), params());
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == "NoPermission");
        CHECK(r.error().http_status == 403);
        CHECK(ram_permission_hint(r.error().api, r.error().code, r.error().http_status).find("sts:AssumeRole") == 0);
    }
    SECTION("a duration under 900 s") {
        sts_fixture f;
        const auto r = f.sts.assume_role(f.fake.sts_url(), static_key(), params(600s));
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == "InvalidParameter.DurationSeconds");
        CHECK_FALSE(r.error().credential_rejected());
    }
    SECTION("an expired source token") {
        sts_fixture f(json{{"sts", {{"max_session_s", 1000}}}});
        const auto first = f.sts.assume_role(f.fake.sts_url(), static_key(), params(1000s));
        REQUIRE(first.ok());
        f.clock.advance(1001s);
        f.fake.set_now(f.clock.now());
        const auto r = f.sts.assume_role(f.fake.sts_url(), first.value(), params(900s));
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == "InvalidSecurityToken.Expired");
        CHECK(r.error().credential_rejected());
    }
    SECTION("STS down") {
        sts_fixture f(json{{"down", {{"sts", true}}}});
        const auto r = f.sts.assume_role(f.fake.sts_url(), static_key(), params());
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().http_status == 503);
        CHECK(r.error().code == "ServiceUnavailable");
        CHECK(f.metrics.api[static_cast<std::size_t>(alibaba_api::sts_assume_role)].failure == 1);
    }
}

TEST_CASE("AssumeRoleWithOIDC is anonymous and carries the token in the form body", "[alibaba][sts]") {
    const std::string token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln";
    sts_fixture f(json{{"sts", {{"oidc_tokens", {token}}}}});
    oidc_params p;
    p.role_arn = role_arn;
    p.oidc_provider_arn = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123";
    p.oidc_token = acp::config::secret(token);
    p.role_session_name = "acr-credential-proxy";
    const auto r = f.sts.assume_role_with_oidc(f.fake.sts_url(), p);
    REQUIRE(r.ok());
    CHECK(r->source == std::string("rrsa/") + role_arn);
    const auto seen = f.fake.requests("sts", "AssumeRoleWithOIDC", 200);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].count("signed") == 0);
    CHECK(seen[0]["oidc_token_sha256"] == sha256_hex(token));
    CHECK(seen[0]["oidc_provider_arn"] == p.oidc_provider_arn);

    p.oidc_token = acp::config::secret("eyJ-some-other-token");
    const auto bad = f.sts.assume_role_with_oidc(f.fake.sts_url(), p);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code == "AuthenticationFail.OIDCToken.Invalid");
}

TEST_CASE("parse_sts_response shapes", "[alibaba][sts]") {
    struct row {
        const char* name;
        long status;
        const char* body;
        bool ok;
        const char* code;
    };
    const row rows[] = {
        {"success", 200,
         R"({"RequestId":"R1","AssumedRoleUser":{},"Credentials":{"AccessKeyId":"STS.a","AccessKeySecret":"s",)"
         R"("SecurityToken":"t","Expiration":"2025-03-04T06:06:07Z"}})",
         true, ""},
        {"error body", 403, R"({"RequestId":"R2","HostId":"sts.aliyuncs.com","Code":"NoPermission","Message":"no"})",
         false, "NoPermission"},
        {"not JSON", 502, "<html>bad gateway</html>", false, "InvalidResponse"},
        {"200 without credentials", 200, R"({"RequestId":"R3"})", false, "InvalidResponse"},
        {"missing expiration", 200,
         R"({"Credentials":{"AccessKeyId":"STS.a","AccessKeySecret":"s","SecurityToken":"t"}})", false,
         "InvalidResponse"},
        {"error without a code", 500, R"({"RequestId":"R4"})", false, "HTTP500"},
    };
    for (const auto& r : rows) {
        SECTION(r.name) {
            const auto p = parse_sts_response("AssumeRole", r.status, r.body, {});
            CHECK(p.ok() == r.ok);
            if (!r.ok) {
                CHECK(p.error().code == r.code);
            } else {
                CHECK(*p->expiration == t0() + 1h);
            }
        }
    }
}
