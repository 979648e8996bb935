#include "proxy/server.hpp"

#include "config/logging.hpp"
#include "proxy/admin.hpp"
#include "proxy/downstream_session.hpp"

#include <boost/asio/steady_timer.hpp>

namespace acp::proxy {
namespace {

enum class listener_kind { data, admin };

// Connections beyond maxConnections that still get a 503 (beyond: closed at once).
constexpr std::size_t max_rejecting = 64;
constexpr std::size_t max_admin_sessions = 64;

error_code open_acceptor(net::io_context& ioc, const config::listen_address& where, std::optional<tcp::acceptor>& out,
                         tcp::endpoint& bound) {
    error_code ec;
    const auto address = net::ip::make_address(where.host, ec);
    if (ec) {
        return ec;
    }
    tcp::acceptor a(ioc);
    const tcp::endpoint ep(address, where.port);
    if (a.open(ep.protocol(), ec); ec) {
        return ec;
    }
    if (a.set_option(tcp::acceptor::reuse_address(true), ec); ec) {
        return ec;
    }
    if (a.bind(ep, ec); ec) {
        return ec;
    }
    if (a.listen(net::socket_base::max_listen_connections, ec); ec) {
        return ec;
    }
    bound = a.local_endpoint(ec);
    out.emplace(std::move(a));
    return ec;
}

net::awaitable<void> run_accept_loop(std::shared_ptr<server_state> state, tcp::acceptor acceptor, listener_kind kind,
                                     std::shared_ptr<task_group::entry> entry) {
    entry->stop = [&acceptor] {
        error_code ec;
        acceptor.close(ec);
    };
    struct clear_hook {
        task_group::entry& e;
        ~clear_hook() { e.stop = nullptr; }
    } guard{*entry};
    auto ex = acceptor.get_executor();
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
        auto e = task_group::make_entry();
        state->sessions.spawn(ex, run_downstream_session(state, std::move(socket), e), e);
    }
}

}  // namespace

server::server(net::io_context& ioc, std::shared_ptr<const snapshot> initial)
    : ioc_(ioc), state_(std::make_shared<server_state>(std::move(initial))) {}

server::~server() {
    error_code ec;
    if (data_acceptor_) {
        data_acceptor_->close(ec);
    }
    if (admin_acceptor_) {
        admin_acceptor_->close(ec);
    }
}

error_code server::listen(std::string& what) {
    const auto cfg = state_->snapshots.load()->cfg;
    if (auto ec = open_acceptor(ioc_, cfg->listen, data_acceptor_, data_endpoint_)) {
        what = "listen " + cfg->listen.host + ":" + std::to_string(cfg->listen.port);
        return ec;
    }
    if (auto ec = open_acceptor(ioc_, cfg->admin_listen, admin_acceptor_, admin_endpoint_)) {
        what = "adminListen " + cfg->admin_listen.host + ":" + std::to_string(cfg->admin_listen.port);
        return ec;
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
}

}  // namespace acp::proxy
