// libFuzzer target: what the Kubernetes API server sends the pod watcher — a
// watch-stream line, a PodList answer or a bare Pod — parsed by
// routing/pod_scope.hpp and fed to the index. Never a crash; errors are
// non-empty, bounded, single-line; a parsed pod has its identity and only
// normalised references; the index answers consistently with the rule.
#include "routing/distribution_path.hpp"
#include "routing/pod_scope.hpp"
#include "routing/pod_watch.hpp"
#include "tests/fuzz/fuzz_support.hpp"

#include <cstdint>
#include <string>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using acp::fuzz::require;
using namespace acp::routing;

void check_error(const std::string& e) {
    require(!e.empty() && e.size() <= max_error_length && !acp::fuzz::has_control(e));
}

void check_pod(const pod_info& p) {
    require(!p.namespace_name.empty() && !p.name.empty() && !p.uid.empty() && !p.service_account.empty());
    require(!acp::fuzz::has_control(p.id()));
    require(p.references.size() <= p.images.size() && p.invalid_images.size() <= 8);
    for (const auto& ref : p.references) {
        require(is_valid_host(ref.host) && is_valid_name(ref.repository));
        for (const char c : ref.host) {
            require(!(c >= 'A' && c <= 'Z'));
        }
    }
}

// Every reference of an in-scope pod is allowed, every reference of the index is known.
void check_index(const std::vector<pod_info>& pods) {
    acp::config::scope_config c;
    c.enabled = true;
    pod_index defaults(scope_rule::from(c));
    c.namespaces = {"*"};
    c.service_accounts = {"*"};
    pod_index everyone(scope_rule::from(c));
    defaults.replace_all(pods);
    everyone.replace_all(pods);
    for (const auto& listed : pods) {
        // A list may repeat a uid: the index keeps the last one.
        const auto* stored = everyone.find(listed.uid);
        require(stored != nullptr);
        const auto& p = *stored;
        for (const auto& ref : p.references) {
            require(everyone.decide(ref.host, ref.repository).verdict == scope_verdict::allowed);
            const auto d = defaults.decide(ref.host, ref.repository);
            require(d.verdict != scope_verdict::unknown);
            require(!d.reason.empty() && !acp::fuzz::has_control(d.reason));
            if (defaults.rule().allows(p)) {
                require(d.verdict == scope_verdict::allowed);
            }
        }
    }
    require(defaults.references_indexed() <= everyone.references_indexed());
    for (const auto& p : pods) {
        everyone.remove(p.uid);
    }
    require(everyone.pods_indexed() == 0 && everyone.references_indexed() == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto input = acp::fuzz::as_text(data, size);

    const auto line = parse_watch_line(input);
    if (!line.event) {
        check_error(line.error);
    } else {
        const auto& ev = *line.event;
        require(!acp::fuzz::has_control(ev.error_message) && ev.error_message.size() <= 210);
        require(!acp::fuzz::has_control(ev.resource_version));
        if (ev.type == watch_event_type::bookmark) {
            require(!ev.resource_version.empty() && !ev.pod);
        } else if (ev.type == watch_event_type::error) {
            require(!ev.pod);
        } else {
            require(ev.pod.has_value());
            check_pod(*ev.pod);
            check_index({*ev.pod});
        }
    }

    const auto list = parse_pod_list(input);
    if (!list.list) {
        check_error(list.error);
    } else {
        require(!list.list->resource_version.empty());
        require(list.list->skipped.size() <= 16 && list.list->skipped.size() <= list.list->skipped_count);
        for (const auto& e : list.list->skipped) {
            check_error(e);
        }
        for (const auto& p : list.list->pods) {
            check_pod(p);
        }
        check_index(list.list->pods);
    }

    // The input as a stream: split at a byte it chooses, framed, every line applied to the watcher's state.
    {
        watch_line_splitter splitter(4096);
        const auto cut = input.empty() ? 0 : static_cast<unsigned char>(input[0]) % (input.size() + 1);
        auto lines = splitter.feed(input.substr(0, cut));
        for (auto& l : splitter.feed(input.substr(cut))) {
            lines.push_back(std::move(l));
        }
        require(splitter.buffered() <= 4096);
        acp::config::scope_config c;
        c.enabled = true;
        pod_watch_state state(scope_rule::from(c), "node-1");
        for (const auto& l : lines) {
            require(l.size() <= 4096 && l.find('\n') == std::string::npos);
            const auto ev = parse_watch_line(l);
            if (!ev.event) {
                continue;
            }
            const auto action = state.apply(*ev.event);
            if (action == watch_action::relist) {
                require(state.resource_version().empty());
            }
            if (ev.event->pod && action == watch_action::index_changed) {
                const auto* stored = state.index().find(ev.event->pod->uid);
                require(stored == nullptr || stored->node_name == "node-1");
            }
        }
    }

    const auto pod = parse_pod_text(input);
    if (!pod.pod) {
        check_error(pod.error);
    } else {
        check_pod(*pod.pod);
    }
    return 0;
}
