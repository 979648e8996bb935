#include "proxy/serve.hpp"

#include "config/logging.hpp"
#include "proxy/certs_sync.hpp"
#include "proxy/config_watch.hpp"
#include "proxy/pod_watcher.hpp"
#include "proxy/server.hpp"
#include "proxy/snapshot.hpp"
#include "proxy/systemd_notify.hpp"
#include "tokens/acr_password_store.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <functional>
#include <sys/prctl.h>
#include <system_error>
#include <unistd.h>

namespace acp::proxy {
namespace {

using namespace net::experimental::awaitable_operators;
using clock = std::chrono::steady_clock;

// Several inotify events arrive for one edit (and a ConfigMap swap); one reload serves them all.
constexpr auto reload_debounce = std::chrono::milliseconds(200);
// How long start-up keeps trying to list this node's pods before refusing to start.
constexpr auto start_list_budget = std::chrono::milliseconds(10000);

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
// ACR instances without configured domains serve the domains the store
// discovered (ListInstanceEndpoint), so those become routes too.
std::shared_ptr<const config::config> with_discovered_domains(std::shared_ptr<const config::config> cfg,
                                                              const tokens::acr_password_store* acr) {
    if (acr == nullptr) {
        return cfg;
    }
    const auto found = acr->snapshot();
    if (!found || found->instances.size() != cfg->acr_instances.size()) {
        return cfg;
    }
    auto out = std::make_shared<config::config>(*cfg);
    for (std::size_t i = 0; i < out->acr_instances.size(); ++i) {
        auto& inst = out->acr_instances[i];
        if (inst.domains.empty() && found->instances[i].instance_id == inst.instance_id) {
            inst.domains = found->instances[i].domains;
        }
    }
    return out;
}

net::awaitable<std::shared_ptr<const snapshot>> load_snapshot(config::load_options from,
                                                              std::optional<config::listen_address> listen,
                                                              std::optional<config::listen_address> admin_listen,
                                                              tokens::auth_environment env,
                                                              std::shared_ptr<const shared_upstreams> shared) {
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
    if (env.acr != nullptr &&
        (cfg->acr_instances != env.acr->configured_instances() || !(cfg->alibaba == env.acr->configured_alibaba()))) {
        static const auto log_acr = logging::logger("tokens");
        log_acr->warn(
            "acrInstances or alibaba settings changed: they take effect after a restart; "
            "the running ACR credential store keeps its instances");
    }
    co_return build_snapshot(with_discovered_domains(std::move(cfg), env.acr), env, std::move(shared));
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

// Runs sync->sync(cfg) on the control thread (blocking file I/O stays off the event loop).
net::awaitable<void> sync_certs_dir(certs_sync* sync, std::shared_ptr<const config::config> cfg,
                                    net::thread_pool::executor_type control) {
    if (sync == nullptr) {
        co_return;
    }
    auto work = [](certs_sync* s, std::shared_ptr<const config::config> c) -> net::awaitable<void> {
        s->sync(*c);
        co_return;
    };
    // Built outside the co_await: GCC 12 mishandles non-trivial temporaries inside it.
    auto task = work(sync, std::move(cfg));
    co_await net::co_spawn(control, std::move(task), net::use_awaitable);
}

// A reloaded scope: the rule (namespaces, ServiceAccounts, enabled) applies at once when the watcher
// runs; starting one (scope turned on, or new API access) needs a restart.
void apply_scope(pod_watcher* watcher, const config::scope_config& scope) {
    if (watcher != nullptr) {
        watcher->set_rule(routing::scope_rule::from(scope));
    } else if (scope.enabled) {
        logging::logger("scope")->warn(
            "the reloaded configuration turns the pull scope on: it takes effect after a restart (the proxy "
            "started without a scope and keeps serving every pod on this node until then)");
    }
}

net::awaitable<void> reload_loop(server& srv, const serve_options& opts, reload_trigger& trigger,
                                 net::thread_pool::executor_type control, tokens::auth_environment env,
                                 certs_sync* sync, const systemd_notifier& notifier) {
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
            auto load =
                load_snapshot(opts.reload_from, opts.listen_override, opts.admin_listen_override, env, srv.upstreams());
            auto next = co_await net::co_spawn(control, std::move(load), net::use_awaitable);
            for (const auto& w : next->warnings) {
                log->warn("{}", w);
            }
            logging::setup(next->cfg->log);
            apply_scope(srv.state()->scope, next->cfg->scope);
            srv.apply(next);
            srv.state()->stats.on_reload(true);
            log->info("configuration reloaded: {} route(s)", next->routes.routes().size());
            (void)notifier.send(fmt::format("STATUS=serving {} route(s)", next->routes.routes().size()));
            auto synced = sync_certs_dir(sync, next->cfg, control);
            co_await std::move(synced);
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

// WATCHDOG=1 from the event loop itself: if the loop stalls, the pings stop.
net::awaitable<void> watchdog_loop(const systemd_notifier& notifier) {
    const auto interval = systemd_notifier::watchdog_interval();
    net::steady_timer timer(co_await net::this_coro::executor);
    if (!interval || !notifier.enabled()) {
        timer.expires_at(clock::time_point::max());
        co_await timer.async_wait(use_nothrow);
        co_return;
    }
    static const auto log = logging::logger("main");
    log->info("systemd watchdog: pinging every {} ms",
              std::chrono::duration_cast<std::chrono::milliseconds>(*interval).count());
    for (;;) {
        if (auto err = notifier.send("WATCHDOG=1")) {
            log->warn("systemd watchdog: {}", *err);
        }
        timer.expires_after(*interval);
        co_await timer.async_wait(use_nothrow);
        if (co_await cancelled()) {
            co_return;
        }
    }
}

net::awaitable<void> run_lifecycle(server* srv, net::signal_set* signals, serve_options opts,
                                   net::thread_pool::executor_type control, tokens::auth_environment env,
                                   std::shared_ptr<std::function<void()>> on_discovery, certs_sync* sync,
                                   const systemd_notifier* notifier) {
    auto ex = co_await net::this_coro::executor;
    reload_trigger trigger(ex);
    // Newly discovered ACR domains become routes through an ordinary reload.
    *on_discovery = [&trigger] {
        trigger.fire();
    };
    config_watch watch(ex, opts.reload_from.config_file, opts.reload_from.acr_configuration_dir);
    co_await (wait_for_stop(*signals, trigger) ||
              (watch_files(watch, trigger) ||
               (reload_loop(*srv, opts, trigger, control, env, sync, *notifier) || watchdog_loop(*notifier))));
    (void)notifier->send("STOPPING=1\nSTATUS=draining in-flight transfers");
    *on_discovery = nullptr;
    watch.close();
    signals->clear();
    co_await srv->shutdown();
    logging::logger("main")->info("stopped");
}

// The watcher for a configured scope, its first list done; null (after logging why) when the
// API server cannot be reached: the caller refuses to start.
std::unique_ptr<pod_watcher> start_scope(const serve_options& opts) {
    const auto log = logging::logger("scope");
    const auto& sc = opts.initial->scope;
    const auto rule = routing::scope_rule::from(sc);
    auto access = config::load_kube_access(opts.kube);
    if (!access.access) {
        for (const auto& e : access.errors) {
            log->error("{}", e);
        }
        log->error(
            "a pull scope is configured ({}; {}) but the Kubernetes API cannot be reached: refusing to start "
            "rather than serve every pod unscoped",
            rule.describe_namespaces(), rule.describe_service_accounts());
        return nullptr;
    }
    const auto node = config::node_name_of_this_node(opts.node_name);
    if (!node.error.empty()) {
        log->error("{}: refusing to start rather than serve every pod unscoped", node.error);
        return nullptr;
    }
    pod_watcher_options wo;
    wo.access = std::move(*access.access);
    wo.node_name = node.name;
    wo.node_name_from = node.from;
    wo.rule = rule;
    auto watcher = std::make_unique<pod_watcher>(std::move(wo));
    log->info("pull scope: {}; {}; waitForPod {} ms; pods of node {} (from {}) via {}", rule.describe_namespaces(),
              rule.describe_service_accounts(), sc.wait_for_pod.count(), node.name, node.from,
              watcher->options().access.source);
    if (auto err = watcher->list_now(start_list_budget); !err.empty()) {
        log->error("cannot list the pods of node {} from {}: {}", node.name, watcher->options().access.server, err);
        log->error("refusing to start: a pull scope is configured and serving without it would widen access");
        return nullptr;
    }
    return watcher;
}

}  // namespace

int serve(const serve_options& opts) {
    static const auto log = logging::logger("main");
    // No core dumps and no ptrace/`/proc/PID/mem` for other users: this process
    // holds AccessKeys, STS tokens, ACR passwords and registry tokens.
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        log->warn("prctl(PR_SET_DUMPABLE, 0) failed: {}", std::generic_category().message(errno));
    }
    // Signals first: a SIGTERM during startup must not kill the process uncleanly.
    net::io_context ioc{1};
    net::signal_set signals(ioc, SIGTERM, SIGINT, SIGHUP);
    // The node's ACR temporary passwords: fetched and refreshed on the store's
    // own control thread; the data path only reads its snapshots.
    std::unique_ptr<tokens::acr_password_store> acr;
    auto on_discovery = std::make_shared<std::function<void()>>();
    auto env = tokens::auth_environment::process();
    // Realm fetches share the server's HTTP/2 connections once it exists.
    auto upstreams = std::make_shared<shared_upstreams>();
    // The pull scope first: a scope that cannot be enforced stops the start-up
    // before anything listens or any hosts.toml points containerd here.
    std::unique_ptr<pod_watcher> scope;
    if (opts.initial->scope.enabled) {
        scope = start_scope(opts);
        if (!scope) {
            return 1;
        }
    } else {
        logging::logger("scope")->warn(
            "no `scope` section (or scope.enabled: false) in {}: serving every pod on this node (unscoped); add "
            "`scope:` to give credentials only to pods in chosen namespaces and ServiceAccounts (docs/scope.md)",
            opts.initial->source.empty() ? std::string("the configuration") : opts.initial->source);
    }
    std::shared_ptr<const snapshot> snap;
    try {
        if (!opts.initial->acr_instances.empty()) {
            tokens::acr_password_store_options so;
            so.cfg = opts.initial;
            acr = std::make_unique<tokens::acr_password_store>(std::move(so));
            acr->on_domains_changed([&ioc, on_discovery](const std::vector<std::string>&) {
                net::post(ioc, [on_discovery] {
                    if (*on_discovery) {
                        (*on_discovery)();
                    }
                });
            });
            acr->start();
            env.acr = acr.get();
        }
        snap = build_snapshot(with_discovered_domains(opts.initial, acr.get()), env, upstreams);
    } catch (const std::exception& e) {
        log->error("configuration: {}", e.what());
        return 2;
    }
    for (const auto& w : snap->warnings) {
        logging::logger("config")->warn("{}", w);
    }

    server srv(ioc, snap, upstreams);
    srv.state()->acr = acr.get();
    srv.state()->scope = scope.get();
    if (scope) {
        // Each published index wakes the requests waiting for their pod, on the event loop.
        scope->start([&ioc, weak = std::weak_ptr<server_state>(srv.state())] {
            net::post(ioc, [weak] {
                if (auto st = weak.lock()) {
                    st->scope_changed.notify();
                }
            });
        });
    }
    std::string what;
    auto inherited = take_inherited();
    if (auto ec = srv.listen(what, inherited, {.reuse_port = opts.reuse_port})) {
        log->error("cannot {}: {}{}", what, ec.message(),
                   ec == boost::system::errc::address_in_use && opts.reuse_port
                       ? " (the process listening there was not started with --reuse-port)"
                   : ec == boost::system::errc::address_in_use
                       ? " (another process listens there; a hand-over needs --reuse-port on both)"
                       : "");
        return 1;
    }
    for (const auto& s : inherited) {
        log->warn("systemd passed socket fd {}{} that matches none of listen, adminListen and tlsListen: closed", s.fd,
                  s.name.empty() ? "" : " (" + s.name + ")");
        ::close(s.fd);
    }
    srv.start();
    log->info("listening data={} ({}) admin={} ({}) routes={} followRedirects={} logLevel={}",
              endpoint_text(srv.data_endpoint()), to_string(srv.data_origin()), endpoint_text(srv.admin_endpoint()),
              to_string(srv.admin_origin()), snap->routes.routes().size(), snap->cfg->follow_redirects,
              snap->cfg->log.level);
    if (const auto tls = srv.tls_endpoint()) {
        log->info("listening tls={} (ALPN h2, http/1.1; certificate {})", endpoint_text(*tls),
                  snap->cfg->tls_cert_file);
    }

    // hosts.toml after the listener is up: containerd may use a file the moment it appears.
    std::unique_ptr<certs_sync> sync;
    if (opts.certs_dir) {
        hosts::render_options ro;
        ro.dial_timeout = opts.dial_timeout;
        sync = std::make_unique<certs_sync>(*opts.certs_dir, std::move(ro));
        sync->sync(*snap->cfg);
    }
    const systemd_notifier notifier;
    if (auto err = notifier.send(
            fmt::format("READY=1\nSTATUS=serving {} route(s)\nMAINPID={}", snap->routes.routes().size(), ::getpid()))) {
        log->warn("systemd notification: {}", *err);
    }

    net::thread_pool control(1);
    std::exception_ptr failed;
    auto lifecycle =
        run_lifecycle(&srv, &signals, opts, control.get_executor(), env, on_discovery, sync.get(), &notifier);
    net::co_spawn(ioc, std::move(lifecycle), [&ioc, &failed](std::exception_ptr e) {
        failed = e;
        ioc.stop();
    });
    ioc.run();
    control.join();
    if (scope) {
        scope->stop();
    }
    if (acr) {
        acr->stop();
    }
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
