// The pull scope in both config forms: our YAML `scope` section and the
// add-on's watch-namespace / service-account keys, with the add-on's defaults
// and words ("all" namespaces, "*" ServiceAccounts), and render round trips.
#include "config/loader.hpp"
#include "config_test_support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace acp::config;
using acp::config::testing::errors_of;
using acp::config::testing::fake_env;
using acp::config::testing::joined;
using acp::config::testing::strs;

namespace {

using names = std::vector<std::string>;

struct want_scope {
    bool enabled;
    names namespaces;
    names service_accounts;
    duration wait_for_pod = 5s;
};

void check_scope(const scope_config& got, const want_scope& want) {
    CHECK(got.enabled == want.enabled);
    CHECK(got.namespaces == want.namespaces);
    CHECK(got.service_accounts == want.service_accounts);
    CHECK(got.wait_for_pod == want.wait_for_pod);
}

std::size_t count_containing(const std::vector<std::string>& lines, const std::string& phrase) {
    return static_cast<std::size_t>(std::count_if(
        lines.begin(), lines.end(), [&](const std::string& l) { return l.find(phrase) != std::string::npos; }));
}

// render() then load_yaml() gives the same scope, and render is a fixed point.
void check_round_trip(const config& cfg) {
    const fake_env f;
    const auto text = render(cfg);
    INFO(text);
    load_result again;
    try {
        again = load_yaml(text, "rendered.yaml", f.env());
    } catch (const config_error& e) {
        FAIL(e.what());
    }
    CHECK(again.cfg->scope == cfg.scope);
    CHECK(render(*again.cfg) == render([&] {
              auto c = cfg;
              c.source = "rendered.yaml";
              return c;
          }()));
}

}  // namespace

TEST_CASE("our YAML: no scope section is unscoped; a section scopes with the add-on's defaults", "[config][scope]") {
    struct row {
        std::string scenario;
        std::string yaml;
        want_scope want;
    };
    const row rows[] = {
        {"no scope section", "", {false, {"default"}, {"default"}}},
        {"an empty section", "scope: {}", {true, {"default"}, {"default"}}},
        {"enabled: false keeps it off", "scope: {enabled: false, namespaces: [x]}", {false, {"x"}, {"default"}}},
        {"enabled: true", "scope: {enabled: true}", {true, {"default"}, {"default"}}},
        {"lists",
         "scope: {namespaces: [team-a, team-b], serviceAccounts: [builder, robot]}",
         {true, {"team-a", "team-b"}, {"builder", "robot"}}},
        {"comma-separated strings, trimmed",
         "scope: {namespaces: \" team-a ,team-b,, \", serviceAccounts: \"a, b\"}",
         {true, {"team-a", "team-b"}, {"a", "b"}}},
        {"duplicates dropped, names lower-cased", "scope: {namespaces: [Prod, prod]}", {true, {"prod"}, {"default"}}},
        {"all namespaces", "scope: {namespaces: all}", {true, {"*"}, {"default"}}},
        {"* namespaces", "scope: {namespaces: \"*\"}", {true, {"*"}, {"default"}}},
        {"every ServiceAccount", "scope: {serviceAccounts: \"*\"}", {true, {"default"}, {"*"}}},
        {"all and *", "scope: {namespaces: all, serviceAccounts: [\"*\"]}", {true, {"*"}, {"*"}}},
        {"waitForPod", "scope: {waitForPod: 2500ms}", {true, {"default"}, {"default"}, 2500ms}},
        {"waitForPod 0: no wait", "scope: {waitForPod: 0s}", {true, {"default"}, {"default"}, 0s}},
        {"waitForPod at the 20 s cap", "scope: {waitForPod: 20s}", {true, {"default"}, {"default"}, 20s}},
    };
    const fake_env f;
    for (const auto& r : rows) {
        SECTION(r.scenario) {
            const auto loaded = load_yaml(r.yaml, "file.yaml", f.env());
            INFO(joined(strs(loaded.warnings)));
            check_scope(loaded.cfg->scope, r.want);
            CHECK(count_containing(strs(loaded.warnings), "scope") == 0);
            check_round_trip(*loaded.cfg);
        }
    }
}

TEST_CASE("check-config output says when the proxy is unscoped", "[config][scope]") {
    const fake_env f;
    CHECK(render(*load_yaml("", "file.yaml", f.env()).cfg)
              .find("enabled: false  # unscoped: every pod on this node may pull") != std::string::npos);
    CHECK(render(*load_yaml("scope: {}", "file.yaml", f.env()).cfg).find("unscoped") == std::string::npos);
}

TEST_CASE("our YAML: \"all\" as a ServiceAccount is the name, with a warning", "[config][scope]") {
    const fake_env f;
    const auto loaded = load_yaml("scope: {serviceAccounts: all}", "file.yaml", f.env());
    check_scope(loaded.cfg->scope, {true, {"default"}, {"all"}});
    const auto warnings = strs(loaded.warnings);
    INFO(joined(warnings));
    CHECK(count_containing(warnings, "scope.serviceAccounts") == 1);
    CHECK(count_containing(warnings, "\"*\" means every ServiceAccount") == 1);
    check_round_trip(*loaded.cfg);
}

TEST_CASE("our YAML: the keys' old spellings are ignored with a warning, so the scope only narrows",
          "[config][scope]") {
    // watchNamespace / serviceAccount were renamed to the issue's namespaces /
    // serviceAccounts. An old file keeps the section (scope on, defaults) and is
    // told the new key, never widened to its old "all".
    const fake_env f;
    const auto loaded = load_yaml("scope: {watchNamespace: all, serviceAccount: \"*\"}", "file.yaml", f.env());
    check_scope(loaded.cfg->scope, {true, {"default"}, {"default"}});
    const auto warnings = strs(loaded.warnings);
    INFO(joined(warnings));
    CHECK(count_containing(warnings,
                           "scope.watchNamespace: unknown key \"watchNamespace\" ignored (closest known "
                           "key: \"namespaces\")") == 1);
    CHECK(count_containing(warnings,
                           "scope.serviceAccount: unknown key \"serviceAccount\" ignored (closest known "
                           "key: \"serviceAccounts\")") == 1);
}

TEST_CASE("our YAML: scope errors name the key", "[config][scope]") {
    struct row {
        std::string scenario;
        std::string yaml;
        std::string key;
        std::string phrase;
    };
    const row rows[] = {
        {"all mixed with names", "scope: {namespaces: [default, all]}", "scope.namespaces[1]",
         "\"all\" means every namespace and cannot be combined with namespace names"},
        {"* mixed with names", "scope: {serviceAccounts: \"*,builder\"}", "scope.serviceAccounts",
         "\"*\" means every ServiceAccount and cannot be combined"},
        {"empty namespace list", "scope: {namespaces: []}", "scope.namespaces",
         "empty; expected \"all\" or at least one namespace name"},
        {"empty ServiceAccount string", "scope: {serviceAccounts: \"\"}", "scope.serviceAccounts",
         "empty; expected \"*\" or at least one ServiceAccount name"},
        {"a namespace with a dot", "scope: {namespaces: [team.a]}", "scope.namespaces[0]",
         "\"team.a\" is not a valid namespace name"},
        {"a ServiceAccount with a space", "scope: {serviceAccounts: [\"ci bot\"]}", "scope.serviceAccounts[0]",
         "\"ci bot\" is not a valid ServiceAccount name"},
        {"waitForPod negative", "scope: {waitForPod: -1s}", "scope.waitForPod", "\"-1s\""},
        {"waitForPod over the cap", "scope: {waitForPod: 21s}", "scope.waitForPod", "20s"},
        {"enabled not a bool", "scope: {enabled: maybe}", "scope.enabled", "maybe"},
        {"scope not a mapping", "scope: [default]", "scope", ""},
    };
    const fake_env f;
    for (const auto& r : rows) {
        SECTION(r.scenario) {
            const auto errors = errors_of([&] { (void)load_yaml(r.yaml, "file.yaml", f.env()); });
            INFO(joined(errors));
            REQUIRE_FALSE(errors.empty());
            CHECK(count_containing(errors, r.key) >= 1);
            CHECK(count_containing(errors, r.phrase) >= 1);
        }
    }
}

TEST_CASE("ConfigMap form: always scoped, add-on defaults for absent keys, add-on words", "[config][scope]") {
    const std::string registry_info = "- instanceId: cri-a\n  regionId: cn-hangzhou\n";
    struct row {
        std::string scenario;
        std::map<std::string, std::string> keys;
        want_scope want;
        std::size_t scope_warnings = 0;
    };
    const row rows[] = {
        {"both absent: default / default", {}, {true, {"default"}, {"default"}}},
        {"only watch-namespace", {{"watch-namespace", "prod"}}, {true, {"prod"}, {"default"}}},
        {"only service-account", {{"service-account", "builder"}}, {true, {"default"}, {"builder"}}},
        {"all", {{"watch-namespace", "all"}}, {true, {"*"}, {"default"}}},
        {"*", {{"service-account", "*"}}, {true, {"default"}, {"*"}}},
        {"all and *", {{"watch-namespace", "all"}, {"service-account", "*"}}, {true, {"*"}, {"*"}}},
        {"comma lists, trimmed, with a trailing newline",
         {{"watch-namespace", " team-a, team-b ,team-c\n"}, {"service-account", "default,builder\n"}},
         {true, {"team-a", "team-b", "team-c"}, {"default", "builder"}}},
        {"empty values: the add-on's defaults, with a warning",
         {{"watch-namespace", ""}, {"service-account", " \n"}},
         {true, {"default"}, {"default"}},
         2},
        {"service-account all is the ServiceAccount named all",
         {{"service-account", "all"}},
         {true, {"default"}, {"all"}},
         1},
    };
    const fake_env f;
    for (const auto& r : rows) {
        SECTION(r.scenario) {
            auto data = r.keys;
            data["acr-registry-info"] = registry_info;
            const auto loaded = load_configmap(data, "cm", f.env());
            const auto warnings = strs(loaded.warnings);
            INFO(joined(warnings));
            check_scope(loaded.cfg->scope, r.want);
            CHECK(count_containing(warnings, "watch-namespace") + count_containing(warnings, "service-account") ==
                  r.scope_warnings);
            check_round_trip(*loaded.cfg);
        }
    }
}

TEST_CASE("ConfigMap form: scope errors name the key", "[config][scope]") {
    struct row {
        std::string scenario;
        std::map<std::string, std::string> keys;
        std::string phrase;
    };
    const row rows[] = {
        {"all with names", {{"watch-namespace", "default,all"}}, "watch-namespace"},
        {"* with names", {{"service-account", "*,builder"}}, "service-account"},
        {"a bad namespace", {{"watch-namespace", "Kube System"}}, "watch-namespace"},
        {"a bad ServiceAccount", {{"service-account", "a/b"}}, "service-account"},
    };
    const fake_env f;
    for (const auto& r : rows) {
        SECTION(r.scenario) {
            auto data = r.keys;
            data["acr-registry-info"] = "- instanceId: cri-a\n";
            const auto errors = errors_of([&] { (void)load_configmap(data, "cm", f.env()); });
            INFO(joined(errors));
            REQUIRE(errors.size() == 1);
            CHECK(errors[0].find(r.phrase) != std::string::npos);
        }
    }
}

TEST_CASE("ConfigMap form: the add-on documentation's example loads with its exact scope", "[config][scope]") {
    // Alibaba's cross-region example (service-account "default", watch-namespace "all").
    const std::string manifest = R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: acr-configuration
  namespace: kube-system
data:
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
    const fake_env f;
    const auto loaded =
        load_configmap(configmap_manifest_data(manifest, "acr-configuration.yaml"), "acr-configuration.yaml", f.env());
    check_scope(loaded.cfg->scope, {true, {"*"}, {"default"}});
    CHECK(render(*loaded.cfg).find("scope:\n  enabled: true\n  namespaces: all\n  serviceAccounts:") !=
          std::string::npos);

    // The project's own example ConfigMap (deploy/kubernetes/examples) uses the defaults spelled out.
    const auto ours = load_configmap({{"acr-registry-info", "- instanceId: cri-a\n"},
                                      {"watch-namespace", "default"},
                                      {"service-account", "default"}},
                                     "cm", f.env());
    check_scope(ours.cfg->scope, {true, {"default"}, {"default"}});
}
