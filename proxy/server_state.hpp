// State shared by the listeners and sessions of one io_context: the current
// snapshot, the upstream pool, metrics, the task groups and lifecycle flags.
//
// Owns: the objects above. Thread affinity: the io_context thread, except
// `snapshots`, which may be loaded from anywhere. Sessions hold it by
// shared_ptr; the server outlives them by waiting for the task groups.
#pragma once

#include "proxy/h2_upstream.hpp"
#include "proxy/metrics.hpp"
#include "proxy/pod_watcher.hpp"
#include "proxy/scope_gate.hpp"
#include "proxy/snapshot.hpp"
#include "proxy/task_group.hpp"
#include "proxy/upstream_pool.hpp"
#include "tokens/acr_password_store.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace acp::proxy {

struct server_state {
    server_state(std::shared_ptr<const snapshot> initial, const net::any_io_executor& ex);

    snapshot_holder snapshots;
    upstream_pool pool;
    h2_upstream_pool h2_pool;  // shared HTTP/2 upstream connections (http2: auto|on)
    metrics stats;
    task_group sessions{"downstream"};
    task_group admin_sessions{"admin"};
    task_group rejects{"reject"};
    bool listening = false;  // the data listener is accepting
    bool draining = false;   // SIGTERM received: no new requests on kept-alive connections
    /// The node's ACR temporary passwords, owned by serve(); null without ACR
    /// instances. Read lock-free (readiness, metrics).
    const tokens::acr_password_store* acr = nullptr;
    /// The pull scope's pod watcher, owned by serve(); null when the scope is
    /// off (every pull allowed). Its index is read lock-free per request.
    pod_watcher* scope = nullptr;
    /// Wakes requests waiting for their pod (posted here by the watcher thread).
    scope_signal scope_changed;

    /// A request id unique within this process run: a random prefix and a counter.
    std::string next_request_id();

private:
    std::string id_prefix_;
    std::uint64_t counter_ = 0;
};

}  // namespace acp::proxy
