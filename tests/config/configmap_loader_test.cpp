#include "config/loader.hpp"
#include "config_test_support.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using namespace acp::config;
using acp::config::testing::errors_of;
using acp::config::testing::fake_env;
using acp::config::testing::joined;
using acp::config::testing::strs;
using acp::config::testing::temp_dir;
using acp::config::testing::write_configmap_volume;

namespace {

// The examples of Alibaba's add-on documentation, verbatim (including the
// trailing spaces after "cn-hangzhou" in the multi-region block).
const char* const doc_multi_region_data = R"(data:
    service-account: "default"
    watch-namespace: "all"
    expiring-threshold: "15m"
    notify-email: "c*@aliyuncs.com"
    acr-registry-info: |
      - instanceId: "cri-instanceId"
        regionId: "cn-beijing"
      - instanceId: "cri-instanceId"
        regionId: "cn-hangzhou"      
)";

const char* const doc_single_instance_registry_info = R"(- instanceId: <cri-instanceId>
  regionId: "cn-hangzhou"
  domains: "xxx.com,yyy.com"
)";

const char* const doc_webhook_data = R"(data:
  webhook-configuration: |
    enable: true
    failure-policy: Ignore
    timeout-seconds: 10
)";

std::string indent(const std::string& text, const std::string& prefix) {
    std::string out;
    std::size_t start = 0;
    while (start < text.size()) {
        const auto nl = text.find('\n', start);
        out += prefix + text.substr(start, nl == std::string::npos ? std::string::npos : nl - start + 1);
        if (nl == std::string::npos) {
            break;
        }
        start = nl + 1;
    }
    return out;
}

// The same data as a full manifest, as `kubectl get cm -o yaml` would show it.
std::string manifest_of(const std::map<std::string, std::string>& data) {
    std::string out =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: acr-configuration\n  namespace: kube-system\n"
        "data:\n";
    for (const auto& [key, value] : data) {
        if (value.find('\n') != std::string::npos) {
            out += "  " + key + ": |\n" + indent(value, "    ");
        } else {
            out += "  " + key + ": \"" + value + "\"\n";
        }
    }
    return out;
}

std::map<std::string, std::string> multi_region_map() {
    return configmap_manifest_data(doc_multi_region_data, "doc.yaml");
}

bool has_warning(const load_result& r, const std::string& key, const std::string& words) {
    for (const auto& w : r.warnings) {
        if (w.key == key && w.message.find(words) != std::string::npos) {
            return true;
        }
    }
    return false;
}

void check_multi_region(const load_result& r) {
    const auto& c = *r.cfg;
    REQUIRE(c.acr_instances.size() == 2);
    CHECK(c.acr_instances[0].instance_id == "cri-instanceId");
    CHECK(c.acr_instances[0].region_id == "cn-beijing");
    CHECK(c.acr_instances[1].instance_id == "cri-instanceId");
    CHECK(c.acr_instances[1].region_id == "cn-hangzhou");
    CHECK(c.acr_instances[0].domains.empty());
    CHECK(c.scope.enabled);
    CHECK(c.scope.namespaces == std::vector<std::string>{"*"});
    CHECK(c.scope.service_accounts == std::vector<std::string>{"default"});
    CHECK(c.expiring_threshold == 15min);
    CHECK(has_warning(r, "notify-email", "nothing to notify"));
    CHECK(r.warnings.size() == 1);
}

}  // namespace

TEST_CASE("the documented multi-region example loads from data:", "[config][configmap][doc]") {
    const auto data = multi_region_map();
    CHECK(data.size() == 5);
    const auto r = load_configmap(data, "doc.yaml", fake_env{}.env());
    check_multi_region(r);
}

TEST_CASE("the documented multi-region example loads as a mounted directory", "[config][configmap][doc]") {
    temp_dir dir;
    write_configmap_volume(dir, multi_region_map());
    const auto r = load({.config_file = "", .acr_configuration_dir = dir.path().string()}, environment::process());
    INFO(joined(strs(r.warnings)));
    check_multi_region(r);
    CHECK(r.cfg->source == dir.path().string());
}

TEST_CASE("the documented multi-region example loads as a manifest file and as a bare data: file",
          "[config][configmap][doc]") {
    temp_dir dir;
    dir.write("cm.yaml", manifest_of(multi_region_map()));
    dir.write("data.yaml", doc_multi_region_data);
    for (const auto* name : {"cm.yaml", "data.yaml"}) {
        CAPTURE(name);
        const auto r =
            load({.config_file = "", .acr_configuration_dir = (dir.path() / name).string()}, environment::process());
        check_multi_region(r);
    }
}

TEST_CASE("check-config's rendering of the multi-region example lists both instances", "[config][configmap][doc]") {
    const auto r = load_configmap(multi_region_map(), "doc.yaml", fake_env{}.env());
    const auto text = render(*r.cfg);
    CHECK(text.find("regionId: cn-beijing") != std::string::npos);
    CHECK(text.find("regionId: cn-hangzhou") != std::string::npos);
    std::size_t count = 0;
    for (auto p = text.find("instanceId: cri-instanceId"); p != std::string::npos;
         p = text.find("instanceId: cri-instanceId", p + 1)) {
        ++count;
    }
    CHECK(count == 2);
}

TEST_CASE("the documented single-instance example loads in every form", "[config][configmap][doc]") {
    const std::map<std::string, std::string> data{{"acr-registry-info", doc_single_instance_registry_info}};
    auto check = [](const load_result& r) {
        const auto& c = *r.cfg;
        REQUIRE(c.acr_instances.size() == 1);
        CHECK(c.acr_instances[0].instance_id == "<cri-instanceId>");
        CHECK(c.acr_instances[0].region_id == "cn-hangzhou");
        CHECK(c.acr_instances[0].domains == std::vector<std::string>{"xxx.com", "yyy.com"});
        CHECK(c.scope.enabled);
        CHECK(c.scope.namespaces == std::vector<std::string>{"default"});
        CHECK(c.scope.service_accounts == std::vector<std::string>{"default"});
        // An odd-looking id is kept, with one warning.
        CHECK(has_warning(r, "acr-registry-info[0].instanceId", "\"cri-...\""));
        CHECK(r.warnings.size() == 1);
    };
    SECTION("data map") {
        check(load_configmap(data, "doc", fake_env{}.env()));
    }
    SECTION("mounted directory") {
        temp_dir dir;
        write_configmap_volume(dir, data);
        check(load({.config_file = "", .acr_configuration_dir = dir.path().string()}, environment::process()));
    }
    SECTION("manifest") {
        temp_dir dir;
        dir.write("cm.yaml", manifest_of(data));
        check(load({.config_file = "", .acr_configuration_dir = (dir.path() / "cm.yaml").string()},
                   environment::process()));
    }
}

TEST_CASE("the documented webhook-configuration block is accepted with one warning", "[config][configmap][doc]") {
    auto data = configmap_manifest_data(doc_webhook_data, "doc.yaml");
    data["acr-registry-info"] = doc_single_instance_registry_info;
    const auto r = load_configmap(data, "doc", fake_env{}.env());
    CHECK(has_warning(r, "webhook-configuration", "a new ServiceAccount works at once"));
    temp_dir dir;
    write_configmap_volume(dir, data);
    const auto d = load({.config_file = "", .acr_configuration_dir = dir.path().string()}, environment::process());
    CHECK(has_warning(d, "webhook-configuration", "no Secret"));
    CHECK(d.cfg->acr_instances.size() == 1);
}

TEST_CASE("the webhook block alone still loads", "[config][configmap][doc]") {
    const auto r = load_configmap(configmap_manifest_data(doc_webhook_data, "doc.yaml"), "doc", fake_env{}.env());
    CHECK(r.cfg->acr_instances.empty());
    CHECK(has_warning(r, "webhook-configuration", "ServiceAccount"));
    CHECK(has_warning(r, "acr-registry-info", "missing"));
}

TEST_CASE("every add-on key is honoured or explained", "[config][configmap]") {
    const std::map<std::string, std::string> data{
        {"acr-registry-info",
         "- instanceId: cri-a\n  regionId: cn-shanghai\n  domains:\n    - a.example.com\n"
         "- instanceId: cri-b\n  assumeRoleARN: acs:ram::9:role/own\n  expireDuration: 2h\n"
         "  roleSessionName: own-session\n"
         "- instanceId: ''\n  regionId: cn-beijing\n"},
        {"expiring-threshold", "10m\n"},
        {"watch-namespace", "team-a,team-b, team-c"},
        {"service-account", "*"},
        {"acr-api-version", "2018-12-01"},
        {"notify-email", "ops@example.com"},
        {"webhook-configuration", "enable: false\n"},
        {"assumeRoleARN", "acs:ram::123:role/cross"},
        {"expireDuration", "3600"},
        {"rrsaRoleARN", "acs:ram::123:role/rrsa"},
        {"rrsaOIDCProviderRoleARN", "acs:ram::123:oidc-provider/ack-rrsa-c1"},
    };
    const auto r = load_configmap(data, "cm", fake_env{}.env());
    const auto& c = *r.cfg;
    CHECK(c.expiring_threshold == 10min);
    CHECK(c.scope.namespaces == std::vector<std::string>{"team-a", "team-b", "team-c"});
    CHECK(c.scope.service_accounts == std::vector<std::string>{"*"});
    REQUIRE(c.acr_instances.size() == 3);
    CHECK(c.acr_instances[0].domains == std::vector<std::string>{"a.example.com"});
    // Top-level cross-account keys apply to instances without their own.
    CHECK(c.acr_instances[0].assume_role_arn == "acs:ram::123:role/cross");
    CHECK(c.acr_instances[0].expire_duration == 1h);
    CHECK(c.acr_instances[0].rrsa_role_arn == "acs:ram::123:role/rrsa");
    CHECK(c.acr_instances[0].rrsa_oidc_provider_role_arn == "acs:ram::123:oidc-provider/ack-rrsa-c1");
    CHECK(c.acr_instances[1].assume_role_arn == "acs:ram::9:role/own");
    CHECK(c.acr_instances[1].expire_duration == 2h);
    CHECK(c.acr_instances[1].role_session_name == "own-session");
    CHECK(c.acr_instances[2].instance_id.empty());
    CHECK(c.acr_instances[2].assume_role_arn == "acs:ram::123:role/cross");
    // One warning each for the three keys that do not matter here, nothing else.
    INFO(joined(strs(r.warnings)));
    CHECK(r.warnings.size() == 3);
    CHECK(has_warning(r, "acr-api-version", "picks the ACR API per edition"));
    CHECK(has_warning(r, "notify-email", "no Secrets"));
    CHECK(has_warning(r, "webhook-configuration", "ServiceAccount works at once"));
}

TEST_CASE("unknown ConfigMap keys warn with the closest known key", "[config][configmap][warnings]") {
    const std::map<std::string, std::string> data{
        {"acr-registry-info", "- instanceId: cri-a\n  regionID: cn-hangzhou\n"},
        {"watch-namespaces", "all"},
    };
    const auto r = load_configmap(data, "cm", fake_env{}.env());
    CHECK(has_warning(r, "watch-namespaces", "\"watch-namespace\""));
    CHECK(has_warning(r, "acr-registry-info[0].regionID", "\"regionId\""));
}

TEST_CASE("a mounted directory skips Kubernetes' .. entries and reads keys through the symlinks",
          "[config][configmap]") {
    temp_dir dir;
    write_configmap_volume(dir, {{"acr-registry-info", "- instanceId: cri-a\n"}, {"watch-namespace", "prod\n"}});
    // A plain file next to the symlinks (a hand-made directory) is read too.
    dir.write("service-account", "builder\n");
    const auto r = load({.config_file = "", .acr_configuration_dir = dir.path().string()}, environment::process());
    INFO(joined(strs(r.warnings)));
    CHECK(r.warnings.empty());
    CHECK(r.cfg->acr_instances.size() == 1);
    CHECK(r.cfg->scope.namespaces == std::vector<std::string>{"prod"});
    CHECK(r.cfg->scope.service_accounts == std::vector<std::string>{"builder"});
}

TEST_CASE("an error inside acr-registry-info names the line in the key's file or the manifest",
          "[config][configmap][errors]") {
    const std::map<std::string, std::string> data{
        {"acr-registry-info", "- instanceId: cri-a\n  regionId: cn-beijing\n- instanceId: cri-b\n  regionId: cn_x\n"}};
    SECTION("directory: the key's own file") {
        temp_dir dir;
        write_configmap_volume(dir, data);
        const auto errors = errors_of(
            [&] { load({.config_file = "", .acr_configuration_dir = dir.path().string()}, environment::process()); });
        REQUIRE(errors.size() == 1);
        CHECK(errors[0] == (dir.path() / "acr-registry-info").string() +
                               ":4: acr-registry-info[1].regionId: \"cn_x\" is not a region id; expected e.g. "
                               "\"cn-hangzhou\", or empty for the node's region");
    }
    SECTION("manifest: the manifest's line") {
        temp_dir dir;
        dir.write("cm.yaml", manifest_of(data));  // data: is line 6, the block's text starts on line 8
        const auto path = (dir.path() / "cm.yaml").string();
        const auto errors =
            errors_of([&] { load({.config_file = "", .acr_configuration_dir = path}, environment::process()); });
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].starts_with(path + ":11: acr-registry-info[1].regionId: \"cn_x\""));
    }
}

namespace {

struct bad_configmap {
    const char* name;
    std::map<std::string, std::string> data;
    const char* key;
    const char* value;
};

}  // namespace

TEST_CASE("each bad ConfigMap value is an error naming key and value", "[config][configmap][errors]") {
    const std::vector<bad_configmap> rows{
        {"expiring-threshold in words", {{"expiring-threshold", "1 hour"}}, "expiring-threshold", "\"1 hour\""},
        {"expiring-threshold too long", {{"expiring-threshold", "90m"}}, "expiring-threshold", "\"90m\""},
        {"watch-namespace not a name",
         {{"watch-namespace", "default,Kube System!"}},
         "watch-namespace",
         "\"Kube System!\""},
        {"service-account not a name", {{"service-account", "a_b"}}, "service-account", "\"a_b\""},
        {"acr-registry-info is a map",
         {{"acr-registry-info", "instanceId: cri-x\n"}},
         "acr-registry-info",
         "a mapping"},
        {"acr-registry-info bad YAML",
         {{"acr-registry-info", "- instanceId: [cri-x\n"}},
         "acr-registry-info",
         "not valid YAML"},
        {"instance region malformed",
         {{"acr-registry-info", "- instanceId: cri-x\n  regionId: cn_beijing\n"}},
         "acr-registry-info[0].regionId",
         "\"cn_beijing\""},
        {"instance domains with a scheme",
         {{"acr-registry-info", "- instanceId: cri-x\n  domains: \"a.com,https://b.com\"\n"}},
         "acr-registry-info[0].domains",
         "\"https://b.com\""},
        {"instance expireDuration too short",
         {{"acr-registry-info", "- instanceId: cri-x\n  assumeRoleARN: acs:ram::1:role/x\n  expireDuration: 100\n"}},
         "acr-registry-info[0].expireDuration",
         "\"100\""},
        {"top-level assumeRoleARN malformed", {{"assumeRoleARN", "role/x"}}, "assumeRoleARN", "\"role/x\""},
        {"top-level expireDuration too long", {{"expireDuration", "24h"}}, "expireDuration", "\"24h\""},
        {"top-level rrsaOIDCProviderRoleARN is a role",
         {{"rrsaOIDCProviderRoleARN", "acs:ram::1:role/x"}},
         "rrsaOIDCProviderRoleARN",
         "\"acs:ram::1:role/x\""},
        {"top-level rrsaRoleARN without provider",
         {{"rrsaRoleARN", "acs:ram::1:role/r"}, {"acr-registry-info", "- instanceId: cri-x\n"}},
         "acr-registry-info[0].rrsaOIDCProviderRoleARN",
         "\"acs:ram::1:role/r\""},
        {"a domain in two instances",
         {{"acr-registry-info", "- instanceId: cri-a\n  domains: x.com\n- instanceId: cri-b\n  domains: X.com\n"}},
         "acr-registry-info[1].domains",
         "\"x.com\""},
    };
    for (const auto& row : rows) {
        SECTION(row.name) {
            const auto errors = errors_of([&] { load_configmap(row.data, "/cm", fake_env{}.env()); });
            INFO(joined(errors));
            REQUIRE_FALSE(errors.empty());
            bool found = false;
            for (const auto& e : errors) {
                found = found || (e.starts_with("/cm: ") && e.find(std::string(row.key) + ": ") != std::string::npos &&
                                  e.find(row.value) != std::string::npos);
            }
            CHECK(found);
        }
    }
}

TEST_CASE("manifests that are not the add-on's ConfigMap are rejected precisely", "[config][configmap][errors]") {
    struct row {
        const char* yaml;
        const char* words;
    };
    const auto r = GENERATE(values<row>({
        {"kind: Secret\ndata: {a: b}\n", "\"Secret\" is not a ConfigMap"},
        {"kind: ConfigMap\nmetadata: {name: x}\n", "data: missing"},
        {"data:\n  acr-registry-info:\n    - instanceId: cri-x\n", "data.acr-registry-info: expected a string"},
        {"listen: 127.0.0.1:5005\nacrInstances: []\n", "pass it with --config"},
        {"- a\n", "got a list"},
    }));
    const auto errors = errors_of([&] { configmap_manifest_data(r.yaml, "m.yaml"); });
    INFO(joined(errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].starts_with("m.yaml:"));
    CHECK(errors[0].find(r.words) != std::string::npos);
}

TEST_CASE("an unreadable --acr-configuration path is an error naming it", "[config][configmap][errors]") {
    const auto errors = errors_of([] {
        load({.config_file = "", .acr_configuration_dir = "/nonexistent/acr-configuration"}, environment::process());
    });
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("/nonexistent/acr-configuration") != std::string::npos);
}

TEST_CASE("with --config and --acr-configuration the file is the base and the ConfigMap adds to it",
          "[config][configmap]") {
    temp_dir files;
    temp_dir dir;
    files.write("config.yaml", R"(listen: 127.0.0.1:15005
expiringThreshold: 20m
acrInstances: [{instanceId: cri-file, domains: [file.cr.example.com]}]
registries: [{host: registry.example.com}]
scope: {enabled: false, namespaces: [x], waitForPod: 9s}
)");
    write_configmap_volume(dir, {{"acr-registry-info", "- instanceId: cri-cm\n  domains: cm.cr.example.com\n"},
                                 {"expiring-threshold", "5m"},
                                 {"service-account", "builder"}});
    const auto r =
        load({.config_file = (files.path() / "config.yaml").string(), .acr_configuration_dir = dir.path().string()},
             environment::process());
    const auto& c = *r.cfg;
    INFO(joined(strs(r.warnings)));
    CHECK(r.warnings.empty());
    CHECK(c.listen.port == 15005);
    CHECK(c.expiring_threshold == 5min);
    REQUIRE(c.acr_instances.size() == 2);
    CHECK(c.acr_instances[0].instance_id == "cri-file");
    CHECK(c.acr_instances[1].instance_id == "cri-cm");
    CHECK(c.registries.size() == 1);
    CHECK(c.scope.enabled);
    CHECK(c.scope.namespaces == std::vector<std::string>{"default"});
    CHECK(c.scope.service_accounts == std::vector<std::string>{"builder"});
    CHECK(c.scope.wait_for_pod == 9s);
    CHECK(c.source == (files.path() / "config.yaml").string() + ", " + dir.path().string());

    SECTION("a host in both sources is an error naming both places") {
        temp_dir other;
        write_configmap_volume(other,
                               {{"acr-registry-info", "- instanceId: cri-cm\n  domains: registry.example.com\n"}});
        const auto errors = errors_of([&] {
            load({.config_file = (files.path() / "config.yaml").string(),
                  .acr_configuration_dir = other.path().string()},
                 environment::process());
        });
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].find("acr-registry-info[0].domains: host \"registry.example.com\" is configured twice") !=
              std::string::npos);
        CHECK(errors[0].find("registries[0].host in " + (files.path() / "config.yaml").string() + ":4") !=
              std::string::npos);
    }
}

TEST_CASE("load_configmap on a base keeps the base and appends", "[config][configmap]") {
    fake_env f;
    const auto base = load_yaml("registries: [{host: registry.example.com}]\n", "base.yaml", f.env()).cfg;
    const auto r = load_configmap({{"acr-registry-info", "- instanceId: cri-a\n  domains: a.cr.example.com\n"}}, "cm",
                                  f.env(), base);
    CHECK(r.cfg->registries.size() == 1);
    CHECK(r.cfg->acr_instances.size() == 1);
    CHECK(r.cfg->scope.enabled);
    CHECK(r.cfg->source == "base.yaml, cm");

    const auto errors = errors_of([&] {
        load_configmap({{"acr-registry-info", "- instanceId: cri-a\n  domains: registry.example.com\n"}}, "cm", f.env(),
                       base);
    });
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] ==
          "cm: acr-registry-info[0].domains: host \"registry.example.com\" is configured twice (also at "
          "registries[0].host in base.yaml); expected each registry host once across acrInstances[].domains and "
          "registries[].host");
}
