#include "tokens/token_cache.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include <optional>

namespace asio = boost::asio;
using namespace acp::tokens;
using namespace std::chrono_literals;

namespace {

// A controllable clock: tests move time by hand.
struct fake_clock {
    std::chrono::steady_clock::time_point t = std::chrono::steady_clock::time_point{} + 1h;
    token_cache::clock_fn fn() {
        return [this] {
            return t;
        };
    }
};

// A fetch that takes `latency` of real (timer) time and counts its calls.
struct counting_fetcher {
    int calls = 0;
    std::chrono::milliseconds latency{20};
    std::chrono::seconds lifetime{300};
    std::optional<token_failure> fail;

    fetch_fn fn(asio::io_context& io) {
        return [this, &io]() -> asio::awaitable<fetch_result> {
            const int n = ++calls;
            asio::steady_timer t(io, latency);
            co_await t.async_wait(asio::use_awaitable);
            if (fail) {
                co_return *fail;
            }
            co_return registry_token{acp::config::secret("token-" + std::to_string(n)), lifetime};
        };
    }
};

std::string value_of(const token_result& r) {
    if (const auto* s = std::get_if<acp::config::secret>(&r)) {
        return s->reveal();
    }
    return "failure:" + std::get<token_failure>(r).detail;
}

template <class F>
void spawn(asio::io_context& io, F f) {
    asio::co_spawn(io, std::move(f), [](const std::exception_ptr& ep) {
        if (ep) {
            std::rethrow_exception(ep);
        }
    });
}

}  // namespace

TEST_CASE("cold scope: 500 concurrent gets make one token fetch", "[tokens][cache]") {
    asio::io_context io;
    token_cache cache;
    counting_fetcher f;
    std::vector<std::string> got;
    for (int i = 0; i < 500; ++i) {
        spawn(io,
              [&]() -> asio::awaitable<void> { got.push_back(value_of(co_await cache.get("reg/a:pull", f.fn(io)))); });
    }
    io.run();
    CHECK(f.calls == 1);
    REQUIRE(got.size() == 500);
    CHECK(std::all_of(got.begin(), got.end(), [](const auto& v) { return v == "token-1"; }));
    CHECK(cache.counters().fetches == 1);
}

TEST_CASE("different keys fetch separately; a warm key is served without a fetch", "[tokens][cache]") {
    asio::io_context io;
    token_cache cache;
    counting_fetcher f;
    std::vector<std::string> got;
    spawn(io, [&]() -> asio::awaitable<void> {
        got.push_back(value_of(co_await cache.get("reg/a:pull", f.fn(io))));
        got.push_back(value_of(co_await cache.get("reg/b:pull", f.fn(io))));
        got.push_back(value_of(co_await cache.get("reg/a:pull", f.fn(io))));
    });
    io.run();
    CHECK(got == std::vector<std::string>{"token-1", "token-2", "token-1"});
    CHECK(f.calls == 2);
    CHECK(cache.counters().hits == 1);
}

TEST_CASE("expired tokens are fetched again; near expiry refreshes in the background", "[tokens][cache]") {
    asio::io_context io;
    fake_clock clock;
    token_cache::options opts;
    opts.safety_margin = 5s;
    opts.refresh_fraction = 0.25;
    token_cache cache(opts, clock.fn());
    counting_fetcher f;
    f.lifetime = 105s;  // usable 100 s; refresh from 75 s on
    auto get = [&](std::chrono::seconds advance) {
        clock.t += advance;
        std::string v;
        spawn(io, [&]() -> asio::awaitable<void> { v = value_of(co_await cache.get("k", f.fn(io))); });
        io.restart();
        io.run();
        return v;
    };
    CHECK(get(0s) == "token-1");
    CHECK(get(50s) == "token-1");  // fresh: no fetch
    CHECK(f.calls == 1);
    CHECK(get(30s) == "token-1");  // at 80 s: served, and a refresh ran in the background
    CHECK(f.calls == 2);
    CHECK(cache.counters().background_refreshes == 1);
    CHECK(get(1s) == "token-2");
    CHECK(get(200s) == "token-3");  // long past expiry: a blocking fetch
}

TEST_CASE("a failed fetch reaches every waiter and is remembered briefly", "[tokens][cache]") {
    asio::io_context io;
    fake_clock clock;
    token_cache::options opts;
    opts.negative_ttl = 1000ms;
    token_cache cache(opts, clock.fn());
    counting_fetcher f;
    f.fail = token_failure{token_failure::kind::realm_timeout, "realm auth.example timed out"};
    std::vector<std::string> got;
    for (int i = 0; i < 10; ++i) {
        spawn(io, [&]() -> asio::awaitable<void> { got.push_back(value_of(co_await cache.get("k", f.fn(io)))); });
    }
    io.run();
    CHECK(f.calls == 1);
    CHECK(got == std::vector<std::string>(10, "failure:realm auth.example timed out"));

    io.restart();
    spawn(io, [&]() -> asio::awaitable<void> { got.push_back(value_of(co_await cache.get("k", f.fn(io)))); });
    io.run();
    CHECK(f.calls == 1);  // inside the negative TTL

    clock.t += 2s;
    f.fail.reset();
    io.restart();
    spawn(io, [&]() -> asio::awaitable<void> { got.push_back(value_of(co_await cache.get("k", f.fn(io)))); });
    io.run();
    CHECK(f.calls == 2);
    CHECK(got.back() == "token-2");
}

TEST_CASE("a cancelled waiter leaves; the fetch still serves the others", "[tokens][cache]") {
    asio::io_context io;
    token_cache cache;
    counting_fetcher f;
    f.latency = 50ms;
    asio::cancellation_signal cancel_first;
    std::optional<token_failure::kind> first;
    std::string second;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            const auto r = co_await cache.get("k", f.fn(io));
            first = std::holds_alternative<token_failure>(r) ? std::get<token_failure>(r).what
                                                             : token_failure::kind::realm_bad_response;
        },
        asio::bind_cancellation_slot(cancel_first.slot(), asio::detached));
    spawn(io, [&]() -> asio::awaitable<void> { second = value_of(co_await cache.get("k", f.fn(io))); });
    asio::steady_timer t(io, 10ms);
    t.async_wait([&](boost::system::error_code) { cancel_first.emit(asio::cancellation_type::terminal); });
    io.run();
    REQUIRE(first.has_value());
    CHECK(*first == token_failure::kind::cancelled);
    CHECK(second == "token-1");
    CHECK(f.calls == 1);
}

TEST_CASE("shutdown wakes waiters and refuses new gets", "[tokens][cache]") {
    asio::io_context io;
    token_cache cache;
    counting_fetcher f;
    f.latency = 10s;  // would outlive the test; shutdown must end it
    std::vector<token_failure::kind> kinds;
    for (int i = 0; i < 3; ++i) {
        spawn(io, [&]() -> asio::awaitable<void> {
            const auto r = co_await cache.get("k", f.fn(io));
            kinds.push_back(std::get<token_failure>(r).what);
        });
    }
    asio::steady_timer t(io, 10ms);
    t.async_wait([&](boost::system::error_code) { cache.shutdown(); });
    const auto start = std::chrono::steady_clock::now();
    io.run();
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(kinds == std::vector<token_failure::kind>(3, token_failure::kind::shutting_down));
}

TEST_CASE("invalidate drops a token the registry refused, but not a newer one", "[tokens][cache]") {
    asio::io_context io;
    token_cache cache;
    counting_fetcher f;
    std::vector<std::string> got;
    spawn(io, [&]() -> asio::awaitable<void> {
        got.push_back(value_of(co_await cache.get("k", f.fn(io))));
        cache.invalidate("k", acp::config::secret("token-1"));
        got.push_back(value_of(co_await cache.get("k", f.fn(io))));
        cache.invalidate("k", acp::config::secret("token-1"));  // stale: token-2 stays
        got.push_back(value_of(co_await cache.get("k", f.fn(io))));
    });
    io.run();
    CHECK(got == std::vector<std::string>{"token-1", "token-2", "token-2"});
}

TEST_CASE("a fetch that completes without suspending is handled (co_spawn dispatches inline)", "[tokens][cache]") {
    asio::io_context io;
    token_cache cache;
    int calls = 0;
    fetch_fn immediate = [&]() -> asio::awaitable<fetch_result> {
        ++calls;
        co_return registry_token{acp::config::secret("instant"), std::chrono::seconds(300)};
    };
    fetch_fn failing = [&]() -> asio::awaitable<fetch_result> {
        ++calls;
        co_return token_failure{token_failure::kind::credentials_unavailable, "none yet"};
    };
    std::vector<std::string> got;
    spawn(io, [&]() -> asio::awaitable<void> {
        got.push_back(value_of(co_await cache.get("a", immediate)));
        got.push_back(value_of(co_await cache.get("b", failing)));
    });
    io.run();
    CHECK(got == std::vector<std::string>{"instant", "failure:none yet"});
    CHECK(calls == 2);
}

TEST_CASE("a failing realm backs off exponentially; requests meanwhile fail fast naming the cause", "[tokens][cache]") {
    asio::io_context io;
    fake_clock clock;
    token_cache::options opts;
    opts.negative_ttl = 1000ms;
    opts.backoff_max = 4000ms;
    token_cache cache(opts, clock.fn(), [] { return 0.999; });  // jitter at its top: ~full backoff
    counting_fetcher f;
    f.fail = token_failure{token_failure::kind::realm_bad_response, "realm auth.example answered 500"};
    auto get = [&] {
        std::optional<token_result> r;
        spawn(io, [&]() -> asio::awaitable<void> { r = co_await cache.get("k", f.fn(io)); });
        io.restart();
        io.run();
        return *r;
    };
    CHECK(std::get<token_failure>(get()).what == token_failure::kind::realm_bad_response);  // the fetch's own
    const auto fast = std::get<token_failure>(get());
    CHECK(fast.what == token_failure::kind::backing_off);
    CHECK_THAT(fast.detail, Catch::Contains("answered 500") && Catch::Contains("backing off"));
    CHECK(f.calls == 1);
    // Backoffs: ~1 s, ~2 s, ~4 s, then capped at 4 s.
    for (const auto& [advance, calls] : {std::pair{1100ms, 2}, std::pair{1100ms, 2}, std::pair{1000ms, 3},
                                         std::pair{3000ms, 3}, std::pair{1100ms, 4}, std::pair{4100ms, 5}}) {
        clock.t += advance;
        (void)get();
        CHECK(f.calls == calls);
    }
    // Recovery resets the backoff.
    f.fail.reset();
    clock.t += 4100ms;
    CHECK(value_of(get()) == "token-6");
    CHECK(cache.counters().fast_failures == 3);
}

TEST_CASE("memory follows the live scopes: dead entries are swept, a backoff is kept", "[tokens][cache]") {
    asio::io_context io;
    fake_clock clock;
    token_cache cache(token_cache::options{}, clock.fn(), [] { return 0.999; });
    counting_fetcher ok;
    ok.latency = 0ms;
    ok.lifetime = 10s;  // usable 5 s
    counting_fetcher failing;
    failing.latency = 0ms;
    failing.fail = token_failure{token_failure::kind::realm_bad_response, "realm auth.example answered 500"};
    auto get = [&](const std::string& key, counting_fetcher& f) {
        std::optional<token_result> r;
        spawn(io, [&]() -> asio::awaitable<void> { r = co_await cache.get(key, f.fn(io)); });
        io.restart();
        io.run();
        return *r;
    };
    CHECK(std::holds_alternative<token_failure>(get("reg/failing:pull", failing)));
    std::size_t most = 0;
    // A stream of cold scopes, each asked for once, each token dead 20 s later.
    for (int i = 0; i < 2000; ++i) {
        CHECK(value_of(get("reg/cold-" + std::to_string(i) + ":pull", ok)).starts_with("token-"));
        most = std::max(most, cache.size());
        if (i == 30) {
            // Within the failing key's backoff: a sweep (at 64 entries) must not forget it.
            CHECK(std::get<token_failure>(get("reg/failing:pull", failing)).what == token_failure::kind::backing_off);
        }
        clock.t += i < 100 ? 0s : 20s;
    }
    CHECK(failing.calls == 1);
    CHECK(ok.calls == 2000);
    CHECK(most <= 2 * 101 + 2);  // the first 100 live together; after that about one at a time
    CHECK(cache.size() <= 130);
}
