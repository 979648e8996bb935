#include "routing/route_table.hpp"

#include <catch2/catch.hpp>

#include <memory>

using acp::routing::route_kind;
using acp::routing::route_table;

namespace {

std::shared_ptr<const acp::config::config> sample_config() {
    auto c = std::make_shared<acp::config::config>();
    acp::config::registry a;
    a.host = "registry.example.com";
    c->registries.push_back(a);
    acp::config::registry b;
    b.host = "registry.example.com:5000";
    b.ca_file = "/etc/ca.pem";
    c->registries.push_back(b);
    acp::config::registry fake;
    fake.host = "made-up.test:5000";
    c->registries.push_back(fake);
    acp::config::registry hub;
    hub.host = "docker.io";
    c->registries.push_back(hub);
    c->endpoint_overrides["made-up.test:5000"] = {"http", "127.0.0.1", 5000, ""};
    acp::config::acr_instance inst;
    inst.instance_id = "cri-abc";
    inst.domains = {"demo-registry.cn-hangzhou.cr.aliyuncs.com", "Registry.Example.com"};
    c->acr_instances.push_back(inst);
    c->default_registry = "made-up.test:5000";
    return c;
}

}  // namespace

TEST_CASE("route lookup is exact, case-insensitive and port-aware", "[routing][routes]") {
    const route_table t(sample_config());
    struct lookup {
        const char* ns;
        const char* expected_host;  // nullptr: no route
    };
    const lookup cases[] = {
        {"registry.example.com", "registry.example.com"},
        {"REGISTRY.example.COM", "registry.example.com"},
        {"registry.example.com:5000", "registry.example.com:5000"},
        {"registry.example.com:443", nullptr},
        {"registry.example.com:5001", nullptr},
        {"example.com", nullptr},
        {"sub.registry.example.com", nullptr},
        {"registry.example.com.", nullptr},
        {"made-up.test:5000", "made-up.test:5000"},
        {"demo-registry.cn-hangzhou.cr.aliyuncs.com", "demo-registry.cn-hangzhou.cr.aliyuncs.com"},
        {"", nullptr},
    };
    for (const auto& c : cases) {
        INFO(c.ns);
        const auto* r = t.find(c.ns);
        if (c.expected_host == nullptr) {
            CHECK(r == nullptr);
        } else {
            REQUIRE(r != nullptr);
            CHECK(r->host == c.expected_host);
        }
    }
}

TEST_CASE("routes carry their upstream endpoint and TLS settings", "[routing][routes]") {
    const route_table t(sample_config());
    const auto* plain = t.find("registry.example.com");
    REQUIRE(plain);
    CHECK(plain->upstream == acp::config::endpoint_url{"https", "registry.example.com", 443, ""});
    CHECK(plain->kind == route_kind::registry);
    CHECK(plain->registry != nullptr);

    const auto* ported = t.find("registry.example.com:5000");
    REQUIRE(ported);
    CHECK(ported->upstream == acp::config::endpoint_url{"https", "registry.example.com", 5000, ""});
    CHECK(ported->ca_file == "/etc/ca.pem");

    const auto* overridden = t.find("made-up.test:5000");
    REQUIRE(overridden);
    CHECK(overridden->upstream == acp::config::endpoint_url{"http", "127.0.0.1", 5000, ""});

    const auto* hub = t.find("docker.io");
    REQUIRE(hub);
    CHECK(hub->upstream.host == "registry-1.docker.io");

    const auto* acr = t.find("demo-registry.cn-hangzhou.cr.aliyuncs.com");
    REQUIRE(acr);
    CHECK(acr->kind == route_kind::acr_instance);
    REQUIRE(acr->acr != nullptr);
    CHECK(acr->acr->instance_id == "cri-abc");
}

TEST_CASE("a host listed twice keeps its first route", "[routing][routes]") {
    const route_table t(sample_config());
    const auto* r = t.find("registry.example.com");
    REQUIRE(r);
    CHECK(r->kind == route_kind::registry);
}

TEST_CASE("requests without ns go to the default registry when one is set", "[routing][routes]") {
    auto cfg = sample_config();
    const route_table with_default(cfg);
    REQUIRE(with_default.resolve(std::nullopt) != nullptr);
    CHECK(with_default.resolve(std::nullopt)->host == "made-up.test:5000");
    CHECK(with_default.resolve(std::string("unknown.io")) == nullptr);

    auto no_default = std::make_shared<acp::config::config>(*cfg);
    no_default->default_registry.clear();
    const route_table without(no_default);
    CHECK(without.resolve(std::nullopt) == nullptr);
}

TEST_CASE("a moved route table keeps its default route valid", "[routing][routes]") {
    route_table a(sample_config());
    route_table b(std::move(a));
    REQUIRE(b.default_route() != nullptr);
    CHECK(b.default_route() == b.find("made-up.test:5000"));
}

TEST_CASE("authorities omit default ports and bracket IPv6", "[routing][routes]") {
    using acp::routing::authority_of;
    CHECK(authority_of({"https", "r.io", 443, ""}) == "r.io");
    CHECK(authority_of({"https", "r.io", 5000, ""}) == "r.io:5000");
    CHECK(authority_of({"http", "r.io", 80, ""}) == "r.io");
    CHECK(authority_of({"http", "::1", 5000, ""}) == "[::1]:5000");
    auto hp = acp::routing::split_host_port("[::1]:5000");
    REQUIRE(hp);
    CHECK(hp->host == "::1");
    CHECK(hp->port == 5000);
    CHECK_FALSE(acp::routing::split_host_port("a:b"));
}
