// The network probes of `acr-credential-proxy doctor`, each bounded by a
// deadline: a libcurl client whose every request is clamped to it, name
// lookups that stop waiting at it, and a connect (+ TLS) + unauthenticated
// GET made exactly as the proxy dials an upstream (connect_upstream: SNI,
// peer verification against the route's CA).
//
// Owns: nothing between calls. Thread affinity: the calling thread, which
// blocks (a CLI, never the data path). probe_upstream() runs its coroutine on
// a private io_context to completion; resolve_bounded() leaves a lookup that
// overruns to finish on a detached thread (its answer is dropped).
#pragma once

#include "proxy/snapshot.hpp"
#include "tokens/alibaba_http_client.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace acp::proxy::doctor {

/// `inner` with every request's timeout and connect timeout clamped to `limit`.
std::unique_ptr<tokens::http_client> make_bounded_http_client(std::unique_ptr<tokens::http_client> inner,
                                                              std::chrono::milliseconds limit);

struct lookup {
    std::vector<std::string> addresses;  // numeric, de-duplicated
    std::string error;                   // empty: resolved
};

/// getaddrinfo(host), waited for at most `timeout` (the system resolver has no deadline of its own).
lookup resolve_bounded(const std::string& host, std::chrono::milliseconds timeout);

/// An IPv4 or IPv6 literal (no lookup needed).
bool is_ip_literal(const std::string& host);

struct upstream_probe {
    bool connected = false;  // TCP connected and, for https, the TLS handshake verified
    std::string error;       // the connect/TLS failure, or the GET's
    unsigned status = 0;     // the GET's status (0: no GET or it failed)
    std::vector<std::string> www_authenticate;
};

/// Connects to `ep` within `timeout` (name resolution by the system
/// resolver's limits: resolve_bounded first) and, when `target` is not
/// empty, sends `GET target` without credentials and reads the response head
/// within `timeout`.
upstream_probe probe_upstream(const upstream_endpoint& ep, const std::string& target,
                              std::chrono::milliseconds timeout);

}  // namespace acp::proxy::doctor
