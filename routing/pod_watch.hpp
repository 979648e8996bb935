// The pod watcher's protocol, the pure part (issue 10): the API server
// request targets for this node's pods (list, then watch from the list's
// resourceVersion with bookmarks), the newline framing of the watch stream,
// and what each event does to the pod index (upsert, remove, keep the
// resourceVersion, re-list on 410 Gone, reconnect on other errors).
//
// Owns: pod_list_target / pod_watch_target (pure functions), watch_line_splitter
// and pod_watch_state (plain values, no I/O).
//
// Thread affinity: a watch_line_splitter and a pod_watch_state belong to the
// one control thread that runs the watch (libcurl list + watch). After
// each change it publishes state.snapshot() through pod_index_holder::store
// (routing/pod_scope.hpp); the data path only ever sees those immutable
// snapshots. No async calls here: the caller owns connections, timeouts and
// reconnect backoff.
#pragma once

#include "routing/pod_scope.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace acp::routing {

/// `GET` target listing the pods bound to `node_name` (a DNS subdomain, from
/// the downward API): /api/v1/pods?fieldSelector=spec.nodeName%3D<node>, with
/// `&resourceVersion=<rv>` when `resource_version` is not empty. "0" (the
/// first list, as client-go's reflector does) lets the API server answer from
/// its watch cache instead of a quorum read of every pod in etcd — what a
/// DaemonSet on every node must do; "" (a re-list after 410 Gone) asks for a
/// consistent read so the index never goes back in time.
[[nodiscard]] std::string pod_list_target(std::string_view node_name, std::string_view resource_version = "0");

/// `GET` target watching them from `resource_version` (percent-encoded),
/// with bookmarks, the server ending the watch after `timeout` (>= 1 s).
[[nodiscard]] std::string pod_watch_target(std::string_view node_name, std::string_view resource_version,
                                           std::chrono::seconds timeout);

/// Splits the watch response body (any chunking) into lines. A line longer
/// than `max_line` bytes (without its newline) poisons the splitter: the
/// caller drops the connection and watches again.
class watch_line_splitter {
public:
    explicit watch_line_splitter(std::size_t max_line = max_watch_line_bytes) : max_line_(max_line) {}

    /// Appends bytes; returns the lines they complete, without "\n" (a "\r"
    /// before it stays: parse_watch_line ignores surrounding whitespace). Blank
    /// lines are dropped. Returns nothing once overflowed().
    std::vector<std::string> feed(std::string_view bytes);
    [[nodiscard]] bool overflowed() const noexcept { return overflowed_; }
    /// Bytes of an incomplete line held back.
    [[nodiscard]] std::size_t buffered() const noexcept { return partial_.size(); }

private:
    std::size_t max_line_;
    std::string partial_;
    bool overflowed_ = false;
};

/// What the watcher does after an event.
enum class watch_action {
    none,           // nothing to publish (bookmark, an unchanged pod)
    index_changed,  // publish a new snapshot
    relist,         // 410 Gone / Expired: the resourceVersion is too old, list again
    reconnect,      // another ERROR: watch again from resource_version() after a backoff
};
[[nodiscard]] std::string_view to_string(watch_action a) noexcept;

/// The watcher's state: the index and where the watch resumes.
class pod_watch_state {
public:
    /// `node_name` empty: accept pods of any node (a kubeconfig watch without fieldSelector).
    pod_watch_state(scope_rule rule, std::string node_name)
        : index_(std::move(rule)), node_name_(std::move(node_name)) {}

    /// After a list: every pod replaced (pods of another node dropped), the
    /// watch resumes from the list's resourceVersion.
    void reset(pod_list list);
    /// One event of the watch.
    watch_action apply(const watch_event& ev);
    /// A reloaded config's rule (publish a snapshot afterwards).
    void set_rule(scope_rule rule) { index_.set_rule(std::move(rule)); }

    [[nodiscard]] const pod_index& index() const noexcept { return index_; }
    /// Empty until the first list, and again after a relist action.
    [[nodiscard]] const std::string& resource_version() const noexcept { return resource_version_; }
    /// An immutable copy to publish.
    [[nodiscard]] std::shared_ptr<const pod_index> snapshot() const {
        return std::make_shared<const pod_index>(index_);
    }

private:
    [[nodiscard]] bool on_this_node(const pod_info& p) const;

    pod_index index_;
    std::string node_name_;
    std::string resource_version_;
};

}  // namespace acp::routing
