#include "tokens/imds_client.hpp"

#include "tests/support/fake_alibaba.hpp"
#include "tokens/signing_primitives.hpp"

#include <catch2/catch.hpp>

using namespace acp::tokens;
using acp::test::fake_alibaba;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

time_point t0() {
    return *parse_iso8601_utc("2025-03-04T05:06:07Z");
}

struct imds_fixture {
    explicit imds_fixture(const nlohmann::json& knobs = nlohmann::json::object()) : fake(knobs), clock(t0()) {
        fake.set_now(t0());
        opts.endpoint = fake.imds_url();
    }
    fake_alibaba fake;
    manual_clock clock;
    std::unique_ptr<http_client> http = make_curl_http_client();
    imds_options opts;
};

}  // namespace

TEST_CASE("IMDS: v2 token first, then role discovery, credentials and region", "[alibaba][imds]") {
    imds_fixture f;
    alibaba_metrics metrics;
    imds_client imds(*f.http, f.clock, f.opts, &metrics);

    const auto creds = imds.role_credentials();
    REQUIRE(creds.ok());
    CHECK(creds->access_key_id.rfind("STS.", 0) == 0);
    CHECK_FALSE(creds->access_key_secret.empty());
    CHECK(creds->is_sts());
    REQUIRE(creds->expiration);
    CHECK(*creds->expiration == t0() + 6h);
    CHECK(creds->source == "ecs_ram_role/acr-node-role");
    CHECK(imds.used_token());

    const auto region = imds.region_id();
    REQUIRE(region.ok());
    CHECK(region.value() == "cn-hangzhou");

    // One token PUT (TTL 21600 s, as credentials-go asks) served every read.
    const auto puts = f.fake.requests("imds", "token", 200);
    REQUIRE(puts.size() == 1);
    CHECK(puts[0]["ttl"] == 21600);
    for (const auto& r : f.fake.requests()) {
        if (r["method"] == "GET") {
            CHECK(r["token"] == true);
        }
    }
    CHECK(f.fake.count("imds", "role-name") == 1);
    CHECK(metrics.api[static_cast<std::size_t>(alibaba_api::imds_token)].success == 1);
    CHECK(metrics.api[static_cast<std::size_t>(alibaba_api::imds_metadata)].success == 3);
}

TEST_CASE("IMDS: hardened (token-only) mode works", "[alibaba][imds]") {
    imds_fixture f(json{{"imds", {{"mode", "required"}}}});
    imds_client imds(*f.http, f.clock, f.opts);
    REQUIRE(imds.role_credentials().ok());
    CHECK(f.fake.count("imds", "credentials", 200) == 1);
    CHECK(f.fake.count("imds", "credentials", 403) == 0);
}

TEST_CASE("IMDS: falls back to v1 when the token PUT is unsupported", "[alibaba][imds]") {
    imds_fixture f(json{{"imds", {{"mode", "v1only"}}}});
    imds_client imds(*f.http, f.clock, f.opts);
    const auto creds = imds.role_credentials();
    REQUIRE(creds.ok());
    CHECK_FALSE(imds.used_token());
    CHECK(f.fake.count("imds", "token", 404) >= 1);
}

TEST_CASE("IMDS: with IMDSv1 disabled a failed token PUT is an error, not a v1 read", "[alibaba][imds]") {
    imds_fixture f(json{{"imds", {{"mode", "v1only"}}}});
    f.opts.imdsv1_disabled = true;
    imds_client imds(*f.http, f.clock, f.opts);
    const auto creds = imds.role_credentials();
    REQUIRE_FALSE(creds.ok());
    CHECK(creds.error().message.find("IMDSv1 fallback is disabled") != std::string::npos);
    CHECK(f.fake.count("imds", "role-name") == 0);
}

TEST_CASE("IMDS: token TTL is clamped to 1..21600 s; without a token a hardened server refuses", "[alibaba][imds]") {
    imds_fixture f(json{{"imds", {{"mode", "required"}}}});
    f.opts.token_ttl = 0s;  // the server answers 400 to 0: the client asks for 1 s instead
    imds_client clamped(*f.http, f.clock, f.opts);
    CHECK(clamped.region_id().ok());
    CHECK(f.fake.requests("imds", "token", 200).at(0)["ttl"] == 1);

    f.opts.imdsv2_disabled = true;  // ALIBABA_CLOUD_IMDSV2_DISABLED: never asks for a token
    imds_client v1(*f.http, f.clock, f.opts);
    const auto r = v1.region_id();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().http_status == 403);
}

TEST_CASE("IMDS: the token is reused until 80% of its TTL, then renewed", "[alibaba][imds]") {
    imds_fixture f;
    f.opts.token_ttl = 100s;
    imds_client imds(*f.http, f.clock, f.opts);
    REQUIRE(imds.region_id().ok());
    f.clock.advance(79s);
    f.fake.set_now(f.clock.now());
    REQUIRE(imds.region_id().ok());
    CHECK(f.fake.count("imds", "token") == 1);
    f.clock.advance(2s);
    f.fake.set_now(f.clock.now());
    REQUIRE(imds.region_id().ok());
    CHECK(f.fake.count("imds", "token") == 2);
}

TEST_CASE("IMDS: a token the server forgot is replaced once, transparently", "[alibaba][imds]") {
    imds_fixture f(json{{"imds", {{"mode", "required"}}}});
    imds_client imds(*f.http, f.clock, f.opts);
    REQUIRE(imds.region_id().ok());
    f.fake.expire_imds_tokens();
    REQUIRE(imds.region_id().ok());
    CHECK(f.fake.count("imds", "region-id", 401) == 1);
    CHECK(f.fake.count("imds", "token", 200) == 2);
}

TEST_CASE("IMDS: configured role name skips discovery; no role attached is a clear error", "[alibaba][imds]") {
    {
        imds_fixture f;
        f.opts.role_name = "acr-node-role";
        imds_client imds(*f.http, f.clock, f.opts);
        REQUIRE(imds.role_credentials().ok());
        CHECK(f.fake.count("imds", "role-name") == 0);
    }
    {
        imds_fixture f(json{{"imds", {{"role", nullptr}}}});
        imds_client imds(*f.http, f.clock, f.opts);
        const auto r = imds.role_credentials();
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().message == "no RAM role is attached to this ECS instance");
    }
}

TEST_CASE("IMDS: the role credential is rotated by the server, not by us", "[alibaba][imds]") {
    imds_fixture f(json{{"imds", {{"cred_lifetime_s", 3600}, {"rotate_before_s", 600}}}});
    imds_client imds(*f.http, f.clock, f.opts);
    const auto first = imds.role_credentials();
    REQUIRE(first.ok());
    f.clock.advance(40min);
    f.fake.set_now(f.clock.now());
    const auto same = imds.role_credentials();
    REQUIRE(same.ok());
    CHECK(same->access_key_id == first->access_key_id);
    f.clock.advance(11min);
    f.fake.set_now(f.clock.now());
    const auto rotated = imds.role_credentials();
    REQUIRE(rotated.ok());
    CHECK(rotated->access_key_id != first->access_key_id);
}

TEST_CASE("IMDS: unreachable metadata is a transport error naming the endpoint", "[alibaba][imds]") {
    manual_clock clock(t0());
    auto http = make_curl_http_client();
    imds_options opts;
    opts.endpoint = "http://127.0.0.1:1";  // nothing listens on port 1
    imds_client imds(*http, clock, opts);
    const auto r = imds.region_id();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == "Transport");
    CHECK(r.error().endpoint == "http://127.0.0.1:1");
}

TEST_CASE("IMDS: a region-id answer that is not a region id never reaches an endpoint host name", "[alibaba][imds]") {
    for (const char* bad : {"cn-hangzhou.evil.example", "cn-hangzhou/../x", "CN-HANGZHOU", "cn hangzhou", "-cn"}) {
        CAPTURE(bad);
        imds_fixture f(nlohmann::json{{"region", bad}});
        imds_client imds(*f.http, f.clock, f.opts);
        const auto r = imds.region_id();
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == "InvalidAnswer");
        CHECK(r.error().message.find(bad) == std::string::npos);  // the answer itself is not echoed
    }
}
