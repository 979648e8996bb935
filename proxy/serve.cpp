#include "proxy/serve.hpp"

#include "config/logging.hpp"
#include "proxy/config_watch.hpp"
#include "proxy/server.hpp"
#include "proxy/snapshot.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <fmt/format.h>

#include <csignal>

namespace acp::proxy {
namespace {

using namespace net::experimental::awaitable_operators;
using clock = std::chrono::steady_clock;

// Several inotify events arrive for one edit (and a ConfigMap swap); one reload serves them all.
constexpr auto reload_debounce = std::chrono::milliseconds(200);

std::string endpoint_text(const tcp::endpoint& ep) {
    const auto a = ep.address();
    return a.is_v6() ? fmt::format("[{}]:{}", a.to_string(), ep.port())
                     : fmt::format("{}:{}", a.to_string(), ep.port());
}

// A reload request flag with a timer to wake the reload loop.
struct reload_trigger {
    explicit reload_trigger(const net::any_io_executor& ex) : wake(ex) {}
    void fire() {
        pending = true;
        wake.cancel();
    }
    bool pending = false;
    net::steady_timer wake;
};

// Runs on the control thread: file reads and CA bundle loading stay off the event loop.
net::awaitable<std::shared_ptr<const snapshot>> load_snapshot(config::load_options from,
                                                              std::optional<config::listen_address> listen,
                                                              std::optional<config::listen_address> admin_listen) {
    auto loaded = config::load(from);
    static const auto log = logging::logger("config");
    for (const auto& w : loaded.warnings) {
        log->warn("{}", w.str());
    }
    auto cfg = std::make_shared<config::config>(*loaded.cfg);
    if (listen) {
        cfg->listen = *listen;
    }
    if (admin_listen) {
        cfg->admin_listen = *admin_listen;
    }
    co_return build_snapshot(std::move(cfg));
}

net::awaitable<bool> cancelled() {
    auto cs = co_await net::this_coro::cancellation_state;
    co_return cs.cancelled() != net::cancellation_type::none;
}

// Completes on SIGTERM or SIGINT; SIGHUP asks for a reload.
net::awaitable<void> wait_for_stop(net::signal_set& signals, reload_trigger& trigger) {
    static const auto log = logging::logger("main");
    for (;;) {
        auto [ec, sig] = co_await signals.async_wait(use_nothrow);
        if (ec) {
            co_return;
        }
        if (sig == SIGHUP) {
            log->info("SIGHUP: reloading the configuration");
            trigger.fire();
            continue;
        }
        log->info("{}: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        co_return;
    }
}

net::awaitable<void> watch_files(config_watch& watch, reload_trigger& trigger) {
    static const auto log = logging::logger("config");
    if (!watch.active()) {
        net::steady_timer forever(co_await net::this_coro::executor, clock::time_point::max());
        co_await forever.async_wait(use_nothrow);
        co_return;
    }
    for (;;) {
        if (auto ec = co_await watch.next_change(); ec) {
            co_return;
        }
        if (co_await cancelled()) {
            co_return;
        }
        log->info("configuration changed on disk: reloading");
        trigger.fire();
    }
}

net::awaitable<void> reload_loop(server& srv, const serve_options& opts, reload_trigger& trigger,
                                 net::thread_pool::executor_type control) {
    static const auto log = logging::logger("config");
    auto ex = co_await net::this_coro::executor;
    for (;;) {
        if (!trigger.pending) {
            trigger.wake.expires_at(clock::time_point::max());
            co_await trigger.wake.async_wait(use_nothrow);
            if (co_await cancelled()) {
                co_return;
            }
            continue;
        }
        net::steady_timer debounce(ex, reload_debounce);
        co_await debounce.async_wait(use_nothrow);
        if (co_await cancelled()) {
            co_return;
        }
        trigger.pending = false;
        std::string failure_text;
        try {
            // Built outside the co_await: GCC 12 mishandles non-trivial temporaries inside it.
            auto load = load_snapshot(opts.reload_from, opts.listen_override, opts.admin_listen_override);
            auto next = co_await net::co_spawn(control, std::move(load), net::use_awaitable);
            for (const auto& w : next->warnings) {
                log->warn("{}", w);
            }
            logging::setup(next->cfg->log);
            srv.apply(next);
            srv.state()->stats.on_reload(true);
            log->info("configuration reloaded: {} route(s)", next->routes.routes().size());
        } catch (const config::config_error& e) {
            for (const auto& d : e.errors()) {
                log->error("rejected new configuration: {}", d.str());
            }
            log->error("configuration reload rejected ({} error(s)); the previous configuration keeps serving",
                       e.errors().size());
            srv.state()->stats.on_reload(false);
        } catch (const std::exception& e) {
            failure_text = e.what();
        }
        if (!failure_text.empty()) {
            if (co_await cancelled()) {
                co_return;
            }
            log->error("configuration reload rejected: {}; the previous configuration keeps serving", failure_text);
            srv.state()->stats.on_reload(false);
            failure_text.clear();
        }
    }
}

net::awaitable<void> run_lifecycle(server* srv, net::signal_set* signals, serve_options opts,
                                   net::thread_pool::executor_type control) {
    auto ex = co_await net::this_coro::executor;
    reload_trigger trigger(ex);
    config_watch watch(ex, opts.reload_from.config_file, opts.reload_from.acr_configuration_dir);
    co_await (wait_for_stop(*signals, trigger) ||
              (watch_files(watch, trigger) || reload_loop(*srv, opts, trigger, control)));
    watch.close();
    signals->clear();
    co_await srv->shutdown();
    logging::logger("main")->info("stopped");
}

}  // namespace

int serve(const serve_options& opts) {
    static const auto log = logging::logger("main");
    // Signals first: a SIGTERM during startup must not kill the process uncleanly.
    net::io_context ioc{1};
    net::signal_set signals(ioc, SIGTERM, SIGINT, SIGHUP);
    std::shared_ptr<const snapshot> snap;
    try {
        snap = build_snapshot(opts.initial);
    } catch (const std::exception& e) {
        log->error("configuration: {}", e.what());
        return 2;
    }
    for (const auto& w : snap->warnings) {
        logging::logger("config")->warn("{}", w);
    }

    server srv(ioc, snap);
    std::string what;
    if (auto ec = srv.listen(what)) {
        log->error("cannot {}: {}", what, ec.message());
        return 1;
    }
    srv.start();
    log->info("listening data={} admin={} routes={} followRedirects={}", endpoint_text(srv.data_endpoint()),
              endpoint_text(srv.admin_endpoint()), snap->routes.routes().size(), snap->cfg->follow_redirects);

    net::thread_pool control(1);
    std::exception_ptr failed;
    net::co_spawn(ioc, run_lifecycle(&srv, &signals, opts, control.get_executor()),
                  [&ioc, &failed](std::exception_ptr e) {
                      failed = e;
                      ioc.stop();
                  });
    ioc.run();
    control.join();
    if (failed) {
        try {
            std::rethrow_exception(failed);
        } catch (const std::exception& e) {
            log->error("fatal: {}", e.what());
        }
        return 1;
    }
    return 0;
}

}  // namespace acp::proxy
