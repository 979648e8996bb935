#include "tokens/acr_openapi.hpp"

#include "tests/support/fake_alibaba.hpp"
#include "tokens/alibaba_error.hpp"
#include "tokens/imds_client.hpp"
#include "tokens/signing_primitives.hpp"
#include "tokens/sts_client.hpp"

#include <catch2/catch.hpp>

using namespace acp::tokens;
using acp::test::fake_alibaba;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* static_id = "LTAI5tStaticExample";
constexpr const char* static_secret = "static-secret-EXAMPLE";
constexpr const char* instance = "cri-kmsiwlxxdcvabcde";

time_point t0() {
    return *parse_iso8601_utc("2025-03-04T05:06:07Z");
}

cloud_credential static_key() {
    cloud_credential c;
    c.access_key_id = static_id;
    c.access_key_secret = acp::config::secret(static_secret);
    c.source = "environment";
    return c;
}

json endpoint(const char* type, bool enable, std::vector<std::pair<const char*, const char*>> domains) {
    json d = json::array();
    for (const auto& [name, kind] : domains) {
        d.push_back({{"Domain", name}, {"Type", kind}});
    }
    return {{"EndpointType", type},
            {"Enable", enable},
            {"Status", enable ? "RUNNING" : "STOPPED"},
            {"AclEnable", false},
            {"AclEntries", json::array()},
            {"LinkedVpcs", json::array()},
            {"Domains", d}};
}

json instance_knobs() {
    return {
        {"static_keys", {{static_id, static_secret}}},
        {"acr",
         {{"instances",
           {{instance,
             {{"endpoints",
               {endpoint("internet", true,
                         {{"demo-registry.cn-hangzhou.cr.aliyuncs.com", "SYSTEM"}, {"registry.example.com", "USER"}}),
                endpoint("vpc", true, {{"demo-registry-vpc.cn-hangzhou.cr.aliyuncs.com", "SYSTEM"}}),
                endpoint("vpc", false, {{"demo-registry-vpc-disabled.cn-hangzhou.cr.aliyuncs.com", "SYSTEM"}})}}}}}}}}};
}

struct acr_fixture {
    acr_fixture() : fake(instance_knobs()), clock(t0()) { fake.set_now(t0()); }
    fake_alibaba fake;
    manual_clock clock;
    std::unique_ptr<http_client> http = make_curl_http_client();
    alibaba_metrics metrics;
    acr_openapi api{*http, clock, 5000ms, &metrics};
};

}  // namespace

TEST_CASE("EE GetAuthorizationToken parsing", "[alibaba][acr_openapi]") {
    struct row {
        const char* name;
        long status;
        const char* body;
        const char* code;  // "" = success
    };
    const row rows[] = {
        {"documented success, password with ':'", 200,
         R"({"RequestId":"E069EB86","ExpireTime":1571242083000,"Code":"success","IsSuccess":true,)"
         R"("TempUsername":"temp_user_cr","AuthorizationToken":"shaunadadakks:uuczxnjcyeyhd"})",
         ""},
        {"IsSuccess false with HTTP 200", 200, R"({"Code":"INSTANCE_NOT_EXIST","IsSuccess":false,"RequestId":"R"})",
         "INSTANCE_NOT_EXIST"},
        {"IsSuccess missing", 200, R"({"ExpireTime":1,"TempUsername":"u","AuthorizationToken":"p","Code":"success"})",
         "IsSuccessFalse"},
        {"POP error", 403,
         R"({"RequestId":"R","HostId":"cr.cn-hangzhou.aliyuncs.com","Code":"Forbidden.RAM","Message":"denied"})",
         "Forbidden.RAM"},
        {"success without a password", 200, R"({"IsSuccess":true,"TempUsername":"u","ExpireTime":1})",
         "InvalidResponse"},
        {"not JSON", 500, "oops", "InvalidResponse"},
    };
    for (const auto& r : rows) {
        SECTION(r.name) {
            const auto p = parse_ee_token_response(r.status, r.body);
            if (std::string(r.code).empty()) {
                REQUIRE(p.ok());
                CHECK(p->username == "temp_user_cr");
                CHECK(p->password.reveal() == "shaunadadakks:uuczxnjcyeyhd");  // never split on ':'
                CHECK(to_epoch_ms(p->expires_at) == 1571242083000);            // milliseconds
                CHECK(p->request_id == "E069EB86");
            } else {
                REQUIRE_FALSE(p.ok());
                CHECK(p.error().code == r.code);
                CHECK(p.error().api == "GetAuthorizationToken");
            }
        }
    }
}

TEST_CASE("Personal GetAuthorizationToken parsing", "[alibaba][acr_openapi]") {
    const auto ok = parse_personal_token_response(
        200,
        R"({"data":{"authorizationToken":"eyJ0aW1lIjoi","tempUserName":"cr_temp_user","expireDate":1526549792000},)"
        R"("requestId":"94E89857"})");
    REQUIRE(ok.ok());
    CHECK(ok->username == "cr_temp_user");
    CHECK(ok->password.reveal() == "eyJ0aW1lIjoi");
    CHECK(to_epoch_ms(ok->expires_at) == 1526549792000);

    const auto missing =
        parse_personal_token_response(404, R"({"code":"USER_NOT_EXIST","message":"user is not exist."})");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == "USER_NOT_EXIST");
    CHECK(missing.error().message == "user is not exist.");
    const auto text = describe_instance_failure("", "cn-beijing", "ECS RAM role (instance metadata)", missing.error());
    CHECK(text.find("ACR Personal Edition (region cn-beijing)") == 0);
    CHECK(text.find("Code=USER_NOT_EXIST") != std::string::npos);
    CHECK(text.find("Container Registry console") != std::string::npos);
    CHECK(text.find("CreateUserInfo") != std::string::npos);

    const auto no_data = parse_personal_token_response(200, R"({"requestId":"x"})");
    REQUIRE_FALSE(no_data.ok());
    CHECK(no_data.error().code == "InvalidResponse");
}

TEST_CASE("ListInstanceEndpoint keeps enabled internet and vpc domains, SYSTEM and USER", "[alibaba][acr_openapi]") {
    json body = {{"Code", "success"}, {"IsSuccess", true}, {"RequestId", "R"}};
    body["Endpoints"] = instance_knobs()["acr"]["instances"][instance]["endpoints"];
    body["Endpoints"].push_back(endpoint("internet", true, {{"Demo-Registry.cn-hangzhou.cr.aliyuncs.com", "SYSTEM"}}));
    body["Endpoints"].push_back(endpoint("classic", true, {{"odd.example.com", "SYSTEM"}}));
    const auto r = parse_instance_endpoints(200, body.dump());
    REQUIRE(r.ok());
    std::vector<std::string> names;
    for (const auto& d : r.value()) {
        names.push_back(d.domain + "/" + d.endpoint_type + "/" + d.type);
    }
    CHECK(names == std::vector<std::string>{"demo-registry.cn-hangzhou.cr.aliyuncs.com/internet/SYSTEM",
                                            "registry.example.com/internet/USER",
                                            "demo-registry-vpc.cn-hangzhou.cr.aliyuncs.com/vpc/SYSTEM"});

    const auto failed = parse_instance_endpoints(200, R"({"IsSuccess":false,"Code":"INSTANCE_NOT_EXIST"})");
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.error().code == "INSTANCE_NOT_EXIST");
    CHECK(failed.error().api == "ListInstanceEndpoint");
}

TEST_CASE("EE token from the fake OpenAPI with a long-term AccessKey", "[alibaba][acr_openapi]") {
    acr_fixture f;
    const auto p = f.api.get_authorization_token(f.fake.acr_url(), instance, static_key());
    REQUIRE(p.ok());
    CHECK(p->username == "cr_temp_user");
    CHECK(p->password.reveal().find(':') != std::string::npos);
    CHECK(p->expires_at == t0() + 1h);
    const auto seen = f.fake.requests("acr", "GetAuthorizationToken", 200);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0]["instance"] == instance);
    CHECK(seen[0]["version"] == "2018-12-01");
    CHECK(seen[0]["method"] == "POST");
    CHECK(seen[0]["sts"] == false);
    CHECK(seen[0]["signed_headers"] == json::array({"host", "x-acs-action", "x-acs-content-sha256", "x-acs-date",
                                                    "x-acs-signature-nonce", "x-acs-version"}));
    CHECK(f.metrics.api[static_cast<std::size_t>(alibaba_api::acr_get_authorization_token)].success == 1);
}

TEST_CASE("EE token signed with an STS credential lives no longer than that credential", "[alibaba][acr_openapi]") {
    acr_fixture f;
    f.fake.configure({{"imds", {{"cred_lifetime_s", 1200}, {"rotate_before_s", 60}}}});
    imds_options io;
    io.endpoint = f.fake.imds_url();
    imds_client imds(*f.http, f.clock, io);
    const auto node = imds.role_credentials();
    REQUIRE(node.ok());
    const auto p = f.api.get_authorization_token(f.fake.acr_url(), instance, node.value());
    REQUIRE(p.ok());
    CHECK(p->expires_at == t0() + 20min);  // min(1 h, the STS token's remaining 20 min)
    const auto seen = f.fake.requests("acr", "GetAuthorizationToken", 200);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0]["sts"] == true);
    CHECK(seen[0]["principal"] == "ecs-role:acr-node-role");
    const auto& signed_headers = seen[0]["signed_headers"];
    CHECK(std::count(signed_headers.begin(), signed_headers.end(), "x-acs-security-token") == 1);
    CHECK(std::count(signed_headers.begin(), signed_headers.end(), "x-acs-accesskey-id") == 1);
}

TEST_CASE("Personal token from the fake OpenAPI (GET /tokens, 2016-06-07)", "[alibaba][acr_openapi]") {
    acr_fixture f;
    const auto p = f.api.get_personal_authorization_token(f.fake.acr_url(), static_key());
    REQUIRE(p.ok());
    CHECK(p->username == "cr_temp_user");
    const auto seen = f.fake.requests("acr", "GetAuthorizationToken(personal)", 200);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0]["method"] == "GET");
    CHECK(seen[0]["path"] == "/tokens");

    f.fake.configure({{"acr", {{"personal_user_exists", false}}}});
    const auto missing = f.api.get_personal_authorization_token(f.fake.acr_url(), static_key());
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == "USER_NOT_EXIST");
    CHECK(missing.error().http_status == 404);
}

TEST_CASE("ListInstanceEndpoint against the fake", "[alibaba][acr_openapi]") {
    acr_fixture f;
    const auto r = f.api.list_instance_endpoint(f.fake.acr_url(), instance, static_key());
    REQUIRE(r.ok());
    CHECK(r->size() == 3);
    const auto seen = f.fake.requests("acr", "ListInstanceEndpoint", 200);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0]["module"] == "Registry");
}

TEST_CASE("OpenAPI failures carry Code, Message and the RAM hint", "[alibaba][acr_openapi]") {
    SECTION("a denied principal: Forbidden.RAM → cr:GetAuthorizationToken") {
        acr_fixture f;
        f.fake.configure({{"acr", {{"deny_principals", {std::string("user:") + static_id}}}}});
        const auto p = f.api.get_authorization_token(f.fake.acr_url(), instance, static_key());
        REQUIRE_FALSE(p.ok());
        CHECK(p.error().code == "Forbidden.RAM");
        CHECK(p.error().http_status == 403);
        const auto text = describe_instance_failure(instance, "cn-hangzhou", "environment AccessKey", p.error());
        CHECK(text.find(std::string("ACR instance ") + instance + " (region cn-hangzhou)") == 0);
        CHECK(text.find("GetAuthorizationToken") != std::string::npos);
        CHECK(text.find("probably lacks the RAM permission cr:GetAuthorizationToken") != std::string::npos);
        const auto listed = f.api.list_instance_endpoint(f.fake.acr_url(), instance, static_key());
        REQUIRE_FALSE(listed.ok());
        CHECK(ram_permission_hint(listed.error().api, listed.error().code, listed.error().http_status) ==
              "cr:ListInstanceEndpoint");
    }
    SECTION("IsSuccess=false on HTTP 200 is a failure") {
        acr_fixture f;
        f.fake.configure({{"acr", {{"is_success_false", true}}}});
        const auto p = f.api.get_authorization_token(f.fake.acr_url(), instance, static_key());
        REQUIRE_FALSE(p.ok());
        CHECK(p.error().code == "INTERNAL_ERROR");
        CHECK(p.error().http_status == 200);
        CHECK(f.metrics.api[static_cast<std::size_t>(alibaba_api::acr_get_authorization_token)].failure == 1);
    }
    SECTION("an unknown instance") {
        acr_fixture f;
        const auto p = f.api.get_authorization_token(f.fake.acr_url(), "cri-doesnotexist", static_key());
        REQUIRE_FALSE(p.ok());
        CHECK(p.error().code == "INSTANCE_NOT_EXIST");
    }
    SECTION("a wrong secret: SignatureDoesNotMatch, the credential is to blame") {
        acr_fixture f;
        auto c = static_key();
        c.access_key_secret = acp::config::secret("wrong-secret");
        const auto p = f.api.get_authorization_token(f.fake.acr_url(), instance, c);
        REQUIRE_FALSE(p.ok());
        CHECK(p.error().code == "SignatureDoesNotMatch");
        CHECK(p.error().credential_rejected());
        CHECK(p.error().message.find("[server echo removed]") != std::string::npos);
    }
    SECTION("an expired STS token") {
        acr_fixture f;
        f.fake.configure({{"imds", {{"cred_lifetime_s", 600}, {"rotate_before_s", 1}}}});
        imds_options io;
        io.endpoint = f.fake.imds_url();
        imds_client imds(*f.http, f.clock, io);
        const auto node = imds.role_credentials();
        REQUIRE(node.ok());
        f.clock.advance(601s);
        f.fake.set_now(f.clock.now());
        const auto p = f.api.get_authorization_token(f.fake.acr_url(), instance, node.value());
        REQUIRE_FALSE(p.ok());
        CHECK(p.error().code == "InvalidSecurityToken.Expired");
        CHECK(p.error().credential_rejected());
    }
    SECTION("a clock 20 minutes off is refused (x-acs-date is signed and checked)") {
        acr_fixture f;
        f.clock.advance(20min);
        const auto p = f.api.get_authorization_token(f.fake.acr_url(), instance, static_key());
        REQUIRE_FALSE(p.ok());
        CHECK(p.error().code == "InvalidTimeStamp.Expired");
    }
    SECTION("OpenAPI unreachable") {
        acr_fixture f;
        const auto p = f.api.get_authorization_token("http://127.0.0.1:1", instance, static_key());
        REQUIRE_FALSE(p.ok());
        CHECK(p.error().code == "Transport");
        CHECK(describe_instance_failure(instance, "cn-hangzhou", "x", p.error()).find("check the endpoint") !=
              std::string::npos);
    }
}

TEST_CASE("the fake remembers issued passwords for a fake token realm to check", "[alibaba][acr_openapi]") {
    acr_fixture f;
    const auto p = f.api.get_authorization_token(f.fake.acr_url(), instance, static_key());
    REQUIRE(p.ok());
    auto http = make_curl_http_client();
    const auto check = [&](const std::string& user, const std::string& password) {
        http_request req;
        req.method = "POST";
        req.url = f.fake.control_url() + "/check_password";
        req.body = json{{"username", user}, {"password", password}}.dump();
        const auto out = http->perform(req);
        REQUIRE(out.response);
        return json::parse(out.response->body);
    };
    const auto ok = check(p->username, p->password.reveal());
    CHECK(ok["valid"] == true);
    CHECK(ok["instance"] == instance);
    CHECK(check(p->username, "nope")["valid"] == false);
    f.clock.advance(61min);
    f.fake.set_now(f.clock.now());
    CHECK(check(p->username, p->password.reveal())["valid"] == false);  // expired
}
