#include "routing/pod_watch.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

using namespace std::chrono_literals;
using acp::routing::parse_pod_list;
using acp::routing::parse_watch_line;
using acp::routing::pod_list_target;
using acp::routing::pod_watch_state;
using acp::routing::pod_watch_target;
using acp::routing::scope_rule;
using acp::routing::scope_verdict;
using acp::routing::watch_action;
using acp::routing::watch_event;
using acp::routing::watch_line_splitter;
using json = nlohmann::json;

namespace {

json pod_json(const std::string& ns, const std::string& name, const std::string& uid, const std::string& image,
              const std::string& rv, const std::string& node = "node-1") {
    return {{"metadata", {{"namespace", ns}, {"name", name}, {"uid", uid}, {"resourceVersion", rv}}},
            {"spec", {{"nodeName", node}, {"containers", json::array({{{"name", "c"}, {"image", image}}})}}}};
}

watch_event event(const std::string& type, const json& object) {
    const auto r = parse_watch_line(json{{"type", type}, {"object", object}}.dump());
    INFO(r.error);
    REQUIRE(r.event);
    return *r.event;
}

scope_rule defaults() {
    acp::config::scope_config c;
    c.enabled = true;
    return scope_rule::from(c);
}

}  // namespace

TEST_CASE("API server targets: this node's pods, list then watch with bookmarks", "[routing][pod_watch]") {
    // The first list may come from the API server's watch cache (resourceVersion=0); a re-list after
    // 410 Gone is a consistent read (no resourceVersion), so the index never goes back in time.
    CHECK(pod_list_target("node-1.cn-hangzhou.internal") ==
          "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1.cn-hangzhou.internal&resourceVersion=0");
    CHECK(pod_list_target("node-1", "") == "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1");
    CHECK(pod_watch_target("node-1", "12345", 300s) ==
          "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&watch=1&allowWatchBookmarks=true&resourceVersion=12345"
          "&timeoutSeconds=300");
    SECTION("an opaque resourceVersion is percent-encoded; the timeout is at least 1 s") {
        CHECK(pod_watch_target("n", "a b&c=d/", 0s) ==
              "/api/v1/pods?fieldSelector=spec.nodeName%3Dn&watch=1&allowWatchBookmarks=true&resourceVersion="
              "a%20b%26c%3Dd%2F&timeoutSeconds=1");
    }
}

TEST_CASE("the watch stream splits into lines whatever the chunking", "[routing][pod_watch]") {
    const std::string stream = "{\"a\":1}\n{\"b\":2}\r\n\n{\"c\":3}\n";
    const std::vector<std::string> want = {"{\"a\":1}", "{\"b\":2}\r", "{\"c\":3}"};
    for (std::size_t chunk : {std::size_t{1}, std::size_t{2}, std::size_t{5}, std::size_t{7}, stream.size()}) {
        SECTION("chunks of " + std::to_string(chunk)) {
            watch_line_splitter s;
            std::vector<std::string> got;
            for (std::size_t i = 0; i < stream.size(); i += chunk) {
                for (auto& l : s.feed(std::string_view(stream).substr(i, chunk))) {
                    got.push_back(std::move(l));
                }
            }
            CHECK(got == want);
            CHECK(s.buffered() == 0);
            CHECK_FALSE(s.overflowed());
        }
    }
    SECTION("an incomplete line is held back") {
        watch_line_splitter s;
        CHECK(s.feed("{\"a\":").empty());
        CHECK(s.buffered() == 5);
        CHECK(s.feed("1}\n{") == std::vector<std::string>{"{\"a\":1}"});
        CHECK(s.buffered() == 1);
    }
    SECTION("a line over the limit poisons the splitter, however it arrives") {
        watch_line_splitter s(8);
        CHECK(s.feed("12345678\n") == std::vector<std::string>{"12345678"});
        CHECK(s.feed("12345").empty());
        CHECK(s.feed("6789").empty());
        CHECK(s.overflowed());
        CHECK(s.buffered() == 0);
        CHECK(s.feed("\nok\n").empty());
    }
}

TEST_CASE("events drive the index: list, add, modify, delete, bookmark, 410, errors", "[routing][pod_watch]") {
    pod_watch_state state(defaults(), "node-1");
    CHECK(state.resource_version().empty());

    const auto list = parse_pod_list(
        json{{"kind", "PodList"},
             {"metadata", {{"resourceVersion", "100"}}},
             {"items", json::array({pod_json("default", "a", "u-a", "reg.example/a", "90"),
                                    pod_json("default", "elsewhere", "u-x", "reg.example/x", "91", "node-2")})}}
            .dump());
    REQUIRE(list.list);
    state.reset(*list.list);
    CHECK(state.resource_version() == "100");
    CHECK(state.index().pods_indexed() == 1);  // the pod of node-2 is not ours
    CHECK(state.index().decide("reg.example", "a").verdict == scope_verdict::allowed);
    CHECK(state.index().decide("reg.example", "x").verdict == scope_verdict::unknown);

    const auto b = pod_json("default", "b", "u-b", "reg.example/b", "101");
    CHECK(state.apply(event("ADDED", b)) == watch_action::index_changed);
    CHECK(state.resource_version() == "101");
    CHECK(state.index().decide("reg.example", "b").verdict == scope_verdict::allowed);

    SECTION("a status-only MODIFIED needs no new snapshot; the resourceVersion and phase still move") {
        auto running = b;
        running["metadata"]["resourceVersion"] = "102";
        running["status"] = {{"phase", "Running"}};
        CHECK(state.apply(event("MODIFIED", running)) == watch_action::none);
        CHECK(state.resource_version() == "102");
        CHECK(state.index().find("u-b")->phase == "Running");
    }
    SECTION("MODIFIED into another namespace's rule: denied from then on") {
        auto moved = b;
        moved["metadata"]["resourceVersion"] = "102";
        moved["spec"]["serviceAccountName"] = "robot";
        CHECK(state.apply(event("MODIFIED", moved)) == watch_action::index_changed);
        CHECK(state.index().decide("reg.example", "b").verdict == scope_verdict::denied);
    }
    SECTION("DELETED removes it; a second DELETED changes nothing") {
        auto gone = b;
        gone["metadata"]["resourceVersion"] = "103";
        CHECK(state.apply(event("DELETED", gone)) == watch_action::index_changed);
        CHECK(state.resource_version() == "103");
        CHECK(state.index().decide("reg.example", "b").verdict == scope_verdict::unknown);
        CHECK(state.apply(event("DELETED", gone)) == watch_action::none);
    }
    SECTION("a pod reported on another node is dropped") {
        auto other = b;
        other["spec"]["nodeName"] = "node-2";
        CHECK(state.apply(event("MODIFIED", other)) == watch_action::index_changed);
        CHECK(state.index().find("u-b") == nullptr);
    }
    SECTION("BOOKMARK moves the resourceVersion only") {
        CHECK(state.apply(event("BOOKMARK", {{"metadata", {{"resourceVersion", "500"}}}})) == watch_action::none);
        CHECK(state.resource_version() == "500");
        CHECK(state.index().pods_indexed() == 2);
    }
    SECTION("ERROR 410: re-list from scratch (the index stays until the new list replaces it)") {
        CHECK(state.apply(event("ERROR", {{"kind", "Status"}, {"code", 410}, {"reason", "Expired"}})) ==
              watch_action::relist);
        CHECK(state.resource_version().empty());
        CHECK(state.index().pods_indexed() == 2);
    }
    SECTION("another ERROR: reconnect from the same resourceVersion") {
        CHECK(state.apply(event("ERROR", {{"kind", "Status"}, {"code", 500}})) == watch_action::reconnect);
        CHECK(state.resource_version() == "101");
    }
    SECTION("snapshots are independent of later events") {
        const auto snap = state.snapshot();
        auto gone = b;
        CHECK(state.apply(event("DELETED", gone)) == watch_action::index_changed);
        CHECK(snap->decide("reg.example", "b").verdict == scope_verdict::allowed);
    }
}
