// Pod-aware pull scope (issue 10), the pure layers: Kubernetes Pod objects,
// watch-stream lines and List answers parsed into plain data, and the index
// that answers "may (registry host, repository) be pulled with our
// credentials?" from the pods on this node and the configured rule (the
// add-on's watch-namespace / service-account).
//
// Owns: parse_pod / parse_watch_line / parse_pod_list (pure functions, bounded
// input, no I/O), scope_rule, pod_index and pod_index_holder.
//
// Thread affinity: the parsers are safe on any thread. A pod_index is a plain
// value: the control thread (the pod watcher) owns one, mutates it with
// upsert/remove/replace_all, then publishes an immutable copy through
// pod_index_holder::store(std::make_shared<const pod_index>(index)); the
// data path calls pod_index_holder::load() once per request and keeps that
// snapshot for the request (the proxy/snapshot.hpp pattern). A published
// index is never mutated, so readers need no lock. No async calls here: the
// caller waits (up to scope.waitForPod) for a new snapshot when decide()
// answers `unknown`.
//
// Nothing from a Pod's spec except validated names and image references
// reaches an error message or a decision reason: a spec may hold literal
// environment values (secrets), so raw input is never echoed.
#pragma once

#include "config/config.hpp"
#include "routing/image_ref.hpp"

#include <nlohmann/json_fwd.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace acp::routing {

// ---- parsing ---------------------------------------------------------------------

inline constexpr std::size_t max_watch_line_bytes = 4 * 1024 * 1024;  // one event (a Pod is < 1.5 MiB in etcd)
inline constexpr std::size_t max_pod_list_bytes = 64 * 1024 * 1024;   // one List answer for this node
inline constexpr std::size_t max_json_depth = 64;                     // nesting, checked before parsing
inline constexpr std::size_t max_images_per_pod = 1024;               // containers + init + ephemeral
inline constexpr std::size_t max_error_length = 300;                  // every error string is at most this long

/// (registry host, repository) as containerd asks the mirror for it.
struct image_key {
    std::string host;        // lower-case host[:port], "docker.io" for familiar names
    std::string repository;  // "library/alpine"
    [[nodiscard]] std::string str() const { return host + "/" + repository; }
    auto operator<=>(const image_key&) const = default;
    bool operator==(const image_key&) const = default;
};

/// What the index needs from one Pod.
struct pod_info {
    std::string namespace_name;               // metadata.namespace
    std::string name;                         // metadata.name
    std::string uid;                          // metadata.uid (the index key)
    std::string resource_version;             // metadata.resourceVersion, may be empty
    std::string service_account = "default";  // spec.serviceAccountName (or the deprecated serviceAccount)
    std::string node_name;                    // spec.nodeName, empty while unscheduled
    std::string phase;                        // status.phase, may be empty
    bool deleting = false;                    // metadata.deletionTimestamp is set
    std::vector<std::string> images;          // as written, containers then init then ephemeral, deduplicated
    std::vector<image_key> references;        // normalised, sorted, deduplicated
    std::vector<std::string> invalid_images;  // images that are not references (skipped), at most 8, each bounded

    [[nodiscard]] std::string id() const { return namespace_name + "/" + name; }
    bool operator==(const pod_info&) const = default;
};

struct pod_result {
    std::optional<pod_info> pod;
    std::string error;  // when pod is nullopt: one line, names the field ("metadata.uid missing")
};

/// A Pod object (already parsed JSON). Requires metadata.namespace (a DNS
/// label), metadata.name (a DNS subdomain) and metadata.uid; everything else
/// is optional. A serviceAccountName that is not a DNS subdomain is an error.
[[nodiscard]] pod_result parse_pod(const nlohmann::json& object);
/// The same from JSON text (bounded by max_watch_line_bytes and max_json_depth).
/// (Not an overload: a string would convert to both string_view and json.)
[[nodiscard]] pod_result parse_pod_text(std::string_view json_text);

enum class watch_event_type { added, modified, deleted, bookmark, error };
[[nodiscard]] std::string_view to_string(watch_event_type t) noexcept;

/// One line of `GET /api/v1/pods?watch=1&allowWatchBookmarks=true…`.
struct watch_event {
    watch_event_type type = watch_event_type::added;
    std::optional<pod_info> pod;   // added / modified / deleted
    std::string resource_version;  // the object's metadata.resourceVersion (a bookmark carries only this)
    int error_code = 0;            // error: the Status code (410: the resourceVersion is too old)
    std::string error_reason;      // error: Status reason ("Expired", "Gone"), validated, bounded
    std::string error_message;     // error: Status message, control bytes replaced, bounded

    /// The watch cannot resume from its resourceVersion: list again.
    [[nodiscard]] bool needs_relist() const noexcept {
        return type == watch_event_type::error &&
               (error_code == 410 || error_reason == "Expired" || error_reason == "Gone");
    }
};

struct watch_line_result {
    std::optional<watch_event> event;
    std::string error;  // when event is nullopt: why the line is unusable (the watcher then reconnects)
};

/// One newline-delimited JSON event (surrounding whitespace ignored).
[[nodiscard]] watch_line_result parse_watch_line(std::string_view line);

/// `GET /api/v1/pods?fieldSelector=spec.nodeName=…` (a PodList).
struct pod_list {
    std::vector<pod_info> pods;
    std::string resource_version;      // metadata.resourceVersion: where the watch starts
    std::vector<std::string> skipped;  // items that are not usable pods: why (at most 16)
    std::size_t skipped_count = 0;
};

struct pod_list_result {
    std::optional<pod_list> list;
    std::string error;
};

/// A PodList answer. Unusable items are skipped (and counted), not fatal; a
/// body that is not a list, or has no metadata.resourceVersion, is.
[[nodiscard]] pod_list_result parse_pod_list(std::string_view body);

// ---- the rule and the index -------------------------------------------------------

/// The configured rule in the form the index uses.
struct scope_rule {
    bool enabled = false;  // false: every pull is allowed ("unscoped")
    bool all_namespaces = false;
    std::vector<std::string> namespaces;  // empty when all_namespaces
    bool all_service_accounts = false;
    std::vector<std::string> service_accounts;  // empty when all_service_accounts

    [[nodiscard]] static scope_rule from(const config::scope_config& c);
    [[nodiscard]] bool namespace_allowed(std::string_view ns) const;
    [[nodiscard]] bool service_account_allowed(std::string_view sa) const;
    [[nodiscard]] bool allows(const pod_info& p) const {
        return namespace_allowed(p.namespace_name) && service_account_allowed(p.service_account);
    }
    /// "watch-namespace: default,team-a" / "watch-namespace: all"
    [[nodiscard]] std::string describe_namespaces() const;
    /// "service-account: default" / "service-account: *"
    [[nodiscard]] std::string describe_service_accounts() const;
    bool operator==(const scope_rule&) const = default;
};

enum class scope_verdict {
    allowed,  // some in-scope pod on this node references it (or the scope is off)
    denied,   // only out-of-scope pods reference it: answer 404 at once
    unknown,  // no pod references it yet: wait up to waitForPod for a new index, then 404
};
[[nodiscard]] std::string_view to_string(scope_verdict v) noexcept;

struct scope_decision {
    scope_verdict verdict = scope_verdict::unknown;
    /// allowed: "referenced by pod ns/name" or "scope disabled";
    /// denied: the rule(s) that excluded every referencing pod;
    /// unknown: "no pod on this node references host/repo (yet)".
    /// One line, bounded (names at most 3 pods/namespaces, then "and N more").
    std::string reason;
};

class pod_index {
public:
    /// No default: a default scope_rule is disabled and allows every pull,
    /// so the rule is always spelled out.
    explicit pod_index(scope_rule rule) : rule_(std::move(rule)) {}

    /// Adds the pod or replaces the one with its uid (the stored pod is always
    /// the newest). Returns true when a decision may change (a new pod, or a
    /// new namespace, name, ServiceAccount or set of references); false for
    /// status-only updates, which need no new snapshot.
    bool upsert(pod_info pod);
    /// Removes the pod with this uid; false when there was none.
    bool remove(std::string_view uid);
    /// Replaces every pod (after a list or re-list).
    void replace_all(std::vector<pod_info> pods);
    /// A reloaded config's rule: the pods stay, decisions follow the new rule.
    void set_rule(scope_rule rule);

    [[nodiscard]] scope_decision decide(std::string_view host, std::string_view repository) const;

    [[nodiscard]] const scope_rule& rule() const noexcept { return rule_; }
    /// Metrics: pods indexed (every pod on the node, in scope or not).
    [[nodiscard]] std::size_t pods_indexed() const noexcept { return pods_.size(); }
    /// Metrics: distinct (host, repository) that in-scope pods reference.
    [[nodiscard]] std::size_t references_indexed() const noexcept { return in_scope_references_; }
    /// doctor --image: every pod referencing (host, repository), sorted by ns/name.
    [[nodiscard]] std::vector<const pod_info*> pods_referencing(std::string_view host,
                                                                std::string_view repository) const;
    [[nodiscard]] const pod_info* find(std::string_view uid) const;

private:
    void add_references(const pod_info& p);
    void drop_references(const pod_info& p);
    void recount();

    scope_rule rule_;
    std::map<std::string, pod_info, std::less<>> pods_;                           // by uid
    std::map<std::string, std::vector<std::string>, std::less<>> referenced_by_;  // "host/repo" -> uids, sorted
    std::size_t in_scope_references_ = 0;
};

/// The published index, swapped atomically (control thread stores, data path
/// loads). Starts with an empty index under `rule`: before the first list
/// every pull is `unknown` (waits, then 404), never allowed by accident.
/// generation() counts stores, so a request waiting for its pod re-decides
/// only when a new index was published.
///
/// A mutex, not std::atomic<std::shared_ptr>: the store comes from another
/// thread, and GCC 12's atomic<shared_ptr> swaps its raw pointer outside what
/// ThreadSanitizer can see as synchronised. The lock is held only to copy a
/// shared_ptr (uncontended: one store per pod event).
class pod_index_holder {
public:
    explicit pod_index_holder(const scope_rule& rule) : current_(std::make_shared<const pod_index>(rule)) {}
    [[nodiscard]] std::shared_ptr<const pod_index> load() const {
        std::lock_guard lock(mutex_);
        return current_;
    }
    void store(std::shared_ptr<const pod_index> i) {
        std::shared_ptr<const pod_index> old;  // the previous index is freed outside the lock
        {
            std::lock_guard lock(mutex_);
            old = std::exchange(current_, std::move(i));
        }
        generation_.fetch_add(1, std::memory_order_release);
    }
    [[nodiscard]] std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

private:
    mutable std::mutex mutex_;
    std::shared_ptr<const pod_index> current_;
    std::atomic<std::uint64_t> generation_{0};
};

}  // namespace acp::routing
