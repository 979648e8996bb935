#include "tokens/acr_password_store.hpp"

#include "config/logging.hpp"
#include "tests/support/fake_alibaba.hpp"
#include "tokens/signing_primitives.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <thread>

using namespace acp::tokens;
using acp::test::eventually;
using acp::test::fake_alibaba;
using json = nlohmann::json;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

constexpr const char* instance_id = "cri-kmsiwlxxdcvabcde";
constexpr const char* host = "demo-registry.cn-hangzhou.cr.aliyuncs.com";
constexpr const char* cross_role = "acs:ram::6543210987654321:role/cross-account-puller";

time_point t0() {
    return *parse_iso8601_utc("2025-03-04T05:06:07Z");
}

json endpoint(const char* type, bool enable, std::vector<std::pair<const char*, const char*>> domains) {
    json d = json::array();
    for (const auto& [name, kind] : domains) {
        d.push_back({{"Domain", name}, {"Type", kind}});
    }
    return {{"EndpointType", type}, {"Enable", enable}, {"Domains", d}};
}

json default_knobs() {
    return {{"acr",
             {{"instances",
               {{instance_id,
                 {{"endpoints",
                   {endpoint("internet", true, {{host, "SYSTEM"}, {"registry.example.com", "USER"}}),
                    endpoint("vpc", true, {{"demo-registry-vpc.cn-hangzhou.cr.aliyuncs.com", "SYSTEM"}}),
                    endpoint("vpc", false, {{"demo-disabled.cn-hangzhou.cr.aliyuncs.com", "SYSTEM"}})}}}}}}}}};
}

/// A store wired to the fakes, on a manual clock kept in step with the fake's.
struct store_fixture {
    explicit store_fixture(const json& knobs = json::object()) : fake(default_knobs()) {
        fake.configure(knobs);
        fake.set_now(t0());
        cfg.alibaba.imds_endpoint = fake.imds_url();
        cfg.alibaba.sts_endpoint = fake.sts_url();
        cfg.alibaba.acr_endpoint = fake.acr_url();
        cfg.alibaba.refresh_backoff_initial = 1s;
        cfg.alibaba.refresh_backoff_max = 4s;
        cfg.alibaba.first_credential_wait = 10s;
        acp::config::acr_instance inst;
        inst.instance_id = instance_id;
        inst.region_id = "cn-hangzhou";
        inst.domains = {host};
        cfg.acr_instances = {inst};
    }

    acr_password_store& build() {
        acr_password_store_options o;
        o.cfg = std::make_shared<const acp::config::config>(cfg);
        o.env = {[this](const std::string& n) -> std::optional<std::string> {
                     const auto it = vars.find(n);
                     return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
                 },
                 [this](const std::string& p) -> std::optional<std::string> {
                     const auto it = files.find(p);
                     return it == files.end() ? std::nullopt : std::optional<std::string>(it->second);
                 }};
        o.clock = clock;
        o.random01 = [] {
            return 0.0;
        };  // no jitter: refresh times are exact
        store = std::make_unique<acr_password_store>(std::move(o));
        return *store;
    }
    acr_password_store& start() {
        if (!store) {
            build();
        }
        store->start();
        return *store;
    }
    void advance(wall_clock::duration d) {
        fake.set_now(clock->now() + d);  // the fake first, so the store never sees the past
        clock->advance(d);
    }
    const instance_counters& counters(std::size_t i = 0) const { return store->metrics().instances()[i]; }
    bool state_is(std::string_view h, credential_state s) const { return store->find(h).state == s; }

    fake_alibaba fake;
    std::shared_ptr<manual_clock> clock = std::make_shared<manual_clock>(t0());
    acp::config::config cfg;
    std::map<std::string, std::string> vars;
    std::map<std::string, std::string> files;
    std::unique_ptr<acr_password_store> store;
};

double metric(const std::vector<metric_sample>& samples, std::string_view name,
              std::vector<std::pair<std::string, std::string>> labels) {
    for (const auto& s : samples) {
        if (s.name == name && s.labels == labels) {
            return s.value;
        }
    }
    FAIL("metric " << name << " not found");
    return 0;
}

}  // namespace

TEST_CASE("refresh schedule and backoff are pure and bounded", "[alibaba][store]") {
    const auto t = t0();
    CHECK(compute_refresh_at(t, t + 1h, 15min, 0.0) == t + 45min);
    CHECK(compute_refresh_at(t, t + 1h, 15min, 1.0) == t + 45min - 90s);  // jitter ≤ threshold / 10
    CHECK(compute_refresh_at(t, t + 20s, 10s, 0.0) == t + 10s);
    CHECK(compute_refresh_at(t, t + 8s, 10s, 0.0) == t + 2s);  // life < threshold: a quarter of it, no busy loop
    CHECK(backoff_delay(1, 1s, 300s, 1.0) == 1s);
    CHECK(backoff_delay(2, 1s, 300s, 1.0) == 2s);
    CHECK(backoff_delay(5, 1s, 300s, 1.0) == 16s);
    CHECK(backoff_delay(30, 1s, 300s, 1.0) == 300s);  // capped at 5 min
    CHECK(backoff_delay(30, 1s, 300s, 0.0) == 150s);  // jitter: half to full delay
}

TEST_CASE("EE instance through the ECS RAM role: one password, Basic credentials, ready", "[alibaba][store]") {
    store_fixture f;
    auto& store = f.build();
    CHECK(store.find(host).state == credential_state::pending);
    CHECK_FALSE(store.ready());
    store.start();
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));

    const auto a = store.find("Demo-Registry.cn-hangzhou.cr.aliyuncs.com:443");  // case and :443 ignored
    REQUIRE(a.state == credential_state::ready);
    CHECK(a.instance == instance_id);
    CHECK(a.credential->username == "cr_temp_user");
    CHECK(a.credential->expires_at == t0() + 1h);
    CHECK(a.credential->authorization() == "Basic " + to_base64("cr_temp_user:" + a.credential->password.reveal()));
    CHECK(store.ready());
    CHECK(store.find("other.example.com").state == credential_state::unknown_host);

    const auto st = store.status();
    REQUIRE(st.size() == 1);
    CHECK(st[0].ready);
    CHECK(st[0].identity == "ECS RAM role (instance metadata)");
    CHECK(st[0].domains == std::vector<std::string>{host});
    CHECK(store.domains() == std::vector<std::string>{host});

    const auto gat = f.fake.requests("acr", "GetAuthorizationToken", 200);
    REQUIRE(gat.size() == 1);
    CHECK(gat[0]["principal"] == "ecs-role:acr-node-role");
    CHECK(f.counters().refresh_success == 1);
    CHECK(f.counters().ready);

    const auto samples = store.collect_metrics();
    CHECK(metric(samples, "acp_acr_password_expiry_seconds", {{"instance", instance_id}}) == 3600.0);
    CHECK(metric(samples, "acp_acr_password_age_seconds", {{"instance", instance_id}}) == 0.0);
    CHECK(metric(samples, "acp_cloud_credential_expiry_seconds", {{"source", "ecs_ram_role"}}) == 21600.0);
    CHECK(metric(samples, "acp_acr_password_refresh_total", {{"instance", instance_id}, {"outcome", "success"}}) ==
          1.0);
    CHECK(metric(samples, "acp_alibaba_api_requests_total",
                 {{"api", "cr_GetAuthorizationToken"}, {"outcome", "success"}}) == 1.0);
    CHECK(metric(samples, "acp_acr_instance_ready", {{"instance", instance_id}}) == 1.0);
}

TEST_CASE("cold start: 50 concurrent requests wait for one GetAuthorizationToken", "[alibaba][store]") {
    store_fixture f(json{{"delay_ms", {{"acr", 300}}}});
    auto& store = f.start();
    REQUIRE(store.find(host).state == credential_state::pending);
    asio::io_context ioc;
    std::vector<std::future<credential_answer>> results;
    for (int i = 0; i < 50; ++i) {
        results.push_back(asio::co_spawn(
            ioc,
            [&store]() -> asio::awaitable<credential_answer> {
                co_return co_await store.async_get(host, asio::use_awaitable);
            },
            asio::use_future));
    }
    ioc.run();  // returns once every waiter's handler has run on this thread
    for (auto& r : results) {
        const auto a = r.get();
        CHECK(a.state == credential_state::ready);
    }
    CHECK(f.fake.count("acr", "GetAuthorizationToken") == 1);
}

TEST_CASE("a waiting request gives up after first_credential_wait with the reason", "[alibaba][store]") {
    store_fixture f(json{{"delay_ms", {{"acr", 2000}}}});
    f.cfg.alibaba.first_credential_wait = 200ms;
    f.cfg.alibaba.api_timeout = 1s;
    auto& store = f.start();
    asio::io_context ioc;
    std::optional<credential_answer> got;
    const auto started = std::chrono::steady_clock::now();
    store.async_get(host, asio::bind_executor(ioc, [&](credential_answer a) { got = std::move(a); }));
    ioc.run();
    const auto waited = std::chrono::steady_clock::now() - started;
    REQUIRE(got);
    CHECK(got->state == credential_state::unavailable);
    CHECK(got->reason == std::string("timed out after 200 ms waiting: the first temporary password for ") +
                             instance_id + " is being fetched");
    CHECK(waited >= 200ms);
    CHECK(waited < 1500ms);
}

TEST_CASE("a cancelled wait completes at once with `cancelled`", "[alibaba][store]") {
    store_fixture f(json{{"delay_ms", {{"acr", 2000}}}});
    f.cfg.alibaba.api_timeout = 1s;
    auto& store = f.start();
    asio::io_context ioc;
    asio::cancellation_signal cancel;
    std::optional<credential_answer> got;
    store.async_get(
        host, asio::bind_cancellation_slot(cancel.slot(),
                                           asio::bind_executor(ioc, [&](credential_answer a) { got = std::move(a); })));
    asio::post(ioc, [&] { cancel.emit(asio::cancellation_type::terminal); });
    const auto started = std::chrono::steady_clock::now();
    ioc.run();
    REQUIRE(got);
    CHECK(got->state == credential_state::cancelled);
    CHECK(std::chrono::steady_clock::now() - started < 500ms);
}

TEST_CASE("answers that are not pending complete without waiting", "[alibaba][store]") {
    store_fixture f;
    auto& store = f.start();
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
    asio::io_context ioc;
    std::vector<credential_answer> got;
    store.async_get(host, asio::bind_executor(ioc, [&](credential_answer a) { got.push_back(std::move(a)); }));
    store.async_get("not-acr.example.com", asio::bind_executor(ioc, [&](credential_answer a) { got.push_back(a); }));
    CHECK(got.empty());  // never inline: posted to the handler's executor
    ioc.run();
    REQUIRE(got.size() == 2);
    CHECK(got[0].state == credential_state::ready);
    CHECK(got[1].state == credential_state::unknown_host);
}

TEST_CASE("refresh ahead of expiry: 20 s passwords, 10 s threshold, 60 s of pulls", "[alibaba][store]") {
    store_fixture f(json{{"acr", {{"password_lifetime_s", 20}}}});
    f.cfg.expiring_threshold = 10s;
    auto& store = f.start();
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
    int failed_lookups = 0;
    for (int second = 1; second <= 60; ++second) {
        f.advance(1s);
        // Refreshes are due at 10, 20, ... 60 s (expiry − threshold, no jitter).
        const std::uint64_t expected = 1 + static_cast<std::uint64_t>(second / 10);
        REQUIRE(eventually([&] { return f.counters().refresh_success.load() == expected; }));
        const auto a = store.find(host);
        if (a.state != credential_state::ready || a.credential->expires_at - f.clock->now() < 10s) {
            ++failed_lookups;
        }
    }
    CHECK(failed_lookups == 0);
    CHECK(f.counters().refresh_success == 7);
    CHECK(f.counters().refresh_failure == 0);
    CHECK(f.fake.count("acr", "GetAuthorizationToken", 200) == 7);
    CHECK(store.find(host).credential->expires_at == t0() + 80s);
}

TEST_CASE("OpenAPI down past the password's life: 503 reason, not ready, then recovery", "[alibaba][store]") {
    store_fixture f(json{{"acr", {{"password_lifetime_s", 20}}}});
    f.cfg.expiring_threshold = 10s;
    auto& store = f.start();
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
    const auto first = store.find(host).credential;

    f.fake.configure({{"down", {{"acr", true}}}});
    f.advance(10s);  // the refresh is due and fails; the current password stays in use
    REQUIRE(eventually([&] { return f.counters().refresh_failure.load() >= 1; }));
    CHECK(store.find(host).state == credential_state::ready);
    CHECK(store.find(host).credential == first);
    CHECK(store.ready());

    for (int i = 0; i < 11; ++i) {
        f.advance(1s);  // retries back off (0.5, 1, 2, 2 s) and keep failing
    }
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::unavailable); }));
    const auto down = store.find(host);
    CHECK(down.credential == nullptr);
    CHECK(down.reason.find(std::string("the temporary password for ") + instance_id + " expired at " +
                           iso8601_utc(t0() + 20s) + " and could not be refreshed: ACR instance " + instance_id +
                           " (region cn-hangzhou): GetAuthorizationToken") == 0);
    CHECK(down.reason.find("HTTP 503, Code=ServiceUnavailable") != std::string::npos);
    CHECK_FALSE(store.ready());
    CHECK_FALSE(store.status()[0].ready);
    CHECK(store.status()[0].reason.find("ServiceUnavailable") != std::string::npos);
    CHECK(metric(store.collect_metrics(), "acp_acr_instance_ready", {{"instance", instance_id}}) == 0.0);

    // A request now gets the reason at once (no waiting for an instance that has tried).
    asio::io_context ioc;
    std::optional<credential_answer> got;
    store.async_get(host, asio::bind_executor(ioc, [&](credential_answer a) { got = std::move(a); }));
    ioc.run();
    REQUIRE(got);
    CHECK(got->state == credential_state::unavailable);

    const auto failures_while_down = f.counters().refresh_failure.load();
    CHECK(failures_while_down >= 5);
    f.fake.configure({{"down", {{"acr", false}}}});
    for (int i = 0; i < 4 && !f.state_is(host, credential_state::ready); ++i) {
        f.advance(1s);  // the next retry is at most refresh_backoff_max away
        eventually([&] { return f.state_is(host, credential_state::ready); }, 300ms);
    }
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
    CHECK(store.ready());
    CHECK(store.find(host).reason.empty());
    CHECK(store.status()[0].reason.empty());
}

TEST_CASE("domains discovered with ListInstanceEndpoint: enabled only, internet + vpc, SYSTEM + USER",
          "[alibaba][store]") {
    store_fixture f;
    f.cfg.acr_instances[0].domains.clear();
    f.cfg.alibaba.endpoint_relist_interval = 10min;
    auto& store = f.build();
    std::vector<std::vector<std::string>> announced;
    std::mutex announced_mu;
    store.on_domains_changed([&](const std::vector<std::string>& d) {
        std::lock_guard lk(announced_mu);
        announced.push_back(d);
    });
    CHECK(store.find(host).state == credential_state::pending);  // discovery not done: wait, don't 404
    store.start();
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
    const std::vector<std::string> expected = {"demo-registry-vpc.cn-hangzhou.cr.aliyuncs.com", host,
                                               "registry.example.com"};
    CHECK(store.domains() == expected);
    CHECK(store.find("registry.example.com").state == credential_state::ready);
    CHECK(store.find("demo-disabled.cn-hangzhou.cr.aliyuncs.com").state == credential_state::unknown_host);
    {
        std::lock_guard lk(announced_mu);
        REQUIRE(announced.size() == 1);
        CHECK(announced[0] == expected);
    }
    CHECK(f.fake.requests("acr", "ListInstanceEndpoint", 200).at(0)["module"] == "Registry");

    // Re-listed periodically: a new custom domain joins.
    json endpoints = default_knobs()["acr"]["instances"][instance_id]["endpoints"];
    endpoints[0]["Domains"].push_back({{"Domain", "new.example.com"}, {"Type", "USER"}});
    f.fake.configure({{"acr", {{"instances", {{instance_id, {{"endpoints", endpoints}}}}}}}});
    f.advance(10min);
    REQUIRE(eventually([&] { return f.state_is("new.example.com", credential_state::ready); }));
    std::lock_guard lk(announced_mu);
    CHECK(announced.size() == 2);
    CHECK(f.counters().discovery_success == 2);
}

TEST_CASE("Personal Edition: region and domains from metadata; USER_NOT_EXIST tells what to do", "[alibaba][store]") {
    store_fixture f(json{{"region", "cn-beijing"}, {"acr", {{"personal_user_exists", false}}}});
    acp::config::acr_instance personal;  // instanceId empty → Personal; no regionId → the node's
    f.cfg.acr_instances = {personal};
    auto& store = f.start();
    const std::string personal_host = "registry-vpc.cn-beijing.aliyuncs.com";
    REQUIRE(eventually([&] { return f.state_is(personal_host, credential_state::unavailable); }));
    const auto a = store.find(personal_host);
    CHECK(a.instance == "personal/0");
    CHECK(a.reason.find("ACR Personal Edition (region cn-beijing): GetAuthorizationToken") == 0);
    CHECK(a.reason.find("Code=USER_NOT_EXIST") != std::string::npos);
    CHECK(a.reason.find("Container Registry console") != std::string::npos);
    CHECK(store.domains().size() == 4);
    CHECK(store.status()[0].region == "cn-beijing");

    f.fake.configure({{"acr", {{"personal_user_exists", true}}}});
    CHECK(store.request_refresh(personal_host));
    REQUIRE(eventually([&] { return f.state_is(personal_host, credential_state::ready); }));
    CHECK(f.fake.count("acr", "GetAuthorizationToken(personal)", 200) == 1);
    CHECK(f.fake.count("imds", "region-id") == 1);
}

TEST_CASE("IsSuccess=false makes the instance unavailable with the service's Code", "[alibaba][store]") {
    store_fixture f(json{{"acr", {{"is_success_false", true}}}});
    auto& store = f.start();
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::unavailable); }));
    const auto reason = store.find(host).reason;
    CHECK(reason.find(std::string("ACR instance ") + instance_id + " (region cn-hangzhou): GetAuthorizationToken at " +
                      f.fake.acr_url() + " failed: HTTP 200, Code=INTERNAL_ERROR, RequestId=") == 0);
    CHECK_FALSE(store.ready());
}

TEST_CASE("cross-account assumeRoleARN on top of the ECS role; STS refreshed before it cuts the password short",
          "[alibaba][store]") {
    store_fixture f;
    f.cfg.expiring_threshold = 5min;
    f.cfg.acr_instances[0].assume_role_arn = cross_role;
    f.cfg.acr_instances[0].expire_duration = 15min;  // DurationSeconds=900 → the password lives 15 min, not 1 h
    auto& store = f.start();
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
    CHECK(store.find(host).credential->expires_at == t0() + 15min);
    CHECK(store.status()[0].identity ==
          std::string("role ") + cross_role + " assumed by ECS RAM role (instance metadata)");
    const auto assumed = f.fake.requests("sts", "AssumeRole", 200);
    REQUIRE(assumed.size() == 1);
    CHECK(assumed[0]["source_principal"] == "ecs-role:acr-node-role");
    CHECK(assumed[0]["duration"] == 900);
    CHECK(f.fake.requests("acr", "GetAuthorizationToken", 200).at(0)["principal"] ==
          std::string("assumed-role:") + cross_role);

    f.advance(10min);  // refresh due; the STS credential has 5 min left (< 2 × threshold): renew it first
    REQUIRE(eventually([&] { return f.counters().refresh_success.load() == 2; }));
    CHECK(f.fake.count("sts", "AssumeRole", 200) == 2);
    CHECK(store.find(host).credential->expires_at == t0() + 25min);
    CHECK(metric(store.collect_metrics(), "acp_cloud_credential_expiry_seconds",
                 {{"source", std::string("assume_role/") + cross_role}}) == 900.0);
}

TEST_CASE("the add-on's per-instance rrsaRoleARN, with assumeRoleARN on top", "[alibaba][store]") {
    store_fixture f;
    const std::string rrsa_role = "acs:ram::1234567890123456:role/acr-rrsa";
    const std::string token_file = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token";
    f.vars = {{"ALIBABA_CLOUD_OIDC_TOKEN_FILE", token_file}};
    f.files = {{token_file, "eyJ-projected"}};
    f.cfg.acr_instances[0].rrsa_role_arn = rrsa_role;
    f.cfg.acr_instances[0].rrsa_oidc_provider_role_arn = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1";
    f.cfg.acr_instances[0].assume_role_arn = cross_role;
    f.start();
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
    const auto oidc = f.fake.requests("sts", "AssumeRoleWithOIDC", 200);
    REQUIRE(oidc.size() == 1);
    CHECK(oidc[0]["role_arn"] == rrsa_role);
    CHECK(oidc[0]["oidc_provider_arn"] == "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1");
    CHECK(f.fake.requests("sts", "AssumeRole", 200).at(0)["source_principal"] == "oidc-role:" + rrsa_role);
    CHECK(f.fake.count("imds", "credentials") == 0);  // the node role is not used for this instance
}

TEST_CASE("no credential source: unavailable at once with the reason", "[alibaba][store]") {
    store_fixture f;
    f.cfg.alibaba.ecs_metadata_disabled = true;
    auto& store = f.start();
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::unavailable); }));
    CHECK(store.find(host).reason.find("no Alibaba Cloud credential source is configured") != std::string::npos);
    CHECK_FALSE(store.ready());
}

TEST_CASE("no instances: ready, nothing fetched", "[alibaba][store]") {
    store_fixture f;
    f.cfg.acr_instances.clear();
    auto& store = f.start();
    CHECK(store.ready());
    CHECK(store.domains().empty());
    CHECK(store.find(host).state == credential_state::unknown_host);
    store.stop();
    CHECK(f.fake.requests().empty());
}

TEST_CASE("real clock: 2 s passwords with a 1 s threshold are refreshed ahead, never lapsing", "[alibaba][store]") {
    // The system clock on both sides: the fake's clock is never frozen here.
    fake_alibaba live(default_knobs());
    live.configure({{"acr", {{"password_lifetime_s", 2}}}});
    acp::config::config cfg;
    cfg.alibaba.imds_endpoint = live.imds_url();
    cfg.alibaba.sts_endpoint = live.sts_url();
    cfg.alibaba.acr_endpoint = live.acr_url();
    cfg.expiring_threshold = 1s;
    acp::config::acr_instance inst;
    inst.instance_id = instance_id;
    inst.region_id = "cn-hangzhou";
    inst.domains = {host};
    cfg.acr_instances = {inst};
    acr_password_store_options o;
    o.cfg = std::make_shared<const acp::config::config>(cfg);
    o.env = {[](const std::string&) -> std::optional<std::string> { return std::nullopt; }, {}};
    o.random01 = [] {
        return 0.0;
    };
    acr_password_store store(std::move(o));
    store.start();
    REQUIRE(eventually([&] { return store.find(host).state == credential_state::ready; }));
    const auto until = std::chrono::steady_clock::now() + 2500ms;
    int lapses = 0;
    while (std::chrono::steady_clock::now() < until) {
        if (store.find(host).state != credential_state::ready) {
            ++lapses;
        }
        std::this_thread::sleep_for(10ms);  // sampling, not synchronisation
    }
    CHECK(lapses == 0);
    CHECK(store.metrics().instances()[0].refresh_success >= 3);
    CHECK(store.metrics().instances()[0].refresh_failure == 0);
}

TEST_CASE("secrets never reach the log, even when a service echoes them", "[alibaba][store]") {
    auto logger = acp::logging::logger("tokens");
    std::ostringstream captured;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
    logger->sinks().push_back(sink);
    struct unhook {
        std::shared_ptr<spdlog::logger> l;
        std::shared_ptr<spdlog::sinks::sink> s;
        ~unhook() {
            auto& v = l->sinks();
            v.erase(std::remove(v.begin(), v.end(), s), v.end());
        }
    } guard{logger, sink};

    std::string password;
    {
        store_fixture f;  // success path: the password is logged only as its length
        auto& store = f.start();
        REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
        password = store.find(host).credential->password.reveal();
    }
    const std::string env_secret = "env-secret-that-is-wrong";
    const std::string env_token = "CAIS-env-security-token-42";
    {
        // An environment STS triple with a wrong secret, assuming a role: STS answers
        // SignatureDoesNotMatch and echoes its string to sign, SecurityToken included.
        store_fixture f(json{{"static_keys", {{"LTAI5tEnvExample", "the-real-secret"}}}});
        f.vars = {{"ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tEnvExample"},
                  {"ALIBABA_CLOUD_ACCESS_KEY_SECRET", env_secret},
                  {"ALIBABA_CLOUD_SECURITY_TOKEN", env_token}};
        f.cfg.acr_instances[0].assume_role_arn = cross_role;
        auto& store = f.start();
        REQUIRE(eventually([&] { return f.state_is(host, credential_state::unavailable); }));
        const auto reason = store.find(host).reason;
        CHECK(reason.find("SignatureDoesNotMatch") != std::string::npos);
        CHECK(reason.find(env_token) == std::string::npos);
        CHECK(reason.find(percent_encode(env_token)) == std::string::npos);
    }
    logger->flush();
    const auto text = captured.str();
    CHECK(text.find("temporary password refreshed") != std::string::npos);
    CHECK(text.find("SignatureDoesNotMatch") != std::string::npos);
    CHECK(text.find(password) == std::string::npos);
    CHECK(text.find(env_secret) == std::string::npos);
    CHECK(text.find(env_token) == std::string::npos);
    CHECK(text.find(percent_encode(env_token)) == std::string::npos);
}

TEST_CASE("a password that arrives already expired is a failure with backoff, not a busy loop", "[alibaba][store]") {
    store_fixture f(json{{"acr", {{"password_lifetime_s", 0.5}}}});
    auto& store = f.start();
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::unavailable); }));
    const auto reason = store.find(host).reason;
    CHECK(reason.find("Code=ExpiredOnArrival") != std::string::npos);
    CHECK(reason.find("NTP") != std::string::npos);
    std::this_thread::sleep_for(200ms);  // the manual clock stands still: no retry may happen
    CHECK(f.fake.count("acr", "GetAuthorizationToken") == 1);
    CHECK(f.counters().refresh_failure == 1);
}

TEST_CASE("a store that is not running never leaves a request hanging", "[alibaba][store]") {
    store_fixture f;
    auto& store = f.build();  // never started
    asio::io_context ioc;
    std::optional<credential_answer> got;
    store.async_get(host, asio::bind_executor(ioc, [&](credential_answer a) { got = std::move(a); }));
    ioc.run();
    REQUIRE(got);
    CHECK(got->state == credential_state::unavailable);
    CHECK(got->reason == "the ACR credential store is not running");
}

TEST_CASE("each base source alone signs the instance's calls", "[alibaba][store]") {
    SECTION("environment AccessKey") {
        store_fixture f(json{{"static_keys", {{"LTAI5tEnvExample", "env-secret"}}}});
        f.vars = {{"ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tEnvExample"},
                  {"ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret"}};
        auto& store = f.start();
        REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
        CHECK(f.fake.requests("acr", "GetAuthorizationToken", 200).at(0)["principal"] == "user:LTAI5tEnvExample");
        CHECK(f.fake.requests("imds", "credentials").empty());
        CHECK(store.status()[0].identity == "environment AccessKey (ALIBABA_CLOUD_ACCESS_KEY_ID)");
    }
    SECTION("RRSA from the pod's environment") {
        store_fixture f;
        const std::string role = "acs:ram::1234567890123456:role/acr-pod-role";
        f.vars = {{"ALIBABA_CLOUD_ROLE_ARN", role},
                  {"ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1"},
                  {"ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/tokens/rrsa"}};
        f.files = {{"/tokens/rrsa", "eyJ-projected"}};
        auto& store = f.start();
        REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
        CHECK(f.fake.requests("acr", "GetAuthorizationToken", 200).at(0)["principal"] == "oidc-role:" + role);
        CHECK(store.status()[0].identity == "RRSA role " + role);
    }
    SECTION("ECS RAM role in hardened metadata mode") {
        store_fixture f(json{{"imds", {{"mode", "required"}}}});
        f.cfg.alibaba.imdsv1_disabled = true;
        f.start();
        REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
        CHECK(f.fake.requests("imds", "credentials", 200).at(0)["token"] == true);
    }
}

TEST_CASE("a transient OpenAPI failure is retried after a short backoff", "[alibaba][store]") {
    store_fixture f(json{{"fail", {{"GetAuthorizationToken", {{{"status", 500}}}}}}});
    auto& store = f.start();
    REQUIRE(eventually([&] { return f.counters().refresh_failure.load() == 1; }));
    CHECK(store.find(host).state == credential_state::unavailable);
    CHECK(store.find(host).reason.find("HTTP 500, Code=InternalError") != std::string::npos);
    f.advance(1s);  // first retry after initial × (0.5 + 0.5 × jitter) = 0.5 s
    REQUIRE(eventually([&] { return f.state_is(host, credential_state::ready); }));
    CHECK(f.fake.count("acr", "GetAuthorizationToken") == 2);
}
