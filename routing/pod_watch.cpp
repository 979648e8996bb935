#include "routing/pod_watch.hpp"

#include "config/values.hpp"

#include <utility>

namespace acp::routing {
namespace {

bool unreserved(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

std::string percent_encoded(std::string_view s) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (const char c : s) {
        if (unreserved(c)) {
            out += c;
        } else {
            const auto u = static_cast<unsigned char>(c);
            out += '%';
            out += hex[u >> 4];
            out += hex[u & 0x0f];
        }
    }
    return out;
}

}  // namespace

namespace {

std::string selector_target(std::string_view node_name) {
    return "/api/v1/pods?fieldSelector=" + percent_encoded("spec.nodeName=" + std::string(node_name));
}

}  // namespace

std::string pod_list_target(std::string_view node_name, std::string_view resource_version) {
    auto target = selector_target(node_name);
    if (!resource_version.empty()) {
        target += "&resourceVersion=" + percent_encoded(resource_version);
    }
    return target;
}

std::string pod_watch_target(std::string_view node_name, std::string_view resource_version,
                             std::chrono::seconds timeout) {
    const auto seconds = timeout.count() < 1 ? 1 : timeout.count();
    return selector_target(node_name) +
           "&watch=1&allowWatchBookmarks=true&resourceVersion=" + percent_encoded(resource_version) +
           "&timeoutSeconds=" + std::to_string(seconds);
}

std::vector<std::string> watch_line_splitter::feed(std::string_view bytes) {
    std::vector<std::string> lines;
    if (overflowed_) {
        return lines;
    }
    while (!bytes.empty()) {
        const auto nl = bytes.find('\n');
        const auto part = bytes.substr(0, nl);
        if (partial_.size() + part.size() > max_line_) {
            overflowed_ = true;
            partial_.clear();
            partial_.shrink_to_fit();
            lines.clear();
            return lines;
        }
        partial_.append(part);
        if (nl == std::string_view::npos) {
            break;
        }
        if (!config::trim(partial_).empty()) {
            lines.push_back(std::move(partial_));
        }
        partial_.clear();
        bytes.remove_prefix(nl + 1);
    }
    return lines;
}

std::string_view to_string(watch_action a) noexcept {
    switch (a) {
        case watch_action::none:
            return "none";
        case watch_action::index_changed:
            return "index_changed";
        case watch_action::relist:
            return "relist";
        case watch_action::reconnect:
            return "reconnect";
    }
    return "?";
}

bool pod_watch_state::on_this_node(const pod_info& p) const {
    // An unscheduled pod (no nodeName) pulls nothing yet; a field-selected
    // watch never shows one, but a kubeconfig watch without selector might.
    return node_name_.empty() || p.node_name == node_name_;
}

void pod_watch_state::reset(pod_list list) {
    std::vector<pod_info> pods;
    pods.reserve(list.pods.size());
    for (auto& p : list.pods) {
        if (on_this_node(p)) {
            pods.push_back(std::move(p));
        }
    }
    index_.replace_all(std::move(pods));
    resource_version_ = std::move(list.resource_version);
}

watch_action pod_watch_state::apply(const watch_event& ev) {
    switch (ev.type) {
        case watch_event_type::bookmark:
            resource_version_ = ev.resource_version;
            return watch_action::none;
        case watch_event_type::error:
            if (ev.needs_relist()) {
                resource_version_.clear();
                return watch_action::relist;
            }
            return watch_action::reconnect;
        case watch_event_type::added:
        case watch_event_type::modified:
        case watch_event_type::deleted:
            break;
    }
    if (!ev.resource_version.empty()) {
        resource_version_ = ev.resource_version;
    }
    if (!ev.pod) {
        return watch_action::none;
    }
    const bool changed = (ev.type == watch_event_type::deleted || !on_this_node(*ev.pod)) ? index_.remove(ev.pod->uid)
                                                                                          : index_.upsert(*ev.pod);
    return changed ? watch_action::index_changed : watch_action::none;
}

}  // namespace acp::routing
