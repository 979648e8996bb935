#include "tokens/static_credentials.hpp"

#include "tokens/auth_provider.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <map>
#include <memory>

using namespace acp::tokens;
namespace net = boost::asio;

namespace {

authorization run_authorize(const std::shared_ptr<auth_provider>& p) {
    net::io_context ioc;
    auto f = net::co_spawn(ioc, p->authorize({"reg.example", "team/app", acp::routing::request_kind::manifest}),
                           net::use_future);
    ioc.run();
    auto r = f.get();
    REQUIRE(r.has_value());
    return *r;
}

auth_environment files(std::map<std::string, std::string> contents) {
    auth_environment env;
    env.read_file = [contents](const std::string& path) -> std::optional<std::string> {
        auto it = contents.find(path);
        if (it == contents.end()) {
            return std::nullopt;
        }
        return it->second;
    };
    return env;
}

std::shared_ptr<const acp::config::config> config_with(acp::config::registry r) {
    auto cfg = std::make_shared<acp::config::config>();
    cfg->registries.push_back(std::move(r));
    return cfg;
}

}  // namespace

TEST_CASE("base64 round-trips and rejects malformed input", "[tokens][static]") {
    const std::pair<std::string, std::string> table[] = {
        {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"user:pass word", "dXNlcjpwYXNzIHdvcmQ="},
    };
    for (const auto& [plain, encoded] : table) {
        CHECK(base64_encode(plain) == encoded);
        CHECK(base64_decode(encoded) == plain);
    }
    CHECK_FALSE(base64_decode("Zm9v!"));
    CHECK_FALSE(base64_decode("Z"));
}

TEST_CASE("docker config auths are found by host whatever the key's shape", "[tokens][static]") {
    const std::string json = R"({"auths":{
        "https://reg.example:5000/v1/": {"auth": "dTE6cDE="},
        "Other.Example": {"username": "u2", "password": "p2"},
        "broken.example": {"identitytoken": "x"}
    }})";
    CHECK(docker_config_lookup(json, "reg.example:5000")->reveal() == "Basic dTE6cDE=");
    CHECK(docker_config_lookup(json, "other.example")->reveal() == "Basic " + base64_encode("u2:p2"));
    CHECK_FALSE(docker_config_lookup(json, "reg.example"));
    CHECK_FALSE(docker_config_lookup(json, "broken.example"));
    CHECK_FALSE(docker_config_lookup(R"({"credsStore":"desktop"})", "reg.example"));
    CHECK_THROWS(docker_config_lookup("{not json", "reg.example"));
    CHECK_THROWS(docker_config_lookup(R"({"auths":{"r.example":{"auth":"bm9jb2xvbg=="}}})", "r.example"));
}

TEST_CASE("a malformed docker config never echoes its content in the error", "[tokens][static]") {
    try {
        docker_config_lookup(R"({"auths":{"r":{"auth":"s3cr3t-value)", "r");
        FAIL("expected an exception");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("s3cr3t") == std::string::npos);
    }
}

TEST_CASE("each route gets its provider from the one place that chooses", "[tokens][static]") {
    acp::config::registry basic;
    basic.host = "reg.example";
    basic.auth.kind = acp::config::auth_kind::basic;
    basic.auth.username = "u";
    basic.auth.password = acp::config::secret("p");
    const acp::routing::route_table basic_routes(config_with(basic));
    const auth_providers basic_set(basic_routes, files({}));
    auto b = basic_set.for_route(*basic_routes.find("reg.example"));
    CHECK(run_authorize(b)->reveal() == "Basic " + base64_encode("u:p"));

    acp::config::registry anon;
    anon.host = "anon.example";
    const acp::routing::route_table anon_routes(config_with(anon));
    const auth_providers anon_set(anon_routes, files({}));
    CHECK(anon_set.for_route(*anon_routes.find("anon.example"))->name() == "anonymous");
    CHECK_FALSE(run_authorize(anon_set.for_route(*anon_routes.find("anon.example"))).has_value());

    acp::config::registry docker;
    docker.host = "reg.example";
    docker.auth.kind = acp::config::auth_kind::docker_config;
    docker.auth.docker_config_path = "/cfg.json";
    const acp::routing::route_table docker_routes(config_with(docker));
    const auth_providers docker_set(docker_routes,
                                    files({{"/cfg.json", R"({"auths":{"reg.example":{"auth":"dTpw"}}})"}}));
    CHECK(run_authorize(docker_set.for_route(*docker_routes.find("reg.example")))->reveal() == "Basic dTpw");

    const auth_providers missing_entry(docker_routes, files({{"/cfg.json", R"({"auths":{}})"}}));
    CHECK_FALSE(missing_entry.warnings().empty());
    CHECK_THROWS_AS(auth_providers(docker_routes, files({})), std::runtime_error);
}

TEST_CASE("static providers never ask for a retry after a 401", "[tokens][static]") {
    auto p = std::make_shared<basic_provider>(acp::config::secret("Basic eDp5"), "basic");
    net::io_context ioc;
    auto f = net::co_spawn(ioc, p->on_unauthorized({"r", "a", acp::routing::request_kind::blob}, {}), net::use_future);
    ioc.run();
    auto r = f.get();
    REQUIRE(r.has_value());
    CHECK_FALSE(*r);
}
