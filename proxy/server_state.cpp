#include "proxy/server_state.hpp"

#include <fmt/format.h>

#include <random>

namespace acp::proxy {

server_state::server_state(std::shared_ptr<const snapshot> initial, const net::any_io_executor& ex)
    : snapshots(std::move(initial)), h2_pool(ex) {
    std::random_device rd;
    id_prefix_ = fmt::format("{:08x}", rd());
    const auto cfg = snapshots.load()->cfg;
    pool.set_max_idle_per_origin(cfg->limits.max_idle_upstream_per_host);
    // A 1 MiB stream window: a single blob stream is not held to a window per
    // round trip of WINDOW_UPDATEs; a stalled client still holds at most 1 MiB.
    h2_settings h2;
    h2.stream_window = 1024 * 1024;
    h2_pool.set_settings(h2);
}

std::string server_state::next_request_id() {
    return fmt::format("{}-{:x}", id_prefix_, ++counter_);
}

}  // namespace acp::proxy
