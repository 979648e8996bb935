#include "tokens/token_cache.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <optional>
#include <random>

namespace asio = boost::asio;

namespace acp::tokens {

struct token_cache::entry {
    std::optional<config::secret> token;
    time_point expires_at{};  // already less the safety margin
    time_point refresh_at{};
    std::optional<token_failure> failure;
    time_point failure_until{};
    unsigned consecutive_failures = 0;
    bool fetching = false;
    std::uint64_t generation = 0;              // bumped when a fetch completes
    std::shared_ptr<asio::steady_timer> wake;  // waiters sleep on it; cancelled when a fetch completes
    std::shared_ptr<asio::cancellation_signal> cancel;
};

namespace {

using time_point = std::chrono::steady_clock::time_point;

struct fetch_context {
    token_cache::clock_fn clock;
    token_cache::options opts;
    token_cache::random_fn random;
    time_point started{};
};

std::chrono::milliseconds backoff_for(unsigned failures, const token_cache::options& o, double jitter01) {
    auto d = o.negative_ttl;
    for (unsigned i = 1; i < failures && d < o.backoff_max; ++i) {
        d *= 2;
    }
    d = std::min(d, o.backoff_max);
    return std::chrono::milliseconds(
        static_cast<std::int64_t>(static_cast<double>(d.count()) * (0.5 + 0.5 * jitter01)));
}

// Records a fetch's outcome on its entry and wakes the waiters. Runs on the cache's executor.
void complete(const std::shared_ptr<token_cache::entry>& e, const fetch_context& ctx,
              const std::shared_ptr<token_cache::stats>& stats, fetch_result result);

}  // namespace

// The fetch coroutine owns values only (STYLE: spawned coroutines take values).
namespace {
asio::awaitable<void> run_fetch(std::shared_ptr<token_cache::entry> e, fetch_fn fetch, fetch_context ctx,
                                std::shared_ptr<token_cache::stats> stats) {
    fetch_result result = token_failure{token_failure::kind::realm_bad_response, "token fetch failed"};
    try {
        result = co_await fetch();
    } catch (const boost::system::system_error& ex) {
        const bool aborted = ex.code() == asio::error::operation_aborted;
        result = token_failure{aborted ? token_failure::kind::shutting_down : token_failure::kind::realm_unreachable,
                               aborted ? "token fetch cancelled" : "token fetch failed: " + ex.code().message()};
    } catch (const std::exception&) {
        result = token_failure{token_failure::kind::realm_bad_response, "token fetch failed unexpectedly"};
    }
    complete(e, ctx, stats, std::move(result));
}

void complete(const std::shared_ptr<token_cache::entry>& e, const fetch_context& ctx,
              const std::shared_ptr<token_cache::stats>& stats, fetch_result result) {
    const auto now = ctx.clock();
    stats->fetch_seconds_sum += std::chrono::duration<double>(now - ctx.started).count();
    if (auto* tok = std::get_if<registry_token>(&result)) {
        e->consecutive_failures = 0;
        const auto life = std::chrono::duration_cast<std::chrono::steady_clock::duration>(tok->expires_in);
        const auto margin = std::chrono::duration_cast<std::chrono::steady_clock::duration>(ctx.opts.safety_margin);
        // Short-lived tokens keep half their life rather than vanish under the margin.
        const auto usable = life > 2 * margin ? life - margin : life / 2;
        e->token = std::move(tok->token);
        e->expires_at = now + usable;
        e->refresh_at = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  usable * (1.0 - ctx.opts.refresh_fraction));
        e->failure.reset();
    } else {
        ++stats->fetch_failures;
        e->failure = std::get<token_failure>(std::move(result));
        // Only a failing realm backs off further; missing credentials (the ACR store has
        // its own backoff and readiness) are retried after the base interval.
        e->consecutive_failures =
            e->failure->what == token_failure::kind::credentials_unavailable ? 1 : e->consecutive_failures + 1;
        e->failure_until = now + backoff_for(e->consecutive_failures, ctx.opts, ctx.random ? ctx.random() : 0.5);
    }
    e->fetching = false;
    ++e->generation;
    e->cancel.reset();
    if (auto wake = std::exchange(e->wake, nullptr)) {
        wake->cancel();
    }
}

}  // namespace

token_cache::token_cache() : token_cache(options{}) {}

token_cache::token_cache(options opts, clock_fn clock, random_fn random)
    : opts_(opts),
      clock_(clock ? std::move(clock) : clock_fn([] { return std::chrono::steady_clock::now(); })),
      random_(random ? std::move(random)
                     : random_fn([gen = std::make_shared<std::minstd_rand>(std::random_device{}())] {
                           return std::uniform_real_distribution<double>(0.0, 1.0)(*gen);
                       })),
      stats_(std::make_shared<stats>()) {}

token_cache::~token_cache() {
    shutdown();
}

token_cache::time_point token_cache::now() const {
    return clock_();
}

void token_cache::start_fetch(const asio::any_io_executor& ex, const std::shared_ptr<entry>& e, fetch_fn fetch) {
    e->fetching = true;
    e->wake = std::make_shared<asio::steady_timer>(ex, time_point::max());
    e->cancel = std::make_shared<asio::cancellation_signal>();
    ++stats_->fetches;
    // Tracked through e->cancel: shutdown() emits on every fetch in flight.
    asio::co_spawn(ex, run_fetch(e, std::move(fetch), fetch_context{clock_, opts_, random_, now()}, stats_),
                   asio::bind_cancellation_slot(e->cancel->slot(), asio::detached));
}

void token_cache::make_room() {
    const std::size_t n = entries_.size();
    if (n < sweep_at_ && n < opts_.max_entries) {
        return;
    }
    // Amortised O(1) per insert: a sweep runs when the map has doubled since
    // the last one left it.
    const auto t = now();
    std::erase_if(entries_, [&](const auto& kv) {
        const auto& e = *kv.second;
        const bool live_token = e.token && t < e.expires_at;
        const bool backing_off = e.failure && t < e.failure_until;
        return !e.fetching && !live_token && !backing_off;
    });
    if (entries_.size() >= opts_.max_entries) {
        // Still full of live entries: drop any not fetching (they are fetched again when asked for).
        for (auto it = entries_.begin(); entries_.size() >= opts_.max_entries && it != entries_.end();) {
            it = it->second->fetching ? std::next(it) : entries_.erase(it);
        }
    }
    sweep_at_ = std::max(min_sweep_at, 2 * entries_.size());
}

asio::awaitable<token_result> token_cache::get(std::string key, fetch_fn fetch) {
    const auto ex = co_await asio::this_coro::executor;
    while (true) {
        if (stopped_) {
            co_return token_failure{token_failure::kind::shutting_down, "proxy is shutting down"};
        }
        auto it = entries_.find(key);
        if (it == entries_.end()) {
            make_room();
            it = entries_.emplace(key, std::make_shared<entry>()).first;
        }
        const auto e = it->second;  // keeps the entry alive even if evicted while we wait
        const auto t = now();
        if (e->token && t < e->expires_at) {
            ++stats_->hits;
            if (t >= e->refresh_at && !e->fetching) {
                ++stats_->background_refreshes;
                start_fetch(ex, e, fetch);
            }
            co_return *e->token;
        }
        if (e->failure && t < e->failure_until && !e->fetching) {
            ++stats_->fast_failures;
            const auto wait_s = std::chrono::duration_cast<std::chrono::milliseconds>(e->failure_until - t).count();
            // Refused credentials stay what they are (403); a failing realm becomes a fast 503.
            const auto kind = e->failure->what == token_failure::kind::realm_rejected_credentials
                                  ? e->failure->what
                                  : token_failure::kind::backing_off;
            co_return token_failure{
                kind, e->failure->detail + "; backing off, next attempt in " + std::to_string(wait_s) + " ms"};
        }
        ++stats_->misses;
        const auto generation = e->generation;
        if (!e->fetching) {
            // co_spawn dispatches: a fetch that never suspends has completed on return.
            start_fetch(ex, e, fetch);
        }
        if (e->generation == generation) {
            ++stats_->waiters;
            const auto wake = e->wake;
            co_await wake->async_wait(asio::as_tuple(asio::use_awaitable));
            const auto cs = co_await asio::this_coro::cancellation_state;
            if (cs.cancelled() != asio::cancellation_type::none) {
                co_return token_failure{token_failure::kind::cancelled, "request cancelled while waiting for a token"};
            }
            if (e->generation == generation) {
                continue;  // woken without an outcome (shutdown, eviction): re-check
            }
        }
        if (e->token && now() < e->expires_at) {
            co_return *e->token;
        }
        if (e->failure) {
            co_return *e->failure;
        }
        // A token that expired the moment it arrived: fetch again.
    }
}

void token_cache::invalidate(const std::string& key, const config::secret& token) {
    const auto it = entries_.find(key);
    if (it != entries_.end() && it->second->token && *it->second->token == token) {
        it->second->token.reset();
    }
}

void token_cache::shutdown() {
    stopped_ = true;
    for (auto& [key, e] : entries_) {
        if (e->cancel) {
            e->cancel->emit(asio::cancellation_type::all);
        }
        if (e->wake) {
            e->wake->cancel();
        }
    }
}

}  // namespace acp::tokens
