#include "routing/pod_scope.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

using acp::routing::image_key;
using acp::routing::parse_pod;
using acp::routing::parse_pod_list;
using acp::routing::parse_watch_line;
using acp::routing::pod_index;
using acp::routing::pod_index_holder;
using acp::routing::pod_info;
using acp::routing::scope_rule;
using acp::routing::scope_verdict;
using acp::routing::watch_event_type;
using json = nlohmann::json;

namespace {

const std::string digest = "sha256:" + std::string(64, 'd');

json pod_json(const std::string& ns, const std::string& name, const std::string& uid,
              const std::vector<std::string>& images, const std::string& sa = "") {
    json containers = json::array();
    for (const auto& image : images) {
        containers.push_back({{"name", "c" + std::to_string(containers.size())}, {"image", image}});
    }
    json spec = {{"nodeName", "node-1"}, {"containers", containers}};
    if (!sa.empty()) {
        spec["serviceAccountName"] = sa;
    }
    return {{"kind", "Pod"},
            {"apiVersion", "v1"},
            {"metadata", {{"namespace", ns}, {"name", name}, {"uid", uid}, {"resourceVersion", "100"}}},
            {"spec", spec},
            {"status", {{"phase", "Pending"}}}};
}

pod_info pod(const std::string& ns, const std::string& name, const std::string& uid,
             const std::vector<std::string>& images, const std::string& sa = "") {
    auto r = parse_pod(pod_json(ns, name, uid, images, sa));
    INFO(r.error);
    REQUIRE(r.pod);
    return *r.pod;
}

scope_rule rule(std::vector<std::string> namespaces, std::vector<std::string> service_accounts) {
    acp::config::scope_config c;
    c.enabled = true;
    c.namespaces = std::move(namespaces);
    c.service_accounts = std::move(service_accounts);
    return scope_rule::from(c);
}

std::string event(const std::string& type, const json& object) {
    return json{{"type", type}, {"object", object}}.dump();
}

}  // namespace

// ---- Pod objects -----------------------------------------------------------------

TEST_CASE("a full pod: names, ServiceAccount, node, phase and every container's image", "[routing][pod_scope]") {
    auto j = pod_json("team-a", "web-7d9f", "0b0e2f4c-1111-2222-3333-444455556666",
                      {"nginx:1.25", "reg.example:5000/team/app@" + digest, "nginx:1.25"}, "builder");
    j["spec"]["initContainers"] = json::array({{{"name", "init"}, {"image", "busybox"}}});
    j["spec"]["ephemeralContainers"] = json::array({{{"name", "debug"}, {"image", "Reg.Example:5000/tools/debug:1"}}});
    j["status"]["phase"] = "Running";
    const auto r = parse_pod(j);
    INFO(r.error);
    REQUIRE(r.pod);
    const auto& p = *r.pod;
    CHECK(p.namespace_name == "team-a");
    CHECK(p.name == "web-7d9f");
    CHECK(p.id() == "team-a/web-7d9f");
    CHECK(p.uid == "0b0e2f4c-1111-2222-3333-444455556666");
    CHECK(p.resource_version == "100");
    CHECK(p.service_account == "builder");
    CHECK(p.node_name == "node-1");
    CHECK(p.phase == "Running");
    CHECK_FALSE(p.deleting);
    CHECK(p.images == std::vector<std::string>{"nginx:1.25", "reg.example:5000/team/app@" + digest, "busybox",
                                               "Reg.Example:5000/tools/debug:1"});
    CHECK(p.references == std::vector<image_key>{{"docker.io", "library/busybox"},
                                                 {"docker.io", "library/nginx"},
                                                 {"reg.example:5000", "team/app"},
                                                 {"reg.example:5000", "tools/debug"}});
    CHECK(p.invalid_images.empty());
}

TEST_CASE("pod fields: defaults when absent, errors naming the field when wrong", "[routing][pod_scope]") {
    const auto base = pod_json("default", "p", "u-1", {"nginx"});
    SECTION("no serviceAccountName: the namespace's default ServiceAccount") {
        const auto r = parse_pod(base);
        REQUIRE(r.pod);
        CHECK(r.pod->service_account == "default");
    }
    SECTION("the deprecated spec.serviceAccount is used when serviceAccountName is absent") {
        auto j = base;
        j["spec"]["serviceAccount"] = "legacy";
        CHECK(parse_pod(j).pod->service_account == "legacy");
        j["spec"]["serviceAccountName"] = "current";
        CHECK(parse_pod(j).pod->service_account == "current");
    }
    SECTION("no spec, no status: a pod with nothing to index") {
        auto j = base;
        j.erase("spec");
        j.erase("status");
        const auto r = parse_pod(j);
        REQUIRE(r.pod);
        CHECK(r.pod->references.empty());
        CHECK(r.pod->node_name.empty());
        CHECK(r.pod->phase.empty());
    }
    SECTION("deletionTimestamp marks the pod deleting; null fields are absent") {
        auto j = base;
        j["metadata"]["deletionTimestamp"] = "2026-11-28T19:00:00Z";
        j["spec"]["nodeName"] = nullptr;
        const auto r = parse_pod(j);
        REQUIRE(r.pod);
        CHECK(r.pod->deleting);
        CHECK(r.pod->node_name.empty());
    }
    SECTION("containers without image, and images that are not references, are skipped") {
        auto j = base;
        j["spec"]["containers"].push_back({{"name", "noimage"}});
        j["spec"]["containers"].push_back({{"name", "bad"}, {"image", "Bad/Upper\x01"}});
        j["spec"]["containers"].push_back({{"name", "empty"}, {"image", ""}});
        const auto r = parse_pod(j);
        REQUIRE(r.pod);
        CHECK(r.pod->references == std::vector<image_key>{{"docker.io", "library/nginx"}});
        CHECK(r.pod->invalid_images == std::vector<std::string>{"Bad/Upper?"});
    }

    struct bad_case {
        std::string scenario;
        json pod;
        std::string phrase;
    };
    auto with = [&](const json::json_pointer& at, json value) {
        auto j = base;
        j[at] = std::move(value);
        return j;
    };
    auto without = [&](const std::string& parent, const std::string& key) {
        auto j = base;
        j[parent].erase(key);
        return j;
    };
    const bad_case bad[] = {
        {"not an object", json::array(), "not a JSON object"},
        {"no metadata",
         [&] {
             auto j = base;
             j.erase("metadata");
             return j;
         }(),
         "metadata missing"},
        {"no namespace", without("metadata", "namespace"), "metadata.namespace missing"},
        {"namespace not a name", with("/metadata/namespace"_json_pointer, "Kube_System"), "metadata.namespace"},
        {"namespace not a string", with("/metadata/namespace"_json_pointer, 7), "metadata.namespace is not a string"},
        {"no name", without("metadata", "name"), "metadata.name missing"},
        {"no uid", without("metadata", "uid"), "metadata.uid missing for pod default/p"},
        {"uid with spaces", with("/metadata/uid"_json_pointer, "a b"), "metadata.uid"},
        {"ServiceAccount not a name", with("/spec/serviceAccountName"_json_pointer, "Not Valid"),
         "spec.serviceAccountName"},
        {"containers not a list", with("/spec/containers"_json_pointer, "nginx"), "spec.containers is not a list"},
        {"a container not an object", with("/spec/initContainers"_json_pointer, json::array({1})),
         "spec.initContainers[] is not an object"},
        {"image not a string", with("/spec/containers/0/image"_json_pointer, 5), "spec.containers[].image"},
        {"spec not an object", with("/spec"_json_pointer, 1), "spec is not an object"},
        {"phase not a phase", with("/status/phase"_json_pointer, "Run ning"), "status.phase"},
    };
    for (const auto& c : bad) {
        SECTION("bad: " + c.scenario) {
            const auto r = parse_pod(c.pod);
            CHECK_FALSE(r.pod);
            CHECK_THAT(r.error, Catch::Contains(c.phrase));
        }
    }
}

TEST_CASE("pod errors never echo the spec (an env value may be a secret)", "[routing][pod_scope]") {
    auto j = pod_json("default", "p", "u-1", {"nginx"});
    j["spec"]["containers"][0]["env"] = json::array({{{"name", "PASSWORD"}, {"value", "hunter2-secret"}}});
    j["spec"]["containers"][0]["image"] = json::object({{"hunter2-secret", 1}});
    const auto r = parse_pod(j);
    REQUIRE_FALSE(r.pod);
    CHECK(r.error.find("hunter2") == std::string::npos);
}

TEST_CASE("too many containers is an error, not unbounded work", "[routing][pod_scope]") {
    std::vector<std::string> images;
    for (std::size_t i = 0; i <= acp::routing::max_images_per_pod; ++i) {
        images.push_back("reg.example/app" + std::to_string(i));
    }
    const auto r = parse_pod(pod_json("default", "p", "u-1", images));
    CHECK_FALSE(r.pod);
    CHECK_THAT(r.error, Catch::Contains("more than 1024 containers"));
}

// ---- watch lines -------------------------------------------------------------------

TEST_CASE("watch lines: pod events, bookmarks and errors", "[routing][pod_scope][watch]") {
    const auto p = pod_json("default", "p", "u-1", {"nginx"});
    SECTION("ADDED / MODIFIED / DELETED carry the pod and its resourceVersion") {
        const std::pair<std::string, watch_event_type> types[] = {{"ADDED", watch_event_type::added},
                                                                  {"MODIFIED", watch_event_type::modified},
                                                                  {"DELETED", watch_event_type::deleted}};
        for (const auto& [name, type] : types) {
            const auto r = parse_watch_line(event(name, p) + "\r\n");
            INFO(name << ": " << r.error);
            REQUIRE(r.event);
            CHECK(r.event->type == type);
            REQUIRE(r.event->pod);
            CHECK(r.event->pod->uid == "u-1");
            CHECK(r.event->resource_version == "100");
            CHECK_FALSE(r.event->needs_relist());
        }
    }
    SECTION("BOOKMARK carries only a resourceVersion") {
        const auto r =
            parse_watch_line(event("BOOKMARK", {{"kind", "Pod"}, {"metadata", {{"resourceVersion", "12345"}}}}));
        REQUIRE(r.event);
        CHECK(r.event->type == watch_event_type::bookmark);
        CHECK_FALSE(r.event->pod);
        CHECK(r.event->resource_version == "12345");
    }
    SECTION("ERROR 410 Gone: list again") {
        const auto r = parse_watch_line(event("ERROR", {{"kind", "Status"},
                                                        {"status", "Failure"},
                                                        {"message", "too old resource version: 1 (200)"},
                                                        {"reason", "Expired"},
                                                        {"code", 410}}));
        REQUIRE(r.event);
        CHECK(r.event->type == watch_event_type::error);
        CHECK(r.event->error_code == 410);
        CHECK(r.event->error_reason == "Expired");
        CHECK(r.event->error_message == "too old resource version: 1 (200)");
        CHECK(r.event->needs_relist());
    }
    SECTION("ERROR 500: reconnect, no re-list; message control bytes replaced") {
        const auto r =
            parse_watch_line(event("ERROR", {{"kind", "Status"}, {"message", "boom\nX-Injected: 1"}, {"code", 500}}));
        REQUIRE(r.event);
        CHECK(r.event->error_code == 500);
        CHECK_FALSE(r.event->needs_relist());
        CHECK(r.event->error_message == "boom?X-Injected: 1");
    }

    struct bad_case {
        std::string scenario;
        std::string line;
        std::string phrase;
    };
    const bad_case bad[] = {
        {"empty", "  \r\n", "empty"},
        {"garbage", "HTTP/1.1 500 oops", "not valid JSON"},
        {"truncated", event("ADDED", p).substr(0, 40), "not valid JSON"},
        {"an array", "[1,2]", "not a JSON object"},
        {"no type", json{{"object", p}}.dump(), "no type"},
        {"type not a string", json{{"type", 1}, {"object", p}}.dump(), "no type"},
        {"unknown type", event("RENAMED", p), "unknown watch event type 'RENAMED'"},
        {"no object", json{{"type", "ADDED"}}.dump(), "no object"},
        {"object not an object", json{{"type", "ADDED"}, {"object", "pod"}}.dump(), "no object"},
        {"a pod without uid",
         event("ADDED",
               [&] {
                   auto j = p;
                   j["metadata"].erase("uid");
                   return j;
               }()),
         "ADDED event: metadata.uid missing"},
        {"BOOKMARK without resourceVersion", event("BOOKMARK", {{"metadata", json::object()}}), "BOOKMARK"},
        {"ERROR code not a number", event("ERROR", {{"code", "410"}}), "code is not an integer"},
        {"ERROR code out of range", event("ERROR", {{"code", 1LL << 40}}), "code out of range"},
        {"oversize",
         "{\"type\":\"ADDED\",\"object\":{\"x\":\"" + std::string(acp::routing::max_watch_line_bytes, 'a') + "\"}}",
         "larger than"},
        {"deep nesting", std::string(100000, '[') + std::string(100000, ']'), "nests deeper"},
    };
    for (const auto& c : bad) {
        SECTION("bad: " + c.scenario) {
            const auto r = parse_watch_line(c.line);
            CHECK_FALSE(r.event);
            CHECK_THAT(r.error, Catch::Contains(c.phrase));
            CHECK(r.error.size() <= acp::routing::max_error_length);
            CHECK(r.error.find('\n') == std::string::npos);
        }
    }
}

// ---- List answers ------------------------------------------------------------------

TEST_CASE("pod lists: items and the resourceVersion the watch starts from", "[routing][pod_scope][list]") {
    json list = {{"kind", "PodList"},
                 {"apiVersion", "v1"},
                 {"metadata", {{"resourceVersion", "777"}}},
                 {"items", json::array({pod_json("default", "a", "u-a", {"nginx"}),
                                        pod_json("team-a", "b", "u-b", {"reg.example/x"}, "builder")})}};
    SECTION("every usable item") {
        const auto r = parse_pod_list(list.dump());
        INFO(r.error);
        REQUIRE(r.list);
        CHECK(r.list->resource_version == "777");
        REQUIRE(r.list->pods.size() == 2);
        CHECK(r.list->pods[1].id() == "team-a/b");
        CHECK(r.list->skipped_count == 0);
    }
    SECTION("an unusable item is skipped and counted") {
        list["items"].push_back({{"metadata", {{"namespace", "default"}, {"name", "nouid"}}}});
        const auto r = parse_pod_list(list.dump());
        REQUIRE(r.list);
        CHECK(r.list->pods.size() == 2);
        CHECK(r.list->skipped_count == 1);
        REQUIRE(r.list->skipped.size() == 1);
        CHECK_THAT(r.list->skipped[0], Catch::Contains("metadata.uid missing for pod default/nouid"));
    }
    SECTION("an empty node: items [] or null") {
        list["items"] = json::array();
        CHECK(parse_pod_list(list.dump()).list->pods.empty());
        list["items"] = nullptr;
        CHECK(parse_pod_list(list.dump()).list->pods.empty());
    }
    struct bad_case {
        std::string scenario;
        std::string body;
        std::string phrase;
    };
    const bad_case bad[] = {
        {"a Status instead of a list", json{{"kind", "Status"}, {"code", 403}, {"message", "pods is forbidden"}}.dump(),
         "kind is 'Status'"},
        {"no resourceVersion", json{{"kind", "PodList"}, {"items", json::array()}}.dump(), "resourceVersion"},
        {"items not a list", json{{"metadata", {{"resourceVersion", "1"}}}, {"items", 1}}.dump(),
         "items is not a list"},
        {"garbage", "<html>", "not valid JSON"},
        {"oversize", std::string(acp::routing::max_pod_list_bytes + 1, ' '), "larger than"},
    };
    for (const auto& c : bad) {
        SECTION("bad: " + c.scenario) {
            const auto r = parse_pod_list(c.body);
            CHECK_FALSE(r.list);
            CHECK_THAT(r.error, Catch::Contains(c.phrase));
        }
    }
}

// ---- the rule and the index ----------------------------------------------------------

TEST_CASE("scope rules from the config: all, *, lists, and how they are described", "[routing][pod_scope]") {
    const auto defaults = rule({"default"}, {"default"});
    CHECK(defaults.enabled);
    CHECK(defaults.describe_namespaces() == "watch-namespace: default");
    CHECK(defaults.describe_service_accounts() == "service-account: default");
    const auto all = rule({"*"}, {"*"});
    CHECK(all.all_namespaces);
    CHECK(all.all_service_accounts);
    CHECK(all.describe_namespaces() == "watch-namespace: all");
    CHECK(all.describe_service_accounts() == "service-account: *");
    CHECK(rule({"a", "b"}, {"x"}).describe_namespaces() == "watch-namespace: a,b");
    CHECK(rule({"a", "b", "c", "d", "e", "f", "g"}, {"x"}).describe_namespaces() ==
          "watch-namespace: a,b,c,d,e,f,... (7 names)");
    CHECK_FALSE(scope_rule::from(acp::config::scope_config{}).enabled);
}

TEST_CASE("index decisions for every rule combination", "[routing][pod_scope][index]") {
    // The pods on this node.
    const std::vector<pod_info> pods = {
        pod("default", "web", "u1", {"reg.example/team/web"}),                                // default/default
        pod("kube-system", "dns", "u2", {"reg.example/sys/dns"}),                             // other namespace
        pod("default", "ci", "u3", {"reg.example/team/ci"}, "builder"),                       // other SA
        pod("team-a", "job", "u4", {"reg.example/team/job"}, "builder"),                      // both other
        pod("default", "web2", "u5", {"reg.example/shared/base"}),                            // shared, in scope
        pod("kube-system", "x", "u6", {"reg.example/shared/base", "reg.example/sys/mixed"}),  // shared
        pod("team-a", "mixed", "u7", {"reg.example/sys/mixed"}, "default"),                   // other namespace
        pod("default", "mixed2", "u8", {"reg.example/sys/mixed"}, "robot"),                   // other SA
    };
    using v = scope_verdict;
    struct row {
        std::string scenario;
        scope_rule r;
        v web, dns, ci, job, base, mixed, none;
    };
    const row rows[] = {
        {"add-on defaults (default / default)", rule({"default"}, {"default"}), v::allowed, v::denied, v::denied,
         v::denied, v::allowed, v::denied, v::unknown},
        {"all namespaces, default ServiceAccount", rule({"*"}, {"default"}), v::allowed, v::allowed, v::denied,
         v::denied, v::allowed, v::allowed, v::unknown},
        {"default namespace, every ServiceAccount", rule({"default"}, {"*"}), v::allowed, v::denied, v::allowed,
         v::denied, v::allowed, v::allowed, v::unknown},
        {"all and *", rule({"*"}, {"*"}), v::allowed, v::allowed, v::allowed, v::allowed, v::allowed, v::allowed,
         v::unknown},
        {"lists", rule({"team-a", "kube-system"}, {"builder"}), v::denied, v::denied, v::denied, v::allowed, v::denied,
         v::denied, v::unknown},
        {"scope disabled", scope_rule{}, v::allowed, v::allowed, v::allowed, v::allowed, v::allowed, v::allowed,
         v::allowed},
    };
    for (const auto& r : rows) {
        SECTION(r.scenario) {
            pod_index index(r.r);
            index.replace_all(pods);
            CHECK(index.pods_indexed() == pods.size());
            const std::pair<std::string, v> want[] = {
                {"team/web", r.web},     {"sys/dns", r.dns},     {"team/ci", r.ci},   {"team/job", r.job},
                {"shared/base", r.base}, {"sys/mixed", r.mixed}, {"no/such", r.none},
            };
            for (const auto& [repo, verdict] : want) {
                const auto d = index.decide("reg.example", repo);
                INFO(repo << ": " << d.reason);
                CHECK(d.verdict == verdict);
                CHECK_FALSE(d.reason.empty());
            }
            CHECK(index.decide("other.example", "team/web").verdict == (r.r.enabled ? v::unknown : v::allowed));
        }
    }
}

TEST_CASE("decision reasons name the rule that excluded the pods", "[routing][pod_scope][index]") {
    pod_index index(rule({"default"}, {"default"}));
    index.replace_all({
        pod("kube-system", "dns", "u1", {"reg.example/sys/dns"}),
        pod("default", "ci", "u2", {"reg.example/team/ci"}, "builder"),
        pod("team-a", "a", "u3", {"reg.example/sys/mixed"}),
        pod("default", "b", "u4", {"reg.example/sys/mixed"}, "robot"),
        pod("default", "web", "u5", {"nginx"}),
    });
    CHECK(index.decide("reg.example", "sys/dns").reason ==
          "reg.example/sys/dns: referenced only by pods in namespace kube-system (watch-namespace: default)");
    CHECK(index.decide("reg.example", "team/ci").reason ==
          "reg.example/team/ci: referenced only by pods whose ServiceAccount default/builder is not in "
          "service-account: default");
    CHECK(index.decide("reg.example", "sys/mixed").reason ==
          "reg.example/sys/mixed: referenced only by out-of-scope pods: namespace team-a (watch-namespace: "
          "default); ServiceAccount default/robot not in service-account: default");
    CHECK(index.decide("docker.io", "library/nginx").reason ==
          "referenced by pod default/web (ServiceAccount default)");
    CHECK(index.decide("reg.example", "new/app").reason == "no pod on this node references reg.example/new/app (yet)");

    SECTION("many excluded namespaces: three named, then a count") {
        pod_index many(rule({"default"}, {"default"}));
        for (int i = 0; i < 10; ++i) {
            many.upsert(pod("ns-" + std::to_string(i), "p", "uid-" + std::to_string(i), {"reg.example/x"}));
        }
        CHECK(many.decide("reg.example", "x").reason ==
              "reg.example/x: referenced only by pods in namespace ns-0, ns-1, ns-2 and 7 more (watch-namespace: "
              "default)");
    }
}

TEST_CASE("index upkeep: upsert, change, delete, counts", "[routing][pod_scope][index]") {
    pod_index index(rule({"default"}, {"default"}));
    CHECK(index.pods_indexed() == 0);
    CHECK(index.references_indexed() == 0);

    CHECK(index.upsert(pod("default", "web", "u1", {"reg.example/a", "reg.example/b"})));
    CHECK(index.upsert(pod("kube-system", "dns", "u2", {"reg.example/c"})));
    CHECK(index.pods_indexed() == 2);
    CHECK(index.references_indexed() == 2);  // c is referenced only out of scope
    CHECK(index.decide("reg.example", "a").verdict == scope_verdict::allowed);

    SECTION("the same pod again changes nothing") {
        CHECK_FALSE(index.upsert(pod("default", "web", "u1", {"reg.example/a", "reg.example/b"})));
    }
    SECTION("a status-only update is stored but needs no new snapshot") {
        auto running = pod("default", "web", "u1", {"reg.example/b", "reg.example/a"});
        running.phase = "Running";
        running.resource_version = "200";
        CHECK_FALSE(index.upsert(running));
        CHECK(index.find("u1")->phase == "Running");
        CHECK(index.decide("reg.example", "a").verdict == scope_verdict::allowed);
    }
    SECTION("a MODIFIED pod replaces its references") {
        CHECK(index.upsert(pod("default", "web", "u1", {"reg.example/d"})));
        CHECK(index.decide("reg.example", "a").verdict == scope_verdict::unknown);
        CHECK(index.decide("reg.example", "d").verdict == scope_verdict::allowed);
        CHECK(index.pods_indexed() == 2);
        CHECK(index.references_indexed() == 1);
    }
    SECTION("a pod that moves out of scope (new ServiceAccount) is denied") {
        CHECK(index.upsert(pod("default", "web", "u1", {"reg.example/a"}, "robot")));
        CHECK(index.decide("reg.example", "a").verdict == scope_verdict::denied);
    }
    SECTION("a DELETED pod's references go; the other pod's stay") {
        CHECK(index.remove("u1"));
        CHECK_FALSE(index.remove("u1"));
        CHECK(index.find("u1") == nullptr);
        CHECK(index.decide("reg.example", "a").verdict == scope_verdict::unknown);
        CHECK(index.decide("reg.example", "c").verdict == scope_verdict::denied);
        CHECK(index.pods_indexed() == 1);
        CHECK(index.references_indexed() == 0);
    }
    SECTION("two pods share a reference: deleting one keeps it") {
        CHECK(index.upsert(pod("default", "web2", "u3", {"reg.example/a"})));
        CHECK(index.remove("u1"));
        const auto d = index.decide("reg.example", "a");
        CHECK(d.verdict == scope_verdict::allowed);
        CHECK(d.reason == "referenced by pod default/web2 (ServiceAccount default)");
        const auto who = index.pods_referencing("reg.example", "a");
        REQUIRE(who.size() == 1);
        CHECK(who[0]->uid == "u3");
    }
    SECTION("a reloaded rule applies to the pods already indexed") {
        index.set_rule(rule({"*"}, {"default"}));
        CHECK(index.decide("reg.example", "c").verdict == scope_verdict::allowed);
        CHECK(index.references_indexed() == 3);
        index.set_rule(rule({"team-x"}, {"default"}));
        CHECK(index.decide("reg.example", "a").verdict == scope_verdict::denied);
        CHECK(index.references_indexed() == 0);
        CHECK(index.pods_indexed() == 2);
    }
    SECTION("a re-list replaces everything") {
        index.replace_all({pod("default", "new", "u9", {"reg.example/z"})});
        CHECK(index.pods_indexed() == 1);
        CHECK(index.decide("reg.example", "a").verdict == scope_verdict::unknown);
        CHECK(index.decide("reg.example", "z").verdict == scope_verdict::allowed);
    }
}

TEST_CASE("the holder publishes immutable snapshots", "[routing][pod_scope][index]") {
    pod_index_holder holder(rule({"default"}, {"default"}));
    const auto empty = holder.load();
    REQUIRE(empty);
    CHECK(empty->pods_indexed() == 0);
    // Before the first list nothing is allowed by accident: every pull waits for its pod.
    CHECK(empty->decide("reg.example", "a").verdict == scope_verdict::unknown);
    CHECK(holder.generation() == 0);

    pod_index builder(rule({"default"}, {"default"}));
    builder.upsert(pod("default", "web", "u1", {"reg.example/a"}));
    holder.store(std::make_shared<const pod_index>(builder));
    CHECK(holder.generation() == 1);
    const auto first = holder.load();

    builder.remove("u1");  // the control thread keeps mutating its own copy
    CHECK(first->decide("reg.example", "a").verdict == scope_verdict::allowed);
    holder.store(std::make_shared<const pod_index>(builder));
    CHECK(holder.load()->decide("reg.example", "a").verdict == scope_verdict::unknown);
    CHECK(first->decide("reg.example", "a").verdict == scope_verdict::allowed);  // a reader's snapshot is stable
}

TEST_CASE("a pod from JSON text: bounded and checked like a watch line", "[routing][pod_scope]") {
    const auto ok = acp::routing::parse_pod_text(pod_json("default", "p", "u-1", {"nginx"}).dump());
    REQUIRE(ok.pod);
    CHECK(ok.pod->references == std::vector<image_key>{{"docker.io", "library/nginx"}});
    CHECK_THAT(acp::routing::parse_pod_text("{\"metadata\":").error, Catch::Contains("not valid JSON"));
    CHECK_THAT(acp::routing::parse_pod_text(std::string(acp::routing::max_watch_line_bytes + 1, ' ')).error,
               Catch::Contains("larger than"));
    CHECK_THAT(acp::routing::parse_pod_text(std::string(65, '[')).error, Catch::Contains("nests deeper than 64"));
}
