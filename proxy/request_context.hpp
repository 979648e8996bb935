// The per-request record: what the access log line and the metrics say
// about one downstream request. Lives in the session coroutine's frame.
//
// Owns: plain data, and the access log line (logger "access"). Never holds a
// secret: `auth` says who authenticated, not with what.
#pragma once

#include "proxy/net.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace acp::proxy {

struct request_context {
    std::string id;  // unique per process run
    std::string method;
    std::string registry = "-";             // route host, or the ns asked for when unrouted
    std::string metrics_registry = "none";  // route host only (bounded label set)
    std::string repository = "-";
    std::string kind = "-";  // ping|manifest|blob|tags, "-" before parsing
    unsigned status = 0;
    std::uint64_t bytes = 0;  // body bytes sent downstream
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::optional<std::chrono::steady_clock::duration> to_headers;     // until the response head was sent
    std::optional<std::chrono::steady_clock::duration> upstream_time;  // until the upstream head arrived
    std::string auth = "none";                                         // "injected:<provider>", "client", "none"
    int redirects = 0;
    std::string error;  // failure detail, no secrets
};

/// One access log line for a finished request.
void log_access(const request_context& rc);

}  // namespace acp::proxy
