// decide_scope: the data path's wait for a pod's watch event (issue 10), on a
// real io_context with the watcher's side played by a timer that publishes a
// new index and posts notify(), as serve() wires it.
#include "proxy/scope_gate.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <optional>

using namespace acp;
using namespace std::chrono_literals;
namespace net = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {

routing::scope_rule default_rule() {
    config::scope_config c;
    c.enabled = true;  // namespace default, ServiceAccount default
    return routing::scope_rule::from(c);
}

routing::pod_info pod(const std::string& ns, const std::string& name, const std::string& sa, const std::string& image) {
    auto text = R"({"metadata":{"namespace":")" + ns + R"(","name":")" + name + R"(","uid":"uid-)" + ns + name +
                R"("},"spec":{"nodeName":"n1","serviceAccountName":")" + sa +
                R"(","containers":[{"name":"c","image":")" + image + R"("}]}})";
    auto r = routing::parse_pod_text(text);
    REQUIRE(r.pod);
    return *r.pod;
}

struct outcome {
    std::optional<routing::scope_decision> decision;
    clock_type::duration took{};
};

// Runs decide_scope for reg.example/team/app; `during` runs on the io_context while it waits.
outcome run_decide(routing::pod_index_holder& holder, clock_type::duration wait,
                   const std::function<void(net::io_context&, proxy::scope_signal&, proxy::scope_wait&)>& during) {
    net::io_context ioc;
    proxy::scope_signal signal;
    proxy::scope_wait w;
    outcome out;
    const auto start = clock_type::now();
    auto task = [&]() -> net::awaitable<void> {
        out.decision = co_await proxy::decide_scope(holder, signal, "reg.example", "team/app", wait, w);
        out.took = clock_type::now() - start;
    };
    net::co_spawn(ioc, task(), net::detached);
    during(ioc, signal, w);
    ioc.run();
    CHECK(signal.waiting() == 0);
    return out;
}

// After `delay`, the "watcher" publishes `p` and posts notify() (as serve() does).
void publish_later(net::io_context& ioc, routing::pod_index_holder& holder, proxy::scope_signal& signal,
                   routing::pod_info p, clock_type::duration delay) {
    auto t = std::make_shared<net::steady_timer>(ioc, delay);
    t->async_wait([t, &holder, &signal, &ioc, p](const boost::system::error_code&) {
        routing::pod_index next(default_rule());
        next.upsert(p);
        holder.store(std::make_shared<const routing::pod_index>(next));
        net::post(ioc, [&signal] { signal.notify(); });
    });
}

}  // namespace

TEST_CASE("a referenced repository is decided at once, without waiting", "[proxy][scope]") {
    routing::pod_index index(default_rule());
    index.upsert(pod("default", "web", "default", "reg.example/team/app:v1"));
    routing::pod_index_holder holder(default_rule());
    holder.store(std::make_shared<const routing::pod_index>(index));
    const auto out = run_decide(holder, 5s, [](auto&, auto&, auto&) {});
    REQUIRE(out.decision);
    CHECK(out.decision->verdict == routing::scope_verdict::allowed);
    CHECK(out.took < 1s);
}

TEST_CASE("an out-of-scope reference is denied at once, naming the rule", "[proxy][scope]") {
    routing::pod_index index(default_rule());
    index.upsert(pod("other", "web", "default", "reg.example/team/app:v1"));
    routing::pod_index_holder holder(default_rule());
    holder.store(std::make_shared<const routing::pod_index>(index));
    const auto out = run_decide(holder, 5s, [](auto&, auto&, auto&) {});
    REQUIRE(out.decision);
    CHECK(out.decision->verdict == routing::scope_verdict::denied);
    CHECK_THAT(out.decision->reason, Catch::Contains("watch-namespace: default"));
    CHECK(out.took < 1s);
}

TEST_CASE("an unreferenced repository waits for the pod's event and is then allowed", "[proxy][scope]") {
    routing::pod_index_holder holder(default_rule());
    const auto out = run_decide(holder, 5s, [&](net::io_context& ioc, proxy::scope_signal& signal, auto&) {
        // An unrelated pod first: the request re-decides and keeps waiting.
        publish_later(ioc, holder, signal, pod("default", "db", "default", "reg.example/team/db:v1"), 100ms);
        publish_later(ioc, holder, signal, pod("default", "web", "default", "reg.example/team/app:v1"), 300ms);
    });
    REQUIRE(out.decision);
    CHECK(out.decision->verdict == routing::scope_verdict::allowed);
    CHECK(out.took >= 300ms);
    CHECK(out.took < 3s);
}

TEST_CASE("a pod that arrives out of scope while waiting is denied at once", "[proxy][scope]") {
    routing::pod_index_holder holder(default_rule());
    const auto out = run_decide(holder, 5s, [&](net::io_context& ioc, proxy::scope_signal& signal, auto&) {
        publish_later(ioc, holder, signal, pod("default", "web", "builder", "reg.example/team/app:v1"), 100ms);
    });
    REQUIRE(out.decision);
    CHECK(out.decision->verdict == routing::scope_verdict::denied);
    CHECK_THAT(out.decision->reason, Catch::Contains("service-account: default"));
    CHECK(out.took < 3s);
}

TEST_CASE("without a referencing pod the wait ends at waitForPod, still unknown", "[proxy][scope]") {
    routing::pod_index_holder holder(default_rule());
    const auto out = run_decide(holder, 250ms, [](auto&, auto&, auto&) {});
    REQUIRE(out.decision);
    CHECK(out.decision->verdict == routing::scope_verdict::unknown);
    CHECK(out.took >= 250ms);
    CHECK(out.took < 3s);
}

TEST_CASE("stopping the session ends the wait at once", "[proxy][scope]") {
    routing::pod_index_holder holder(default_rule());
    const auto out = run_decide(holder, 20s, [&](net::io_context& ioc, auto&, proxy::scope_wait& w) {
        auto t = std::make_shared<net::steady_timer>(ioc, 100ms);
        t->async_wait([t, &w](const boost::system::error_code&) { w.cancel(); });
    });
    REQUIRE(out.decision);
    CHECK(out.decision->verdict == routing::scope_verdict::unknown);
    CHECK(out.took < 5s);
}
