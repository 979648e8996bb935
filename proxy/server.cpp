#include "proxy/server.hpp"

#include "config/logging.hpp"
#include "proxy/admin.hpp"
#include "proxy/downstream_session.hpp"
#include "proxy/listeners.hpp"

#include <boost/asio/steady_timer.hpp>

namespace acp::proxy {
namespace {

enum class listener_kind { data, admin, tls };

// Connections beyond maxConnections that still get a 503 (beyond: closed at once).
constexpr std::size_t max_rejecting = 64;
constexpr std::size_t max_admin_sessions = 64;

net::awaitable<void> run_accept_loop(std::shared_ptr<server_state> state, tcp::acceptor acceptor, listener_kind kind,
                                     std::shared_ptr<task_group::entry> entry,
                                     std::shared_ptr<net::ssl::context> tls = nullptr) {
    auto ex = acceptor.get_executor();
    auto spawn_session = [&state, &tls, kind, ex](tcp::socket socket) {
        auto e = task_group::make_entry();
        if (kind == listener_kind::tls) {
            state->sessions.spawn(ex, run_tls_session(state, std::move(socket), tls, e), e);
        } else {
            state->sessions.spawn(ex, run_downstream_session(state, std::move(socket), e), e);
        }
    };
    entry->stop = [&acceptor, kind, &spawn_session] {
        // Connections already in the queue are served, not reset by the close:
        // they were made while we still listened (clients count on them).
        if (kind != listener_kind::admin && acceptor.is_open()) {
            for (auto& socket : drain_accept_queue(acceptor)) {
                spawn_session(std::move(socket));
            }
        }
        error_code ec;
        acceptor.close(ec);
    };
    struct clear_hook {
        task_group::entry& e;
        ~clear_hook() { e.stop = nullptr; }
    } guard{*entry};
    static const auto log = logging::logger("proxy");
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
        if (ec) {
            if (!acceptor.is_open() || ec == net::error::operation_aborted) {
                break;
            }
            log->warn("accept failed: {}", ec.message());
            if (ec == net::error::no_descriptors || ec == net::error::no_buffer_space) {
                net::steady_timer pause(ex, std::chrono::milliseconds(100));  // let connections close
                co_await pause.async_wait(use_nothrow);
            }
            continue;
        }
        if (kind == listener_kind::admin) {
            if (state->admin_sessions.size() >= max_admin_sessions) {
                continue;  // the socket closes as it goes out of scope
            }
            auto e = task_group::make_entry();
            state->admin_sessions.spawn(ex, run_admin_session(state, std::move(socket), e), e);
            continue;
        }
        const auto limit = state->snapshots.load()->cfg->limits.max_connections;
        if (state->sessions.size() >= limit) {
            if (state->rejects.size() < max_rejecting) {
                auto e = task_group::make_entry();
                state->rejects.spawn(ex, run_reject_session(state, std::move(socket), e), e);
            }
            continue;
        }
        spawn_session(std::move(socket));
    }
}

}  // namespace

server::server(net::io_context& ioc, std::shared_ptr<const snapshot> initial,
               std::shared_ptr<shared_upstreams> upstreams)
    : ioc_(ioc),
      state_(std::make_shared<server_state>(std::move(initial), ioc.get_executor())),
      upstreams_(upstreams ? std::move(upstreams) : std::make_shared<shared_upstreams>()) {
    upstreams_->h2 = &state_->h2_pool;
    upstreams_->stats = &state_->stats;
}

server::~server() {
    upstreams_->h2 = nullptr;
    upstreams_->stats = nullptr;
    error_code ec;
    if (data_acceptor_) {
        data_acceptor_->close(ec);
    }
    if (admin_acceptor_) {
        admin_acceptor_->close(ec);
    }
    if (tls_acceptor_) {
        tls_acceptor_->close(ec);
    }
}

error_code server::listen(std::string& what, std::vector<inherited_socket>& inherited, const listener_options& opts) {
    const auto cfg = state_->snapshots.load()->cfg;
    if (auto ec = open_listener(ioc_, cfg->listen, inherited, opts, data_acceptor_, data_endpoint_, data_origin_)) {
        what = "listen " + cfg->listen.host + ":" + std::to_string(cfg->listen.port);
        return ec;
    }
    if (auto ec =
            open_listener(ioc_, cfg->admin_listen, inherited, opts, admin_acceptor_, admin_endpoint_, admin_origin_)) {
        what = "adminListen " + cfg->admin_listen.host + ":" + std::to_string(cfg->admin_listen.port);
        return ec;
    }
    if (cfg->tls_listen) {
        what = "tlsListen " + cfg->tls_listen->host + ":" + std::to_string(cfg->tls_listen->port);
        try {
            tls_ctx_ = make_server_tls_context(cfg->tls_cert_file, cfg->tls_key_file);
        } catch (const std::runtime_error& e) {
            what += ": " + std::string(e.what());
            return make_error_code(boost::system::errc::invalid_argument);
        }
        if (auto ec =
                open_listener(ioc_, *cfg->tls_listen, inherited, opts, tls_acceptor_, tls_endpoint_, tls_origin_)) {
            return ec;
        }
        what.clear();
    }
    return {};
}

void server::start() {
    auto ex = ioc_.get_executor();
    if (data_acceptor_) {
        auto e = task_group::make_entry();
        listeners_.spawn(ex, run_accept_loop(state_, std::move(*data_acceptor_), listener_kind::data, e), e);
        data_acceptor_.reset();
        state_->listening = true;
    }
    if (admin_acceptor_) {
        auto e = task_group::make_entry();
        listeners_.spawn(ex, run_accept_loop(state_, std::move(*admin_acceptor_), listener_kind::admin, e), e);
        admin_acceptor_.reset();
    }
    if (tls_acceptor_) {
        auto e = task_group::make_entry();
        listeners_.spawn(ex, run_accept_loop(state_, std::move(*tls_acceptor_), listener_kind::tls, e, tls_ctx_), e);
        tls_acceptor_.reset();
    }
}

void server::apply(std::shared_ptr<const snapshot> next) {
    const auto previous = state_->snapshots.load();
    const auto& before = *previous->cfg;
    const auto& after = *next->cfg;
    static const auto log = logging::logger("proxy");
    if (!(before.listen == after.listen) || !(before.admin_listen == after.admin_listen)) {
        log->warn("listen addresses changed in the new config: they take effect after a restart");
    }
    state_->pool.set_max_idle_per_origin(after.limits.max_idle_upstream_per_host);
    state_->snapshots.store(std::move(next));
    state_->pool.clear();  // idle connections may carry the old TLS settings
    state_->h2_pool.clear();
}

net::awaitable<void> server::shutdown() {
    using clock = std::chrono::steady_clock;
    static const auto log = logging::logger("proxy");
    const auto grace = state_->snapshots.load()->cfg->timeouts.shutdown_grace;
    state_->draining = true;
    state_->listening = false;
    listeners_.stop_all();
    co_await listeners_.wait_empty(clock::now() + std::chrono::seconds(5));

    state_->admin_sessions.stop_all();
    state_->rejects.stop_all();
    state_->sessions.stop_idle();
    log->info("draining {} connection(s) for up to {} ms", state_->sessions.size(), grace.count());
    if (!co_await state_->sessions.wait_empty(clock::now() + grace)) {
        log->warn("shutdown grace over: cancelling {} connection(s)", state_->sessions.size());
        state_->sessions.stop_all();
        co_await state_->sessions.wait_empty(clock::now() + std::chrono::seconds(5));
    }
    co_await state_->admin_sessions.wait_empty(clock::now() + std::chrono::seconds(5));
    co_await state_->rejects.wait_empty(clock::now() + std::chrono::seconds(5));
    state_->pool.clear();
    state_->h2_pool.close_all();
}

}  // namespace acp::proxy
