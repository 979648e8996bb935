// The admin listener's sessions: /healthz (process alive), /readyz (data
// listener accepting, config loaded, not draining), /metrics (Prometheus
// text). Everything else is 404, /v2 included: no registry traffic here.
//
// Owns: nothing beyond the connection. Thread affinity: the io_context
// thread (it reads the metrics of that thread without locks).
#pragma once

#include "proxy/net.hpp"
#include "proxy/server_state.hpp"
#include "proxy/task_group.hpp"

#include <memory>
#include <string>

namespace acp::proxy {

/// Status and body for one admin request target (pure apart from reading `state`).
http::response<http::string_body> admin_response(const server_state& state, http::verb method, std::string_view target);

net::awaitable<void> run_admin_session(std::shared_ptr<server_state> state, tcp::socket socket,
                                       std::shared_ptr<task_group::entry> entry);

}  // namespace acp::proxy
