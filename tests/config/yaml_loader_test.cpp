#include "config/loader.hpp"
#include "config_test_support.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>

using namespace std::chrono_literals;
using namespace acp::config;
using acp::config::testing::errors_of;
using acp::config::testing::fake_env;
using acp::config::testing::joined;
using acp::config::testing::strs;

namespace {

const char* const secret_password = "hunter2-very-secret";

fake_env standard_env() {
    fake_env f;
    f.files["/etc/acp/robot.pw"] = std::string(secret_password) + "\n";
    f.files["/etc/acp/empty.pw"] = "\n";
    f.files["/etc/acp/ca.pem"] = acp::config::testing::test_ca_pem;
    f.files["/etc/acp/not-a-cert.pem"] = "hello";
    f.files["/etc/acp/tls.crt"] = acp::config::testing::test_ca_pem;
    f.files["/etc/acp/tls.key"] = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
    f.files["/etc/acp/docker.json"] = R"({"auths":{"registry.example.com":{"auth":"cm9ib3Q6aHVudGVyMg=="}}})";
    // Invalid JSON that contains a credential: the message must not quote it.
    f.files["/etc/acp/broken.json"] = std::string(R"({"auths":{"registry.example.com":{"auth":")") + secret_password;
    f.files["/etc/acp/ak-id"] = "LTAIexample\n";
    f.files["/etc/acp/ak-secret"] = std::string(secret_password) + "\n";
    f.vars["ROBOT_PASSWORD"] = secret_password;
    f.vars["EMPTY_PASSWORD"] = "";
    return f;
}

std::string source_root() {
    const char* root = std::getenv("ACP_SOURCE_ROOT");
    return root != nullptr ? root : ".";
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

TEST_CASE("an empty file gives every default (with a warning that nothing is configured)", "[config][yaml]") {
    const auto f = standard_env();
    const auto r = load_yaml("", "empty.yaml", f.env());
    const auto& c = *r.cfg;
    CHECK(c.source == "empty.yaml");
    CHECK(c.listen == listen_address{"127.0.0.1", 5005});
    CHECK(c.admin_listen == listen_address{"127.0.0.1", 5006});
    CHECK(c.expiring_threshold == 15min);
    CHECK_FALSE(c.follow_redirects);
    CHECK(c.log.level == "info");
    CHECK(c.alibaba.sts_endpoint == "https://sts.aliyuncs.com");
    CHECK_FALSE(c.scope.enabled);
    CHECK(c.timeouts.upstream_headers == 25s);
    CHECK(c.limits.max_connections == 1024);
    REQUIRE(r.warnings.size() == 1);
    CHECK(r.warnings[0].message.find("no ACR instance and no registry") != std::string::npos);
}

TEST_CASE("every key of our format lands in its field", "[config][yaml]") {
    const auto f = standard_env();
    const auto r = load_yaml(R"(
listen: "[::1]:15005"
adminListen: 127.0.0.1:0
expiringThreshold: 20m
followRedirects: true
log: {level: DEBUG, format: json}
alibaba:
  regionId: cn-shanghai
  imdsEndpoint: http://127.0.0.1:9000
  stsEndpoint: https://sts.cn-shanghai.aliyuncs.com
  acrEndpoint: http://127.0.0.1:9001/{regionId}
  useVpcEndpoints: true
  accessKeyIdFile: /etc/acp/ak-id
  accessKeySecretFile: /etc/acp/ak-secret
acrInstances:
  - instanceId: cri-abc
    regionId: cn-hangzhou
    domains: [A-Registry.cn-hangzhou.cr.aliyuncs.com, "a-registry-vpc.cn-hangzhou.cr.aliyuncs.com"]
    assumeRoleARN: acs:ram::123:role/x
    expireDuration: 2h
    roleSessionName: node-1
    rrsaRoleARN: acs:ram::123:role/rrsa
    rrsaOIDCProviderRoleARN: acs:ram::123:oidc-provider/ack-rrsa-c1
    realmHosts: ["*.aliyuncs.com", auth.example.com]
    http2: "off"
  - instanceId: ""
    domains: "registry.cn-beijing.aliyuncs.com, registry-vpc.cn-beijing.aliyuncs.com"
registries:
  - host: registry.example.com:5000
    auth: {type: basic, username: robot, passwordFile: /etc/acp/robot.pw}
    caFile: /etc/acp/ca.pem
    realmHosts: [auth.example.com]
    http2: "on"
  - host: env.example.com
    auth: {type: basic, username: robot, passwordEnv: ROBOT_PASSWORD}
  - host: registry.example.com
    auth: {type: dockerConfig, path: /etc/acp/docker.json}
  - host: public.example.com
defaultRegistry: Registry.Example.com
endpointOverrides:
  a-registry.cn-hangzhou.cr.aliyuncs.com: https://10.0.0.7:443
scope: {enabled: true, namespaces: "team-a, team-b", serviceAccounts: ["*"], waitForPod: 2s}
timeouts: {headerRead: 1s, idle: 2s, upstreamConnect: 3s, upstreamHeaders: 4s, upstreamIdle: 5s, shutdownGrace: 0s}
limits: {maxConnections: 10, maxIdleUpstreamPerHost: 0, maxConcurrentStreams: 250}
tlsListen: 127.0.0.1:5443
tlsCertFile: /etc/acp/tls.crt
tlsKeyFile: /etc/acp/tls.key
)",
                             "full.yaml", f.env());
    INFO(joined(strs(r.warnings)));
    CHECK(r.warnings.empty());
    const auto& c = *r.cfg;
    CHECK(c.listen == listen_address{"::1", 15005});
    CHECK(c.admin_listen == listen_address{"127.0.0.1", 0});
    CHECK(c.expiring_threshold == 20min);
    CHECK(c.follow_redirects);
    CHECK(c.log.level == "debug");
    CHECK(c.log.format == log_format::json);
    CHECK(c.alibaba.region_id == "cn-shanghai");
    CHECK(c.alibaba.acr_endpoint == "http://127.0.0.1:9001/{regionId}");
    CHECK(c.alibaba.use_vpc_endpoints);
    CHECK(c.alibaba.access_key_id_file == "/etc/acp/ak-id");
    REQUIRE(c.acr_instances.size() == 2);
    const auto& a = c.acr_instances[0];
    CHECK(a.instance_id == "cri-abc");
    CHECK(a.domains == std::vector<std::string>{"a-registry.cn-hangzhou.cr.aliyuncs.com",
                                                "a-registry-vpc.cn-hangzhou.cr.aliyuncs.com"});
    CHECK(a.assume_role_arn == "acs:ram::123:role/x");
    CHECK(a.expire_duration == 2h);
    CHECK(a.role_session_name == "node-1");
    CHECK(a.rrsa_oidc_provider_role_arn == "acs:ram::123:oidc-provider/ack-rrsa-c1");
    CHECK(a.realm_hosts == std::vector<std::string>{"*.aliyuncs.com", "auth.example.com"});
    CHECK(c.acr_instances[1].instance_id.empty());
    CHECK(c.acr_instances[1].domains.size() == 2);
    CHECK(c.acr_instances[1].realm_hosts == std::vector<std::string>{"*.aliyuncs.com"});
    REQUIRE(c.registries.size() == 4);
    CHECK(c.registries[0].host == "registry.example.com:5000");
    CHECK(c.registries[0].auth.kind == auth_kind::basic);
    CHECK(c.registries[0].auth.password.reveal() == secret_password);  // one trailing newline stripped
    CHECK(c.registries[0].auth.password_file == "/etc/acp/robot.pw");
    CHECK(c.registries[0].ca_file == "/etc/acp/ca.pem");
    CHECK(c.registries[1].auth.password.reveal() == secret_password);
    CHECK(c.registries[1].auth.password_env == "ROBOT_PASSWORD");
    CHECK(c.registries[2].auth.kind == auth_kind::docker_config);
    CHECK(c.registries[2].auth.docker_config_path == "/etc/acp/docker.json");
    CHECK(c.registries[3].auth.kind == auth_kind::anonymous);
    CHECK(c.default_registry == "registry.example.com");
    REQUIRE(c.endpoint_overrides.count("a-registry.cn-hangzhou.cr.aliyuncs.com") == 1);
    CHECK(c.endpoint_overrides.at("a-registry.cn-hangzhou.cr.aliyuncs.com") ==
          endpoint_url{"https", "10.0.0.7", 443, ""});
    CHECK(c.scope.enabled);
    CHECK(c.scope.namespaces == std::vector<std::string>{"team-a", "team-b"});
    CHECK(c.scope.service_accounts == std::vector<std::string>{"*"});
    CHECK(c.scope.wait_for_pod == 2s);
    CHECK(c.timeouts.header_read == 1s);
    CHECK(c.timeouts.shutdown_grace == 0s);
    CHECK(c.limits.max_connections == 10);
    CHECK(c.limits.max_idle_upstream_per_host == 0);
    CHECK(c.limits.max_concurrent_streams == 250);
    CHECK(c.acr_instances[0].http2 == http2_mode::off);
    CHECK(c.acr_instances[1].http2 == http2_mode::automatic);
    CHECK(c.registries[0].http2 == http2_mode::on);
    CHECK(c.registries[1].http2 == http2_mode::automatic);
    REQUIRE(c.tls_listen.has_value());
    CHECK(*c.tls_listen == listen_address{"127.0.0.1", 5443});
    CHECK(c.tls_cert_file == "/etc/acp/tls.crt");
    CHECK(c.tls_key_file == "/etc/acp/tls.key");
}

TEST_CASE("config/example.yaml loads with zero warnings", "[config][yaml][example]") {
    const auto path = source_root() + "/config/example.yaml";
    const auto text = read_text(path);
    REQUIRE_FALSE(text.empty());
    fake_env f;  // the example's secret files do not exist here: supply them
    f.files["/etc/acr-credential-proxy/registry.example.com.password"] = "example-password\n";
    f.files["/etc/acr-credential-proxy/private-ca.pem"] = acp::config::testing::test_ca_pem;
    f.files["/etc/acr-credential-proxy/docker-config.json"] =
        R"({"auths":{"mirror.example.com:5000":{"auth":"dXNlcjpwYXNz"}}})";
    f.vars["GHCR_EXAMPLE_PASSWORD"] = "example-password";
    load_result r;
    const auto errors = errors_of([&] { r = load_yaml(text, path, f.env()); });
    INFO(joined(errors));
    REQUIRE(errors.empty());
    INFO(joined(strs(r.warnings)));
    CHECK(r.warnings.empty());
    CHECK(r.cfg->acr_instances.size() == 3);
    CHECK(r.cfg->registries.size() == 4);
    CHECK(r.cfg->default_registry == "registry.example.com");
}

TEST_CASE("load() reads the --config file through the environment", "[config][yaml]") {
    auto f = standard_env();
    f.files["/etc/acp/config.yaml"] = "registries: [{host: registry.example.com}]\n";
    const auto r = load({.config_file = "/etc/acp/config.yaml", .acr_configuration_dir = ""}, f.env());
    CHECK(r.cfg->source == "/etc/acp/config.yaml");
    CHECK(r.cfg->registries.size() == 1);

    const auto missing = errors_of([&] { load({.config_file = "/nope.yaml", .acr_configuration_dir = ""}, f.env()); });
    REQUIRE(missing.size() == 1);
    CHECK(missing[0].find("/nope.yaml") != std::string::npos);
    CHECK(missing[0].find("cannot read") != std::string::npos);

    CHECK_THROWS_AS(load({}, f.env()), config_error);
}

namespace {

struct bad_input {
    const char* name;
    const char* yaml;
    const char* key;    // the key path the message must name
    const char* value;  // the bad value (or what stands for it) the message must name
    int line = 0;       // when non-zero, the line the message must name
};

// Each row is one distinct mistake; every message must name the file, the key and the value.
const bad_input bad_inputs[] = {
    {"listen host is a name", "listen: localhost:5005", "listen", "\"localhost:5005\"", 1},
    {"listen without port", "listen: 127.0.0.1", "listen", "\"127.0.0.1\""},
    {"listen port out of range", "listen: 127.0.0.1:70000", "listen", "\"127.0.0.1:70000\""},
    {"listen is a list", "listen: [127.0.0.1]", "listen", "a list"},
    {"adminListen equals listen", "listen: 127.0.0.1:5005\nadminListen: 127.0.0.1:5005", "adminListen",
     "\"127.0.0.1:5005\"", 2},
    {"adminListen on the wildcard with listen's port", "adminListen: 0.0.0.0:5005", "adminListen", "\"0.0.0.0:5005\""},
    {"expiringThreshold in words", "expiringThreshold: 15 minutes", "expiringThreshold", "\"15 minutes\""},
    {"expiringThreshold above 1h", "expiringThreshold: 2h", "expiringThreshold", "\"2h\""},
    {"expiringThreshold zero", "expiringThreshold: 0s", "expiringThreshold", "\"0s\""},
    {"followRedirects yes", "followRedirects: yes", "followRedirects", "\"yes\""},
    {"log level unknown", "log: {level: verbose}", "log.level", "\"verbose\""},
    {"log format unknown", "log:\n  format: xml", "log.format", "\"xml\"", 2},
    {"alibaba regionId malformed", "alibaba: {regionId: CN_Hangzhou}", "alibaba.regionId", "\"CN_Hangzhou\""},
    {"stsEndpoint without scheme", "alibaba: {stsEndpoint: sts.aliyuncs.com}", "alibaba.stsEndpoint",
     "\"sts.aliyuncs.com\""},
    {"acrEndpoint with ftp", "alibaba: {acrEndpoint: \"ftp://cr.{regionId}.aliyuncs.com\"}", "alibaba.acrEndpoint",
     "\"ftp://cr.{regionId}.aliyuncs.com\""},
    {"accessKeyIdFile unreadable", "alibaba: {accessKeyIdFile: /missing/ak, accessKeySecretFile: /etc/acp/ak-secret}",
     "alibaba.accessKeyIdFile", "\"/missing/ak\""},
    {"accessKeySecretFile without id", "alibaba: {accessKeySecretFile: /etc/acp/ak-secret}", "alibaba.accessKeyIdFile",
     "accessKeySecretFile"},
    {"acrInstances is a string", "acrInstances: cri-x", "acrInstances", "\"cri-x\""},
    {"instance regionId with a space", "acrInstances: [{instanceId: cri-x, regionId: cn hangzhou}]",
     "acrInstances[0].regionId", "\"cn hangzhou\""},
    {"instance domain with a scheme",
     "acrInstances:\n  - instanceId: cri-x\n    domains:\n      - a.cr.aliyuncs.com\n      - https://b.cr.aliyuncs.com",
     "acrInstances[0].domains[1]", "\"https://b.cr.aliyuncs.com\"", 5},
    {"assumeRoleARN from AWS", "acrInstances: [{instanceId: cri-x, assumeRoleARN: \"arn:aws:iam::1:role/x\"}]",
     "acrInstances[0].assumeRoleARN", "\"arn:aws:iam::1:role/x\""},
    {"expireDuration below STS minimum",
     "acrInstances: [{instanceId: cri-x, assumeRoleARN: \"acs:ram::1:role/x\", expireDuration: 5m}]",
     "acrInstances[0].expireDuration", "\"5m\""},
    {"alibaba.stsDuration below STS minimum", "alibaba: {stsDuration: 10m}", "alibaba.stsDuration", "\"10m\""},
    {"alibaba.imdsTokenTTL above the IMDS maximum", "alibaba: {imdsTokenTTL: 7h}", "alibaba.imdsTokenTTL", "\"7h\""},
    {"alibaba.ecsMetadataDisabled not a boolean", "alibaba: {ecsMetadataDisabled: maybe}",
     "alibaba.ecsMetadataDisabled", "maybe"},
    {"expireDuration above STS maximum", "acrInstances: [{instanceId: cri-x, expireDuration: 13h}]",
     "acrInstances[0].expireDuration", "\"13h\""},
    {"expireDuration in seconds below minimum", "acrInstances: [{instanceId: cri-x, expireDuration: 600}]",
     "acrInstances[0].expireDuration", "\"600\""},
    {"roleSessionName with a space", "acrInstances: [{instanceId: cri-x, roleSessionName: a b}]",
     "acrInstances[0].roleSessionName", "\"a b\""},
    {"realmHosts star", "acrInstances: [{instanceId: cri-x, realmHosts: [\"*\"]}]", "acrInstances[0].realmHosts[0]",
     "\"*\""},
    {"realmHosts too broad", "acrInstances: [{instanceId: cri-x, realmHosts: [\"*.com\"]}]",
     "acrInstances[0].realmHosts[0]", "\"*.com\""},
    {"OIDC provider ARN is a role",
     "acrInstances: [{instanceId: cri-x, rrsaRoleARN: \"acs:ram::1:role/r\", rrsaOIDCProviderRoleARN: "
     "\"acs:ram::1:role/x\"}]",
     "acrInstances[0].rrsaOIDCProviderRoleARN", "\"acs:ram::1:role/x\""},
    {"rrsaRoleARN without provider", "acrInstances: [{instanceId: cri-x, rrsaRoleARN: \"acs:ram::1:role/r\"}]",
     "acrInstances[0].rrsaOIDCProviderRoleARN", "\"acs:ram::1:role/r\""},
    {"registry host with a space", "registries: [{host: Registry Example}]", "registries[0].host",
     "\"Registry Example\""},
    {"registry without host", "registries: [{caFile: /etc/acp/ca.pem}]", "registries[0].host", "missing"},
    {"auth type unknown", "registries: [{host: r.example.com, auth: {type: token}}]", "registries[0].auth.type",
     "\"token\""},
    {"passwordFile unreadable",
     "registries:\n  - host: a.example.com\n  - host: b.example.com\n    auth: {type: basic, username: u, "
     "passwordFile: /missing.pw}",
     "registries[1].auth.passwordFile", "\"/missing.pw\"", 4},
    {"passwordFile empty",
     "registries: [{host: r.example.com, auth: {type: basic, username: u, passwordFile: "
     "/etc/acp/empty.pw}}]",
     "registries[0].auth.passwordFile", "\"/etc/acp/empty.pw\""},
    {"passwordEnv unset",
     "registries: [{host: r.example.com, auth: {type: basic, username: u, passwordEnv: NOPE_UNSET}}]",
     "registries[0].auth.passwordEnv", "\"NOPE_UNSET\""},
    {"passwordEnv empty",
     "registries: [{host: r.example.com, auth: {type: basic, username: u, passwordEnv: EMPTY_PASSWORD}}]",
     "registries[0].auth.passwordEnv", "\"EMPTY_PASSWORD\""},
    {"passwordEnv not a name",
     "registries: [{host: r.example.com, auth: {type: basic, username: u, passwordEnv: 1BAD-NAME}}]",
     "registries[0].auth.passwordEnv", "\"1BAD-NAME\""},
    {"passwordFile and passwordEnv",
     "registries: [{host: r.example.com, auth: {type: basic, username: u, passwordFile: /etc/acp/robot.pw, "
     "passwordEnv: ROBOT_PASSWORD}}]",
     "registries[0].auth.passwordEnv", "passwordFile"},
    {"basic without username",
     "registries: [{host: r.example.com, auth: {type: basic, passwordFile: "
     "/etc/acp/robot.pw}}]",
     "registries[0].auth.username", "missing"},
    {"username with a colon",
     "registries: [{host: r.example.com, auth: {type: basic, username: \"a:b\", passwordFile: /etc/acp/robot.pw}}]",
     "registries[0].auth.username", "\"a:b\""},
    {"username with anonymous", "registries: [{host: r.example.com, auth: {type: anonymous, username: u}}]",
     "registries[0].auth.username", "\"anonymous\""},
    {"dockerConfig not JSON",
     "registries: [{host: r.example.com, auth: {type: dockerConfig, path: "
     "/etc/acp/broken.json}}]",
     "registries[0].auth.path", "\"/etc/acp/broken.json\""},
    {"dockerConfig missing file", "registries: [{host: r.example.com, auth: {type: dockerConfig, path: /nope.json}}]",
     "registries[0].auth.path", "\"/nope.json\""},
    {"caFile unreadable", "registries: [{host: r.example.com, caFile: /missing-ca.pem}]", "registries[0].caFile",
     "\"/missing-ca.pem\""},
    {"caFile without a certificate", "registries: [{host: r.example.com, caFile: /etc/acp/not-a-cert.pem}]",
     "registries[0].caFile", "\"/etc/acp/not-a-cert.pem\""},
    {"insecureSkipVerify maybe", "registries: [{host: r.example.com, insecureSkipVerify: maybe}]",
     "registries[0].insecureSkipVerify", "\"maybe\""},
    {"host in an instance and a registry",
     "acrInstances: [{instanceId: cri-x, domains: [r.example.com]}]\nregistries: [{host: R.example.com}]",
     "acrInstances[0].domains[0]", "\"r.example.com\"", 1},
    {"host twice in registries", "registries: [{host: r.example.com}, {host: r.example.com}]", "registries[1].host",
     "\"r.example.com\""},
    {"defaultRegistry not configured", "registries: [{host: r.example.com}]\ndefaultRegistry: other.example.com",
     "defaultRegistry", "\"other.example.com\"", 2},
    {"defaultRegistry with a scheme", "registries: [{host: r.example.com}]\ndefaultRegistry: https://r.example.com",
     "defaultRegistry", "\"https://r.example.com\""},
    {"endpointOverrides for an unknown host",
     "registries: [{host: r.example.com}]\nendpointOverrides: {other.example.com: \"https://10.0.0.1\"}",
     "endpointOverrides[\"other.example.com\"]", "\"other.example.com\""},
    {"endpointOverrides without scheme",
     "registries: [{host: r.example.com}]\nendpointOverrides: {r.example.com: \"10.0.0.7:443\"}",
     "endpointOverrides[\"r.example.com\"]", "\"10.0.0.7:443\""},
    {"namespaces not a name", "scope: {namespaces: \"team-a, Kube_System\"}", "scope.namespaces", "\"Kube_System\""},
    {"serviceAccounts not a name", "scope: {serviceAccounts: [ok, \"bad sa\"]}", "scope.serviceAccounts[1]",
     "\"bad sa\""},
    {"waitForPod negative", "scope: {waitForPod: -1s}", "scope.waitForPod", "\"-1s\""},
    {"headerRead negative", "timeouts: {headerRead: -1s}", "timeouts.headerRead", "\"-1s\""},
    {"upstreamConnect zero", "timeouts: {upstreamConnect: 0}", "timeouts.upstreamConnect", "\"0\""},
    {"maxConnections zero", "limits: {maxConnections: 0}", "limits.maxConnections", "\"0\""},
    {"maxIdleUpstreamPerHost negative", "limits: {maxIdleUpstreamPerHost: -3}", "limits.maxIdleUpstreamPerHost",
     "\"-3\""},
    {"http2 not a mode", "registries: [{host: r.example.com, http2: yes}]", "registries[0].http2", "\"yes\""},
    {"acr http2 not a mode", "acrInstances: [{instanceId: cri-a, domains: [a.example.com], http2: h2}]",
     "acrInstances[0].http2", "\"h2\""},
    {"maxConcurrentStreams zero", "limits: {maxConcurrentStreams: 0}", "limits.maxConcurrentStreams", "\"0\""},
    {"maxConcurrentStreams too many", "limits: {maxConcurrentStreams: 5000}", "limits.maxConcurrentStreams", "5000"},
    {"tlsListen without files", "tlsListen: 127.0.0.1:5443", "tlsListen", "tlsCertFile"},
    {"tlsListen on the data port",
     "tlsListen: 127.0.0.1:5005\ntlsCertFile: /etc/acp/tls.crt\ntlsKeyFile: /etc/acp/tls.key", "tlsListen",
     "\"127.0.0.1:5005\""},
    {"tlsCertFile unreadable", "tlsCertFile: /etc/acp/nope.crt", "tlsCertFile", "\"/etc/acp/nope.crt\""},
    {"tlsCertFile not a certificate", "tlsCertFile: /etc/acp/not-a-cert.pem", "tlsCertFile",
     "\"/etc/acp/not-a-cert.pem\""},
    {"tlsKeyFile holds a certificate", "tlsKeyFile: /etc/acp/tls.crt", "tlsKeyFile", "\"/etc/acp/tls.crt\""},
    {"YAML syntax error", "listen: 127.0.0.1:5005\nlog: {level: info\n", "", "not valid YAML"},
    {"duplicate key", "listen: 127.0.0.1:5005\nlisten: 127.0.0.1:6005", "listen", "\"listen\"", 2},
    {"top level is a list", "- listen: 127.0.0.1:5005", "", "a list"},
    {"a ConfigMap given as --config", "apiVersion: v1\nkind: ConfigMap\ndata: {}", "kind", "\"ConfigMap\"", 2},
};

}  // namespace

TEST_CASE("each bad input is one precise error naming file, key and value", "[config][yaml][errors]") {
    const auto f = standard_env();
    STATIC_REQUIRE(std::size(bad_inputs) >= 30);
    for (const auto& b : bad_inputs) {
        SECTION(b.name) {
            const auto errors = errors_of([&] { load_yaml(b.yaml, "/etc/acp/config.yaml", f.env()); });
            INFO(b.yaml);
            INFO(joined(errors));
            REQUIRE_FALSE(errors.empty());
            bool found = false;
            for (const auto& e : errors) {
                const bool names_key =
                    std::string(b.key).empty() || e.find(std::string(b.key) + ": ") != std::string::npos;
                const bool names_line =
                    b.line == 0 || e.find("/etc/acp/config.yaml:" + std::to_string(b.line) + ":") != std::string::npos;
                found = found || (e.starts_with("/etc/acp/config.yaml") && names_key && names_line &&
                                  e.find(b.value) != std::string::npos);
            }
            CHECK(found);
            CHECK(joined(errors).find(secret_password) == std::string::npos);
        }
    }
}

TEST_CASE("all errors of a file are reported together", "[config][yaml][errors]") {
    const auto f = standard_env();
    const auto errors = errors_of(
        [&] { load_yaml("listen: nowhere\nexpiringThreshold: 3h\nlog: {level: loud}\n", "c.yaml", f.env()); });
    CHECK(errors.size() == 3);
}

TEST_CASE("unknown keys warn with the closest known key", "[config][yaml][warnings]") {
    struct row {
        const char* yaml;
        const char* key;
        const char* suggestion;
    };
    const auto r = GENERATE(values<row>({
        {"listn: 127.0.0.1:5005", "listn", "\"listen\""},
        {"expiring-threshold: 15m", "expiring-threshold", "\"expiringThreshold\""},
        {"acrInstances: [{instanceID: cri-x}]", "acrInstances[0].instanceID", "\"instanceId\""},
        {"timeouts: {headerread: 5s}", "timeouts.headerread", "\"headerRead\""},
        {"registries: [{host: r.example.com, realmHost: [a.example.com]}]", "registries[0].realmHost",
         "\"realmHosts\""},
        {"scope: {watch-namespace: all}", "scope.watch-namespace", "\"namespaces\""},
        // The spellings before the issue's: the old key points at the new one.
        {"scope: {watchNamespace: [team-a]}", "scope.watchNamespace", "\"namespaces\""},
        {"scope: {serviceAccount: \"*\"}", "scope.serviceAccount", "\"serviceAccounts\""},
        {"log: {lvl: info}", "log.lvl", "\"level\""},
    }));
    const auto f = standard_env();
    const auto res = load_yaml(r.yaml, "w.yaml", f.env());
    const auto all = joined(strs(res.warnings));
    INFO(all);
    bool found = false;
    for (const auto& w : strs(res.warnings)) {
        found = found || (w.find(std::string(r.key) + ": unknown key") != std::string::npos &&
                          w.find(r.suggestion) != std::string::npos);
    }
    CHECK(found);
}

TEST_CASE("risky but valid settings load with a warning", "[config][yaml][warnings]") {
    struct row {
        const char* yaml;
        const char* key;
        const char* words;
    };
    const auto r = GENERATE(values<row>({
        {"listen: 0.0.0.0:5005\nregistries: [{host: r.example.com}]", "listen", "not a loopback address"},
        {"adminListen: \"[2001:db8::1]:5006\"\nregistries: [{host: r.example.com}]", "adminListen",
         "not a loopback address"},
        {"acrInstances: [{instanceId: my-instance}]", "acrInstances[0].instanceId", "\"my-instance\""},
        {"registries: [{host: r.example.com, insecureSkipVerify: true}]", "registries[0].insecureSkipVerify",
         "not verified"},
        {"registries: [{host: r.example.com}]\ntimeouts: {upstreamHeaders: 30s}", "timeouts.upstreamHeaders", "30s"},
        {"registries: [{host: other.example.com, auth: {type: dockerConfig, path: /etc/acp/docker.json}}]",
         "registries[0].auth.path", "no \"auths\" entry"},
    }));
    const auto f = standard_env();
    const auto res = load_yaml(r.yaml, "w.yaml", f.env());
    const auto warnings = strs(res.warnings);
    INFO(joined(warnings));
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find(std::string(r.key) + ": ") != std::string::npos);
    CHECK(warnings[0].find(r.words) != std::string::npos);
}

TEST_CASE("listeners on port 0 never collide", "[config][yaml]") {
    const auto f = standard_env();
    const auto r = load_yaml("listen: 127.0.0.1:0\nadminListen: 127.0.0.1:0\nregistries: [{host: r.example.com}]",
                             "p.yaml", f.env());
    CHECK(r.cfg->listen.port == 0);
    CHECK(r.cfg->admin_listen.port == 0);
}

TEST_CASE("a password is read once, with exactly one trailing newline stripped", "[config][yaml]") {
    struct row {
        std::string content;
        std::string want;
    };
    const auto r = GENERATE(values<row>({
        {"pw", "pw"},
        {"pw\n", "pw"},
        {"pw\r\n", "pw"},
        {"pw\n\n", "pw\n"},
        {" pw ", " pw "},
    }));
    fake_env f;
    f.files["/p"] = r.content;
    const auto res = load_yaml(
        "registries: [{host: r.example.com, auth: {type: basic, username: u, passwordFile: /p}}]", "p.yaml", f.env());
    CHECK(res.cfg->registries[0].auth.password.reveal() == r.want);
}

TEST_CASE("a failed load still carries its warnings: a misspelt key explains a missing one", "[config][yaml][errors]") {
    const auto f = standard_env();
    try {
        load_yaml("registries:\n  - hots: r.example.com\n", "typo.yaml", f.env());
        FAIL("expected config_error");
    } catch (const config_error& e) {
        REQUIRE(e.errors().size() == 1);
        CHECK(e.errors()[0].str() ==
              "typo.yaml:2: registries[0].host: missing; expected the registry host, e.g. \"registry.example.com\"");
        REQUIRE(e.warnings().size() == 1);
        CHECK(e.warnings()[0].str() ==
              "typo.yaml:2: registries[0].hots: unknown key \"hots\" ignored (closest known key: \"host\")");
    }
}

TEST_CASE("an invalid listen address does not also report a collision", "[config][yaml][errors]") {
    const auto f = standard_env();
    const auto errors =
        errors_of([&] { load_yaml("listen: localhost:5005\nadminListen: 127.0.0.1:5005", "l.yaml", f.env()); });
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].starts_with("l.yaml:1: listen: \"localhost:5005\""));
}
