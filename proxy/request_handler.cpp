#include "proxy/request_handler.hpp"

#include "proxy/error.hpp"
#include "proxy/forward.hpp"
#include "proxy/h2_upstream.hpp"
#include "proxy/upstream_pool.hpp"

namespace acp::proxy {
namespace {

using clock = std::chrono::steady_clock;

// Header fields per request (431 above it): containerd sends fewer than ten;
// the byte limit alone would let 16 KiB of tiny fields through to the upstream.
constexpr std::size_t max_request_header_fields = 100;

// Framing that could be read two ways by two parsers (request smuggling):
// a repeated Content-Length, or Transfer-Encoding together with Content-Length.
bool ambiguous_framing(const http::request<http::empty_body>& req) {
    const auto lengths = req.count(http::field::content_length);
    return lengths > 1 || (lengths == 1 && req.count(http::field::transfer_encoding) != 0);
}

// Only trivially destructible parameters besides the references: GCC 12
// destroys non-trivial temporaries of a co_await full-expression twice.
net::awaitable<void> answer_locally(response_writer& out, request_context& rc, const local_reply& reply, bool head,
                                    std::string_view detail) {
    rc.status = static_cast<unsigned>(reply.status);
    rc.to_headers = clock::now() - rc.start;
    if (!detail.empty()) {
        rc.error = std::string(detail);
    }
    const auto ec = co_await out.write_local(reply, head, rc.id);
    if (ec && rc.error.empty()) {
        rc.error = "downstream write: " + ec.message();
    }
}

net::awaitable<void> answer_error(response_writer& out, request_context& rc, errc e, std::string_view registry,
                                  std::string_view detail, bool head, bool close = false) {
    auto reply = to_local_reply(make_error_code(e), {registry, "", "", detail});
    reply.close = reply.close || close;
    co_await answer_locally(out, rc, reply, head, detail);
}

}  // namespace

void request_io::stop() noexcept {
    scope.cancel();
    if (upstream != nullptr) {
        upstream->close();
    }
    if (upstream_h2 != nullptr) {
        upstream_h2->cancel();
    }
}

void record_request(server_state& st, const request_context& rc) {
    st.stats.on_request(rc.metrics_registry, rc.kind, rc.status,
                        std::chrono::duration_cast<config::duration>(rc.to_headers.value_or(clock::now() - rc.start)));
    log_access(rc);
}

net::awaitable<void> serve_request(server_state& st, const snapshot& snap, const http::request<http::empty_body>& req,
                                   bool has_body, response_writer& out, request_context& rc, request_io& io) {
    const bool head = req.method() == http::verb::head;
    rc.method = std::string(req.method_string().substr(0, 16));

    if (static_cast<std::size_t>(std::distance(req.begin(), req.end())) > max_request_header_fields) {
        co_await answer_error(out, rc, errc::header_too_large, "", "more than 100 header fields", head, true);
        co_return;
    }
    if (ambiguous_framing(req)) {
        co_await answer_error(out, rc, errc::request_smuggling, "", "", head);
        co_return;
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        // An unread request body would be taken for the next request: close after the answer.
        co_await answer_error(out, rc, errc::method_not_allowed, "", "", head, has_body);
        co_return;
    }
    if (has_body) {
        co_await answer_error(out, rc, errc::body_not_allowed, "", "", head);
        co_return;
    }

    auto path = routing::parse_target(req.target());
    if (!path) {
        const auto detail = std::string(routing::to_string(path.error()));
        co_await answer_error(out, rc, from_path_error(path.error()), "", detail, head);
        co_return;
    }
    rc.kind = std::string(routing::to_string(path->kind));
    if (path->kind == routing::request_kind::ping) {
        // `200 {}` for GET/HEAD /v2/ (never a 401: containerd would hand a pod's
        // pull secret to whoever challenges).
        const local_reply ping{http::status::ok, "{}", false, false};
        co_await answer_locally(out, rc, ping, head, "");
        co_return;
    }
    rc.repository = path->name;
    const auto* route = snap.routes.resolve(path->ns);
    if (route == nullptr) {
        // Never forwarded: the proxy is not an open proxy.
        rc.registry = path->ns.value_or("-");
        const auto ns = path->ns.value_or("");
        co_await answer_error(out, rc, errc::name_unknown, ns, "", head);
        co_return;
    }
    rc.registry = route->host;
    rc.metrics_registry = route->host;
    if (st.scope != nullptr) {
        // The pull scope (issue 10): credentials only for what an in-scope pod on this node references.
        const auto& holder = st.scope->holder();
        auto decision = holder.load()->decide(route->host, path->name);
        if (decision.verdict == routing::scope_verdict::unknown) {
            st.stats.on_scope_wait();
            auto wait =
                decide_scope(holder, st.scope_changed, route->host, path->name, snap.cfg->scope.wait_for_pod, io.scope);
            decision = co_await std::move(wait);
        }
        if (decision.verdict != routing::scope_verdict::allowed) {
            st.stats.on_scope_denied(decision.verdict == routing::scope_verdict::unknown);
            co_await answer_error(out, rc, errc::out_of_scope, route->host, decision.reason, head);
            rc.error = "scope: " + decision.reason;  // the access log says who refused it
            co_return;
        }
    }
    co_await forward_request({out, req, *path, *route, snap, st, rc, io});
}

}  // namespace acp::proxy
