#include "config/loader.hpp"
#include "config_test_support.hpp"

#include <catch2/catch.hpp>

using namespace acp::config;
using acp::config::testing::fake_env;
using acp::config::testing::joined;
using acp::config::testing::strs;

namespace {

const char* const secret_password = "s3cr3t-never-printed";

fake_env secrets_env() {
    fake_env f;
    f.files["/etc/acp/robot.pw"] = std::string(secret_password) + "\n";
    f.files["/etc/acp/ca.pem"] = acp::config::testing::test_ca_pem;
    f.files["/etc/acp/docker.json"] = R"({"auths":{"docker.example.com":{"auth":"eDp5"}}})";
    f.files["/etc/acp/ak-id"] = "id\n";
    f.files["/etc/acp/ak-secret"] = "secret\n";
    f.files["/etc/acp/sts-token"] = "token\n";
    f.vars["ROBOT_PASSWORD"] = secret_password;
    return f;
}

// Renders `cfg`, loads the text back and checks nothing changed or was lost.
// `warnings`: how many the reloaded text may give (settings that always warn).
void check_round_trip(const config& cfg, const fake_env& f, std::size_t warnings = 0) {
    const auto text = render(cfg);
    INFO(text);
    CHECK(text.find(secret_password) == std::string::npos);
    load_result again;
    try {
        again = load_yaml(text, "rendered.yaml", f.env());
    } catch (const config_error& e) {
        FAIL(e.what());
    }
    INFO(joined(strs(again.warnings)));
    CHECK(again.warnings.size() == warnings);
    auto reloaded = *again.cfg;
    reloaded.source = cfg.source;
    CHECK(reloaded == cfg);
    CHECK(render(reloaded) == text);  // a fixed point
}

}  // namespace

TEST_CASE("render of defaults round-trips", "[config][render]") {
    const fake_env f;
    auto cfg = config{};
    cfg.registries.push_back({});
    cfg.registries[0].host = "registry.example.com";
    check_round_trip(cfg, f);
}

TEST_CASE("render of every section round-trips, secrets redacted", "[config][render]") {
    const auto f = secrets_env();
    const auto loaded = load_yaml(R"(
listen: "[::1]:15005"
adminListen: 127.0.0.1:0
expiringThreshold: 20m30s
followRedirects: true
log: {level: warn, format: json}
alibaba:
  regionId: cn-shanghai
  imdsEndpoint: http://127.0.0.1:9000
  stsEndpoint: https://sts.cn-shanghai.aliyuncs.com
  acrEndpoint: http://127.0.0.1:9001/{regionId}
  useVpcEndpoints: true
  accessKeyIdFile: /etc/acp/ak-id
  accessKeySecretFile: /etc/acp/ak-secret
  securityTokenFile: /etc/acp/sts-token
acrInstances:
  - instanceId: cri-abc
    regionId: cn-hangzhou
    domains: [a-registry.cn-hangzhou.cr.aliyuncs.com]
    assumeRoleARN: acs:ram::123:role/x
    expireDuration: 90m
    roleSessionName: node-1
    rrsaRoleARN: acs:ram::123:role/rrsa
    rrsaOIDCProviderRoleARN: acs:ram::123:oidc-provider/ack-rrsa-c1
    realmHosts: ["*.aliyuncs.com", "auth.example.com"]
  - instanceId: ""
registries:
  - host: "[::1]:5000"
    auth: {type: basic, username: robot, passwordFile: /etc/acp/robot.pw}
    caFile: /etc/acp/ca.pem
    insecureSkipVerify: true
    realmHosts: [auth.example.com]
  - host: env.example.com
    auth: {type: basic, username: "robot@example.com", passwordEnv: ROBOT_PASSWORD}
  - host: docker.example.com
    auth: {type: dockerConfig, path: /etc/acp/docker.json}
  - host: public.example.com
    auth: {type: anonymous}
defaultRegistry: public.example.com
endpointOverrides:
  a-registry.cn-hangzhou.cr.aliyuncs.com: https://10.0.0.7/prefix
  "[::1]:5000": "http://[::1]:5001"
scope: {enabled: true, namespaces: all, serviceAccounts: [default, builder], waitForPod: 1500ms}
timeouts: {headerRead: 1s, idle: 2s, upstreamConnect: 3s, upstreamHeaders: 4s, upstreamIdle: 5s, shutdownGrace: 0s}
limits: {maxConnections: 10, maxIdleUpstreamPerHost: 0}
)",
                                  "full.yaml", f.env());
    REQUIRE(loaded.warnings.size() == 1);  // insecureSkipVerify
    check_round_trip(*loaded.cfg, f, 1);
    const auto text = render(*loaded.cfg);
    CHECK(text.find("passwordFile: /etc/acp/robot.pw") != std::string::npos);
    CHECK(text.find("passwordEnv: ROBOT_PASSWORD") != std::string::npos);
}

TEST_CASE("render of a ConfigMap-loaded config round-trips into our format", "[config][render]") {
    const fake_env f;
    const auto loaded =
        load_configmap({{"acr-registry-info",
                         "- instanceId: cri-a\n  regionId: cn-beijing\n- instanceId: cri-a\n  regionId: "
                         "cn-hangzhou\n  domains: \"x.com,y.com\"\n  assumeRoleARN: acs:ram::1:role/r\n"
                         "  expireDuration: 7200\n"},
                        {"watch-namespace", "all"},
                        {"service-account", "a,b"},
                        {"expiring-threshold", "5m"}},
                       "cm", f.env());
    check_round_trip(*loaded.cfg, f);
}
