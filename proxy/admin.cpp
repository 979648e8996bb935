#include "proxy/admin.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>

namespace acp::proxy {
namespace {

// Prometheus text lines for the credential store's samples.
std::string render_samples(const std::vector<tokens::metric_sample>& samples) {
    std::string out;
    for (const auto& m : samples) {
        out += m.name;
        if (!m.labels.empty()) {
            out += '{';
            bool first = true;
            for (const auto& [k, v] : m.labels) {
                out += first ? "" : ",";
                out += k + "=\"";
                for (const char c : v) {
                    if (c == '\\' || c == '"') {
                        out += '\\';
                    }
                    out += c == '\n' ? ' ' : c;
                }
                out += '"';
                first = false;
            }
            out += '}';
        }
        out += ' ' + fmt::format("{}", m.value) + '\n';
    }
    return out;
}

// The pod watcher's gauges and counters (issue 10).
std::string scope_metrics(const pod_watcher& w) {
    const auto index = w.holder().load();
    std::string out;
    out += "# HELP acp_scope_pods_indexed Pods on this node in the scope index (in scope or not).\n";
    out += "# TYPE acp_scope_pods_indexed gauge\n";
    out += fmt::format("acp_scope_pods_indexed {}\n", index->pods_indexed());
    out += "# HELP acp_scope_references_indexed Distinct (registry host, repository) referenced by in-scope pods.\n";
    out += "# TYPE acp_scope_references_indexed gauge\n";
    out += fmt::format("acp_scope_references_indexed {}\n", index->references_indexed());
    out += "# HELP acp_scope_watch_up 1 while the pod watch stream is open.\n";
    out += "# TYPE acp_scope_watch_up gauge\n";
    out += fmt::format("acp_scope_watch_up {}\n", w.watching() ? 1 : 0);
    out += "# HELP acp_scope_watch_reconnects_total Pod watches that ended abnormally and were opened again.\n";
    out += "# TYPE acp_scope_watch_reconnects_total counter\n";
    out += fmt::format("acp_scope_watch_reconnects_total {}\n", w.reconnects());
    out += "# HELP acp_scope_relists_total Pod re-lists after the watch's resourceVersion expired (410 Gone).\n";
    out += "# TYPE acp_scope_relists_total counter\n";
    out += fmt::format("acp_scope_relists_total {}\n", w.relists());
    return out;
}

}  // namespace

http::response<http::string_body> admin_response(const server_state& state, http::verb method,
                                                 std::string_view target) {
    http::response<http::string_body> res{http::status::not_found, 11};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.set(http::field::cache_control, "no-store");
    const auto path = target.substr(0, target.find('?'));
    if (method != http::verb::get && method != http::verb::head) {
        res.result(http::status::method_not_allowed);
        res.set(http::field::allow, "GET, HEAD");
        res.body() = "method not allowed\n";
    } else if (path == "/healthz") {
        res.result(http::status::ok);
        res.body() = "ok\n";
    } else if (path == "/readyz") {
        const auto snap = state.snapshots.load();
        const bool serving = state.listening && !state.draining && snap != nullptr;
        const bool credentials = state.acr == nullptr || state.acr->ready();
        res.result(serving && credentials ? http::status::ok : http::status::service_unavailable);
        if (!serving) {
            res.body() = state.draining ? "draining\n" : "not listening\n";
        } else if (!credentials) {
            res.body() = "not ready: ACR credentials\n";
            for (const auto& inst : state.acr->status()) {
                if (!inst.ready) {
                    res.body() += "  instance " + inst.instance + ": " +
                                  (inst.reason.empty() ? std::string("no password yet") : inst.reason) + "\n";
                }
            }
        } else {
            res.body() = "ready\n";
        }
    } else if (path == "/metrics") {
        res.result(http::status::ok);
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = state.stats.render();
        if (const auto snap = state.snapshots.load()) {
            snap->auth.append_metrics(res.body());
        }
        if (state.acr != nullptr) {
            res.body() += render_samples(state.acr->collect_metrics());
        }
        if (state.scope != nullptr) {
            res.body() += scope_metrics(*state.scope);
        }
    } else {
        res.body() = "not found\n";
    }
    res.prepare_payload();
    return res;
}

net::awaitable<void> run_admin_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                       std::shared_ptr<task_group::entry> entry) {
    beast::tcp_stream stream(std::move(socket));
    entry->stop = [&stream] {
        error_code ec;
        stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream.close();
    };
    struct clear_hook {
        task_group::entry& e;
        ~clear_hook() { e.stop = nullptr; }
    } guard{*entry};
    beast::flat_buffer buffer;
    for (;;) {
        const auto t = state->snapshots.load()->cfg->timeouts;
        http::request_parser<http::empty_body> parser;
        parser.header_limit(8 * 1024);
        stream.expires_after(t.idle);
        auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, use_nothrow);
        if (ec) {
            break;
        }
        const auto& req = parser.get();
        const bool body = parser.chunked() || parser.content_length().value_or(0) > 0;
        auto res = admin_response(*state, req.method(), req.target());
        res.keep_alive(req.keep_alive() && !body && !state->draining);
        stream.expires_after(t.idle);
        error_code wec;
        if (req.method() == http::verb::head) {
            http::response_serializer<http::string_body> sr{res};
            auto [e, w] = co_await http::async_write_header(stream, sr, use_nothrow);
            wec = e;
        } else {
            auto [e, w] = co_await http::async_write(stream, res, use_nothrow);
            wec = e;
        }
        if (wec || !res.keep_alive()) {
            break;
        }
    }
    error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.close();
}

}  // namespace acp::proxy
