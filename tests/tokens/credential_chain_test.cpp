#include "tokens/credential_chain.hpp"

#include "tests/support/fake_alibaba.hpp"
#include "tokens/signing_primitives.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace acp::tokens;
using acp::test::fake_alibaba;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* role_arn = "acs:ram::1234567890123456:role/acr-puller";
constexpr const char* cross_role = "acs:ram::6543210987654321:role/cross-account-puller";
constexpr const char* provider_arn = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123";
constexpr const char* token_file = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token";

time_point t0() {
    return *parse_iso8601_utc("2025-03-04T05:06:07Z");
}

/// An environment backed by maps: variables and files the test changes at will.
struct fake_env {
    std::map<std::string, std::string> vars;
    std::map<std::string, std::string> files;
    acp::config::environment env() {
        return {[this](const std::string& n) -> std::optional<std::string> {
                    const auto it = vars.find(n);
                    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
                },
                [this](const std::string& p) -> std::optional<std::string> {
                    const auto it = files.find(p);
                    return it == files.end() ? std::nullopt : std::optional<std::string>(it->second);
                }};
    }
};

struct chain_fixture {
    chain_fixture() : fake(json{{"static_keys", {{"LTAI5tEnvExample", "env-secret"}}}}), clock(t0()) {
        fake.set_now(t0());
    }
    provider_context ctx() {
        return provider_context{*http, clock, cfg, env.env(), &metrics, [this] { return fake.sts_url(); }, {}};
    }
    std::shared_ptr<imds_client> imds() {
        imds_options io;
        io.endpoint = fake.imds_url();
        return std::make_shared<imds_client>(*http, clock, io);
    }
    void advance(wall_clock::duration d) {
        clock.advance(d);
        fake.set_now(clock.now());
    }
    fake_alibaba fake;
    manual_clock clock;
    std::unique_ptr<http_client> http = make_curl_http_client();
    acp::config::config cfg;
    fake_env env;
    alibaba_metrics metrics;
};

}  // namespace

TEST_CASE("the chain picks the first configured source, in the SDKs' order", "[alibaba][chain]") {
    using kind = chain_choice::kind;
    struct row {
        const char* name;
        std::map<std::string, std::string> vars;
        bool files = false;
        bool metadata_disabled = false;
        kind expect;
        const char* detail;
    };
    const std::map<std::string, std::string> rrsa = {{"ALIBABA_CLOUD_ROLE_ARN", role_arn},
                                                     {"ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider_arn},
                                                     {"ALIBABA_CLOUD_OIDC_TOKEN_FILE", token_file}};
    auto with = [](std::map<std::string, std::string> a, const std::map<std::string, std::string>& b) {
        a.insert(b.begin(), b.end());
        return a;
    };
    const std::map<std::string, std::string> ak = {{"ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI"},
                                                   {"ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s"}};
    const row rows[] = {
        {"nothing set: the ECS RAM role, discovered", {}, false, false, kind::ecs_ram_role, ""},
        {"ECS role name from ALIBABA_CLOUD_ECS_METADATA",
         {{"ALIBABA_CLOUD_ECS_METADATA", "node-role"}},
         false,
         false,
         kind::ecs_ram_role,
         "node-role"},
        {"environment AccessKey", ak, false, false, kind::environment, "ALIBABA_CLOUD_ACCESS_KEY_ID"},
        {"legacy ALICLOUD_ACCESS_KEY / ALICLOUD_SECRET_KEY",
         {{"ALICLOUD_ACCESS_KEY", "LTAI"}, {"ALICLOUD_SECRET_KEY", "s"}},
         false,
         false,
         kind::environment,
         "ALICLOUD_ACCESS_KEY"},
        {"legacy ALIBABACLOUD_ACCESS_KEY_ID / _SECRET",
         {{"ALIBABACLOUD_ACCESS_KEY_ID", "LTAI"}, {"ALIBABACLOUD_ACCESS_KEY_SECRET", "s"}},
         false,
         false,
         kind::environment,
         "ALIBABACLOUD_ACCESS_KEY_ID"},
        {"legacy ALICLOUD_ACCESS_KEY_ID / ALICLOUD_ACCESS_KEY_SECRET",
         {{"ALICLOUD_ACCESS_KEY_ID", "LTAI"}, {"ALICLOUD_ACCESS_KEY_SECRET", "s"}},
         false,
         false,
         kind::environment,
         "ALICLOUD_ACCESS_KEY_ID"},
        {"an id without a secret is not a source",
         {{"ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI"}},
         false,
         false,
         kind::ecs_ram_role,
         ""},
        {"an empty variable counts as unset",
         {{"ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI"}, {"ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""}},
         false,
         false,
         kind::ecs_ram_role,
         ""},
        {"AccessKey files from config", {}, true, false, kind::access_key_files, "/etc/acp/ak-id"},
        {"RRSA", rrsa, false, false, kind::rrsa, role_arn},
        {"RRSA needs all three variables",
         {{"ALIBABA_CLOUD_ROLE_ARN", role_arn}, {"ALIBABA_CLOUD_OIDC_TOKEN_FILE", token_file}},
         false,
         false,
         kind::ecs_ram_role,
         ""},
        {"environment AccessKey before RRSA", with(ak, rrsa), false, false, kind::environment,
         "ALIBABA_CLOUD_ACCESS_KEY_ID"},
        {"AccessKey files before RRSA", rrsa, true, false, kind::access_key_files, "/etc/acp/ak-id"},
        {"environment before files", ak, true, false, kind::environment, "ALIBABA_CLOUD_ACCESS_KEY_ID"},
        {"ECS metadata disabled in config", {}, false, true, kind::none, "the ECS RAM role is disabled"},
        {"ECS metadata disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED",
         {{"ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"}},
         false,
         false,
         kind::none,
         "the ECS RAM role is disabled"},
        {"RRSA still wins when metadata is disabled", rrsa, false, true, kind::rrsa, role_arn},
    };
    for (const auto& r : rows) {
        SECTION(r.name) {
            fake_env env;
            env.vars = r.vars;
            acp::config::config cfg;
            if (r.files) {
                cfg.alibaba.access_key_id_file = "/etc/acp/ak-id";
                cfg.alibaba.access_key_secret_file = "/etc/acp/ak-secret";
            }
            cfg.alibaba.ecs_metadata_disabled = r.metadata_disabled;
            const auto c = choose_base_source(cfg, env.env());
            CHECK(to_string(c.source) == to_string(r.expect));
            CHECK(c.detail == r.detail);
        }
    }
}

TEST_CASE("environment AccessKey: preferred names first, optional STS token, legacy token names", "[alibaba][chain]") {
    fake_env env;
    env.vars = {{"ALICLOUD_ACCESS_KEY", "LTAI-legacy"},
                {"ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-new"},
                {"ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret-new"},
                {"ALICLOUD_ACCESS_KEY_STS_TOKEN", "token-legacy"}};
    const auto ak = access_key_from_env(env.env());
    REQUIRE(ak);
    CHECK(ak->access_key_id == "LTAI-new");
    CHECK(ak->access_key_secret.reveal() == "secret-new");
    CHECK(ak->security_token.reveal() == "token-legacy");
    env.vars["ALIBABA_CLOUD_SECURITY_TOKEN"] = "token-new";
    CHECK(access_key_from_env(env.env())->security_token.reveal() == "token-new");
    env.vars["ALIBABACLOUD_SECURITY_TOKEN"] = "x";
    env.vars["ALICLOUD_SECURITY_TOKEN"] = "y";
    CHECK(access_key_from_env(env.env())->security_token.reveal() == "token-new");
}

TEST_CASE("environment AccessKey alone signs OpenAPI calls; identity names the variable, not the key",
          "[alibaba][chain]") {
    chain_fixture f;
    f.env.vars = {{"ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tEnvExample"},
                  {"ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret"}};
    auto p = make_base_provider(f.ctx(), choose_base_source(f.cfg, f.env.env()), nullptr);
    REQUIRE(p.ok());
    const auto c = p.value()->get(30min);
    REQUIRE(c.ok());
    CHECK(c->access_key_id == "LTAI5tEnvExample");
    CHECK_FALSE(c->is_sts());
    CHECK_FALSE(c->expiration);
    CHECK(p.value()->identity() == "environment AccessKey (ALIBABA_CLOUD_ACCESS_KEY_ID)");
}

TEST_CASE("AccessKey files are re-read on every use", "[alibaba][chain]") {
    chain_fixture f;
    f.cfg.alibaba.access_key_id_file = "/etc/acp/ak-id";
    f.cfg.alibaba.access_key_secret_file = "/etc/acp/ak-secret";
    f.env.files = {{"/etc/acp/ak-id", "LTAI-one\n"}, {"/etc/acp/ak-secret", "secret-one\n"}};
    auto p = make_base_provider(f.ctx(), choose_base_source(f.cfg, f.env.env()), nullptr);
    REQUIRE(p.ok());
    CHECK(p.value()->get(0s)->access_key_id == "LTAI-one");
    f.env.files["/etc/acp/ak-id"] = "LTAI-two";
    f.env.files["/etc/acp/ak-secret"] = "secret-two";
    const auto c = p.value()->get(0s);
    CHECK(c->access_key_id == "LTAI-two");
    CHECK(c->access_key_secret.reveal() == "secret-two");
    f.env.files.erase("/etc/acp/ak-secret");
    const auto gone = p.value()->get(0s);
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().message.find("/etc/acp/ak-secret") != std::string::npos);
}

TEST_CASE("ECS RAM role alone, cached until it nears expiry", "[alibaba][chain]") {
    chain_fixture f;
    f.fake.configure({{"imds", {{"cred_lifetime_s", 3600}, {"rotate_before_s", 1800}}}});
    auto& gauges = f.metrics.add_source("ecs_ram_role");
    auto p = make_base_provider(f.ctx(), choose_base_source(f.cfg, f.env.env()), f.imds(), &gauges);
    REQUIRE(p.ok());
    const auto first = p.value()->get(20min);
    REQUIRE(first.ok());
    CHECK(first->source == "ecs_ram_role/acr-node-role");
    CHECK(gauges.expires_at_ms == to_epoch_ms(t0() + 1h));
    f.advance(30min);
    CHECK(p.value()->get(20min)->access_key_id == first->access_key_id);  // 30 min left: cached
    CHECK(f.fake.count("imds", "credentials") == 1);
    f.advance(11min);  // 19 min left < 20 min: ask IMDS again, which has rotated meanwhile
    const auto second = p.value()->get(20min);
    REQUIRE(second.ok());
    CHECK(second->access_key_id != first->access_key_id);
    CHECK(f.fake.count("imds", "credentials") == 2);
}

TEST_CASE("RRSA alone re-reads the projected token file for every exchange", "[alibaba][chain]") {
    chain_fixture f;
    f.env.vars = {{"ALIBABA_CLOUD_ROLE_ARN", role_arn},
                  {"ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider_arn},
                  {"ALIBABA_CLOUD_OIDC_TOKEN_FILE", token_file}};
    f.env.files[token_file] = "eyJ-first-projected-token\n";
    f.fake.configure({{"sts", {{"oidc_provider_arns", {provider_arn}}}}});
    auto p = make_base_provider(f.ctx(), choose_base_source(f.cfg, f.env.env()), nullptr);
    REQUIRE(p.ok());
    CHECK(p.value()->identity() == std::string("RRSA role ") + role_arn);
    const auto first = p.value()->get(20min);
    REQUIRE(first.ok());
    CHECK(first->source == std::string("rrsa/") + role_arn);

    f.env.files[token_file] = "eyJ-rotated-projected-token";              // kubelet rotated it
    CHECK(p.value()->get(20min)->access_key_id == first->access_key_id);  // cached: no exchange
    p.value()->invalidate();
    REQUIRE(p.value()->get(20min).ok());

    const auto seen = f.fake.requests("sts", "AssumeRoleWithOIDC", 200);
    REQUIRE(seen.size() == 2);
    CHECK(seen[0]["oidc_token_sha256"] == sha256_hex("eyJ-first-projected-token"));
    CHECK(seen[1]["oidc_token_sha256"] == sha256_hex("eyJ-rotated-projected-token"));
    CHECK(seen[0]["session"] == "acr-credential-proxy");
    CHECK(seen[0]["duration"] == 3600);

    f.env.files.erase(token_file);
    p.value()->invalidate();
    const auto gone = p.value()->get(20min);
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().code == "OIDCTokenFileUnreadable");
}

TEST_CASE("cross-account AssumeRole on top of the ECS role", "[alibaba][chain]") {
    chain_fixture f;
    auto base = make_base_provider(f.ctx(), choose_base_source(f.cfg, f.env.env()), f.imds());
    REQUIRE(base.ok());
    assume_role_params params;
    params.role_arn = cross_role;
    params.role_session_name = "acr-credential-proxy";
    params.duration = 3600s;
    auto p = make_assume_role_provider(f.ctx(), base.value(), params);
    CHECK(p->identity() == std::string("role ") + cross_role + " assumed by ECS RAM role (instance metadata)");
    const auto c = p->get(20min);
    REQUIRE(c.ok());
    CHECK(c->source == std::string("assume_role/") + cross_role + " via ecs_ram_role/acr-node-role");
    const auto seen = f.fake.requests("sts", "AssumeRole", 200);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0]["source_principal"] == "ecs-role:acr-node-role");
    CHECK(seen[0]["role_arn"] == cross_role);
}

TEST_CASE("cross-account AssumeRole on top of RRSA", "[alibaba][chain]") {
    chain_fixture f;
    f.env.vars = {{"ALIBABA_CLOUD_ROLE_ARN", role_arn},
                  {"ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider_arn},
                  {"ALIBABA_CLOUD_OIDC_TOKEN_FILE", token_file}};
    f.env.files[token_file] = "eyJ-projected-token";
    auto base = make_base_provider(f.ctx(), choose_base_source(f.cfg, f.env.env()), nullptr);
    REQUIRE(base.ok());
    assume_role_params params;
    params.role_arn = cross_role;
    params.role_session_name = "acr-credential-proxy";
    auto p = make_assume_role_provider(f.ctx(), base.value(), params);
    REQUIRE(p->get(20min).ok());
    const auto seen = f.fake.requests("sts", "AssumeRole", 200);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0]["source_principal"] == std::string("oidc-role:") + role_arn);
    CHECK(f.fake.count("sts", "AssumeRoleWithOIDC", 200) == 1);
}

TEST_CASE("AssumeRole refetches a source credential the service rejected, once", "[alibaba][chain]") {
    chain_fixture f;
    f.fake.configure({{"imds", {{"cred_lifetime_s", 600}, {"rotate_before_s", 60}}}});
    auto base = make_base_provider(f.ctx(), choose_base_source(f.cfg, f.env.env()), f.imds());
    REQUIRE(base.ok());
    REQUIRE(base.value()->get(1min).ok());
    // The fake's clock runs ahead of ours (within the 15 min signature window):
    // the cached ECS credential looks valid to us but STS finds it expired.
    f.fake.set_now(t0() + 601s);
    assume_role_params params;
    params.role_arn = cross_role;
    params.role_session_name = "acr-credential-proxy";
    auto p = make_assume_role_provider(f.ctx(), base.value(), params);
    const auto c = p->get(1min);
    REQUIRE(c.ok());
    const auto rejected = f.fake.requests("sts", "AssumeRole", 400);
    REQUIRE(rejected.size() == 1);
    CHECK(rejected[0]["code"] == "InvalidSecurityToken.Expired");
    CHECK(f.fake.count("sts", "AssumeRole", 200) == 1);
    CHECK(f.fake.count("imds", "credentials") == 2);
}

TEST_CASE("no configured source is one clear error", "[alibaba][chain]") {
    chain_fixture f;
    f.cfg.alibaba.ecs_metadata_disabled = true;
    const auto p = make_base_provider(f.ctx(), choose_base_source(f.cfg, f.env.env()), f.imds());
    REQUIRE_FALSE(p.ok());
    CHECK(p.error().code == "NoCredentials");
    CHECK(p.error().message.find("ALIBABA_CLOUD_ACCESS_KEY_ID") != std::string::npos);
    CHECK(p.error().message.find("RRSA") != std::string::npos);
}
