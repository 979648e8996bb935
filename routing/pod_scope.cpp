#include "routing/pod_scope.hpp"

#include "config/values.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <utility>

namespace acp::routing {
namespace {

using json = nlohmann::json;

constexpr std::size_t max_invalid_images = 8;
constexpr std::size_t max_skipped_items = 16;
constexpr std::size_t max_named = 3;  // names listed in a decision reason before "and N more"

// Printable ASCII only, at most `limit` characters: for text from the API
// server (a Status message) or an image string that did not parse.
std::string clean(std::string_view text, std::size_t limit) {
    std::string out;
    for (const char c : text) {
        if (out.size() >= limit) {
            out += "...";
            break;
        }
        const auto u = static_cast<unsigned char>(c);
        out += (u >= 0x20 && u < 0x7f) ? c : '?';
    }
    return out;
}

std::string bounded(std::string s) {
    if (s.size() > max_error_length) {
        s.resize(max_error_length - 3);
        s += "...";
    }
    return s;
}

// Nesting depth of JSON text, without parsing it (strings skipped).
bool depth_within(std::string_view text, std::size_t max) {
    std::size_t depth = 0;
    bool in_string = false;
    bool escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max) {
                return false;
            }
        } else if ((c == '}' || c == ']') && depth > 0) {
            --depth;
        }
    }
    return true;
}

// Parses bounded JSON text; on failure sets `error`.
std::optional<json> parse_json(std::string_view text, std::size_t limit, std::string_view what, std::string& error) {
    if (text.size() > limit) {
        error = std::string(what) + " is larger than " + std::to_string(limit) + " bytes";
        return std::nullopt;
    }
    if (!depth_within(text, max_json_depth)) {
        error = std::string(what) + " nests deeper than " + std::to_string(max_json_depth) + " levels";
        return std::nullopt;
    }
    auto j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded()) {
        error = std::string(what) + " is not valid JSON";
        return std::nullopt;
    }
    return j;
}

const json* member(const json& obj, const char* key) {
    if (!obj.is_object()) {
        return nullptr;
    }
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
        return nullptr;
    }
    return &*it;
}

// An optional string member: absent/null -> "", not a string -> error.
bool optional_string(const json& obj, const char* key, std::string_view path, std::string& out, std::string& error) {
    const auto* v = member(obj, key);
    if (v == nullptr) {
        return true;
    }
    if (!v->is_string()) {
        error = std::string(path) + " is not a string";
        return false;
    }
    out = v->get_ref<const std::string&>();
    return true;
}

bool printable_token(std::string_view s, std::size_t max) {
    return s.size() <= max && std::all_of(s.begin(), s.end(), [](char c) {
               const auto u = static_cast<unsigned char>(c);
               return u > 0x20 && u < 0x7f;
           });
}

bool valid_uid(std::string_view s) {
    return !s.empty() && s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    });
}

bool valid_phase(std::string_view s) {
    return s.size() <= 32 &&
           std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); });
}

// Appends the images of spec.<key>[].image to `p`.
bool read_images(const json& spec, const char* key, pod_info& p, std::size_t& seen, std::string& error) {
    const auto* list = member(spec, key);
    if (list == nullptr) {
        return true;
    }
    if (!list->is_array()) {
        error = std::string("spec.") + key + " is not a list";
        return false;
    }
    for (const auto& c : *list) {
        if (!c.is_object()) {
            error = std::string("spec.") + key + "[] is not an object";
            return false;
        }
        if (++seen > max_images_per_pod) {
            error = "more than " + std::to_string(max_images_per_pod) + " containers";
            return false;
        }
        std::string image;
        if (!optional_string(c, "image", std::string("spec.") + key + "[].image", image, error)) {
            return false;
        }
        if (image.empty() || std::find(p.images.begin(), p.images.end(), image) != p.images.end()) {
            continue;
        }
        auto ref = parse_image_reference(image);
        if (!ref.ref) {
            if (p.invalid_images.size() < max_invalid_images) {
                p.invalid_images.push_back(clean(image, 100));
            }
            continue;
        }
        p.images.push_back(std::move(image));
        p.references.push_back(image_key{std::move(ref.ref->host), std::move(ref.ref->repository)});
    }
    return true;
}

pod_result pod_error(std::string e) {
    return pod_result{std::nullopt, bounded(std::move(e))};
}

std::string list_names(const std::set<std::string>& names) {
    std::string out;
    std::size_t n = 0;
    for (const auto& name : names) {
        if (n == max_named) {
            out += " and " + std::to_string(names.size() - max_named) + " more";
            break;
        }
        out += (n == 0 ? "" : ", ") + name;
        ++n;
    }
    return out;
}

std::string describe_names(std::string_view key, bool all, std::string_view all_word,
                           const std::vector<std::string>& names) {
    std::string out = std::string(key) + ": ";
    if (all) {
        return out + std::string(all_word);
    }
    constexpr std::size_t max_listed = 6;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i == max_listed) {
            out += ",... (" + std::to_string(names.size()) + " names)";
            break;
        }
        out += (i == 0 ? "" : ",") + names[i];
    }
    return out;
}

}  // namespace

// ---- parsing ---------------------------------------------------------------------

pod_result parse_pod(const json& object) {
    if (!object.is_object()) {
        return pod_error("the pod is not a JSON object");
    }
    const auto* metadata = member(object, "metadata");
    if (metadata == nullptr || !metadata->is_object()) {
        return pod_error("metadata missing or not an object");
    }
    pod_info p;
    std::string error;
    if (!optional_string(*metadata, "namespace", "metadata.namespace", p.namespace_name, error) ||
        !optional_string(*metadata, "name", "metadata.name", p.name, error) ||
        !optional_string(*metadata, "uid", "metadata.uid", p.uid, error) ||
        !optional_string(*metadata, "resourceVersion", "metadata.resourceVersion", p.resource_version, error)) {
        return pod_error(std::move(error));
    }
    if (p.namespace_name.empty()) {
        return pod_error("metadata.namespace missing");
    }
    if (!config::is_k8s_label(p.namespace_name)) {
        return pod_error("metadata.namespace is not a namespace name");
    }
    if (p.name.empty()) {
        return pod_error("metadata.name missing in namespace " + p.namespace_name);
    }
    if (!config::is_k8s_subdomain(p.name)) {
        return pod_error("metadata.name is not a pod name in namespace " + p.namespace_name);
    }
    if (p.uid.empty()) {
        return pod_error("metadata.uid missing for pod " + p.id());
    }
    if (!valid_uid(p.uid)) {
        return pod_error("metadata.uid is not a UID for pod " + p.id());
    }
    if (!printable_token(p.resource_version, 128)) {
        return pod_error("metadata.resourceVersion is not a resource version for pod " + p.id());
    }
    p.deleting = member(*metadata, "deletionTimestamp") != nullptr;

    if (const auto* spec = member(object, "spec")) {
        if (!spec->is_object()) {
            return pod_error("spec is not an object for pod " + p.id());
        }
        std::string sa;
        std::string sa_deprecated;
        if (!optional_string(*spec, "serviceAccountName", "spec.serviceAccountName", sa, error) ||
            !optional_string(*spec, "serviceAccount", "spec.serviceAccount", sa_deprecated, error) ||
            !optional_string(*spec, "nodeName", "spec.nodeName", p.node_name, error)) {
            return pod_error(std::move(error) + " for pod " + p.id());
        }
        if (sa.empty()) {
            sa = sa_deprecated;
        }
        if (!sa.empty()) {
            if (!config::is_k8s_subdomain(sa)) {
                return pod_error("spec.serviceAccountName is not a ServiceAccount name for pod " + p.id());
            }
            p.service_account = std::move(sa);
        }
        if (!p.node_name.empty() && !config::is_k8s_subdomain(p.node_name)) {
            return pod_error("spec.nodeName is not a node name for pod " + p.id());
        }
        std::size_t seen = 0;
        for (const char* key : {"containers", "initContainers", "ephemeralContainers"}) {
            if (!read_images(*spec, key, p, seen, error)) {
                return pod_error(std::move(error) + " for pod " + p.id());
            }
        }
        std::sort(p.references.begin(), p.references.end());
        p.references.erase(std::unique(p.references.begin(), p.references.end()), p.references.end());
    }
    if (const auto* status = member(object, "status")) {
        if (!status->is_object()) {
            return pod_error("status is not an object for pod " + p.id());
        }
        if (!optional_string(*status, "phase", "status.phase", p.phase, error)) {
            return pod_error(std::move(error) + " for pod " + p.id());
        }
        if (!valid_phase(p.phase)) {
            return pod_error("status.phase is not a phase for pod " + p.id());
        }
    }
    return pod_result{std::move(p), {}};
}

pod_result parse_pod_text(std::string_view json_text) {
    std::string error;
    auto j = parse_json(json_text, max_watch_line_bytes, "the pod", error);
    if (!j) {
        return pod_error(std::move(error));
    }
    return parse_pod(*j);
}

std::string_view to_string(watch_event_type t) noexcept {
    switch (t) {
        case watch_event_type::added:
            return "ADDED";
        case watch_event_type::modified:
            return "MODIFIED";
        case watch_event_type::deleted:
            return "DELETED";
        case watch_event_type::bookmark:
            return "BOOKMARK";
        case watch_event_type::error:
            return "ERROR";
    }
    return "?";
}

watch_line_result parse_watch_line(std::string_view line) {
    auto fail = [](std::string e) {
        return watch_line_result{std::nullopt, bounded(std::move(e))};
    };
    const auto text = config::trim(line);
    if (text.empty()) {
        return fail("empty watch line");
    }
    std::string error;
    const auto j = parse_json(text, max_watch_line_bytes, "the watch event", error);
    if (!j) {
        return fail(std::move(error));
    }
    if (!j->is_object()) {
        return fail("the watch event is not a JSON object");
    }
    const auto* type = member(*j, "type");
    if (type == nullptr || !type->is_string()) {
        return fail("the watch event has no type");
    }
    const auto* object = member(*j, "object");
    if (object == nullptr || !object->is_object()) {
        return fail("the watch event has no object");
    }
    watch_event ev;
    const auto& t = type->get_ref<const std::string&>();
    if (t == "ADDED") {
        ev.type = watch_event_type::added;
    } else if (t == "MODIFIED") {
        ev.type = watch_event_type::modified;
    } else if (t == "DELETED") {
        ev.type = watch_event_type::deleted;
    } else if (t == "BOOKMARK") {
        ev.type = watch_event_type::bookmark;
    } else if (t == "ERROR") {
        ev.type = watch_event_type::error;
    } else {
        return fail("unknown watch event type '" + clean(t, 20) + "'");
    }

    switch (ev.type) {
        case watch_event_type::bookmark: {
            const auto* metadata = member(*object, "metadata");
            std::string rv;
            if (metadata == nullptr || !optional_string(*metadata, "resourceVersion", "", rv, error) || rv.empty() ||
                !printable_token(rv, 128)) {
                return fail("BOOKMARK without a valid metadata.resourceVersion");
            }
            ev.resource_version = std::move(rv);
            break;
        }
        case watch_event_type::error: {
            // A metav1.Status.
            if (const auto* code = member(*object, "code")) {
                if (!code->is_number_integer()) {
                    return fail("ERROR event: code is not an integer");
                }
                const auto c = code->get<std::int64_t>();
                if (c < 0 || c > 999) {
                    return fail("ERROR event: code out of range");
                }
                ev.error_code = static_cast<int>(c);
            }
            std::string reason;
            std::string message;
            if (!optional_string(*object, "reason", "ERROR event: reason", reason, error) ||
                !optional_string(*object, "message", "ERROR event: message", message, error)) {
                return fail(std::move(error));
            }
            ev.error_reason = valid_phase(reason) ? reason : clean(reason, 32);
            ev.error_message = clean(message, 200);
            break;
        }
        default: {
            auto p = parse_pod(*object);
            if (!p.pod) {
                return fail(std::string(to_string(ev.type)) + " event: " + p.error);
            }
            ev.resource_version = p.pod->resource_version;
            ev.pod = std::move(p.pod);
            break;
        }
    }
    return watch_line_result{std::move(ev), {}};
}

pod_list_result parse_pod_list(std::string_view body) {
    auto fail = [](std::string e) {
        return pod_list_result{std::nullopt, bounded(std::move(e))};
    };
    std::string error;
    const auto j = parse_json(body, max_pod_list_bytes, "the pod list", error);
    if (!j) {
        return fail(std::move(error));
    }
    if (!j->is_object()) {
        return fail("the pod list is not a JSON object");
    }
    std::string kind;
    if (!optional_string(*j, "kind", "kind", kind, error)) {
        return fail(std::move(error));
    }
    if (!kind.empty() && kind != "PodList") {
        return fail("kind is '" + clean(kind, 32) + "', expected PodList");
    }
    pod_list out;
    const auto* metadata = member(*j, "metadata");
    if (metadata == nullptr ||
        !optional_string(*metadata, "resourceVersion", "metadata.resourceVersion", out.resource_version, error) ||
        out.resource_version.empty() || !printable_token(out.resource_version, 128)) {
        return fail("the pod list has no valid metadata.resourceVersion");
    }
    if (const auto* items = member(*j, "items")) {
        if (!items->is_array()) {
            return fail("items is not a list");
        }
        for (const auto& item : *items) {
            auto p = parse_pod(item);
            if (!p.pod) {
                if (out.skipped.size() < max_skipped_items) {
                    out.skipped.push_back(std::move(p.error));
                }
                ++out.skipped_count;
                continue;
            }
            out.pods.push_back(std::move(*p.pod));
        }
    }
    return pod_list_result{std::move(out), {}};
}

// ---- the rule --------------------------------------------------------------------

scope_rule scope_rule::from(const config::scope_config& c) {
    scope_rule r;
    r.enabled = c.enabled;
    r.all_namespaces = std::find(c.namespaces.begin(), c.namespaces.end(), "*") != c.namespaces.end();
    if (!r.all_namespaces) {
        r.namespaces = c.namespaces;
    }
    r.all_service_accounts =
        std::find(c.service_accounts.begin(), c.service_accounts.end(), "*") != c.service_accounts.end();
    if (!r.all_service_accounts) {
        r.service_accounts = c.service_accounts;
    }
    return r;
}

bool scope_rule::namespace_allowed(std::string_view ns) const {
    return all_namespaces || std::find(namespaces.begin(), namespaces.end(), ns) != namespaces.end();
}

bool scope_rule::service_account_allowed(std::string_view sa) const {
    return all_service_accounts ||
           std::find(service_accounts.begin(), service_accounts.end(), sa) != service_accounts.end();
}

std::string scope_rule::describe_namespaces() const {
    return describe_names("watch-namespace", all_namespaces, "all", namespaces);
}

std::string scope_rule::describe_service_accounts() const {
    return describe_names("service-account", all_service_accounts, "*", service_accounts);
}

std::string_view to_string(scope_verdict v) noexcept {
    switch (v) {
        case scope_verdict::allowed:
            return "allowed";
        case scope_verdict::denied:
            return "denied";
        case scope_verdict::unknown:
            return "unknown";
    }
    return "?";
}

// ---- the index -------------------------------------------------------------------

void pod_index::add_references(const pod_info& p) {
    for (const auto& ref : p.references) {
        auto& uids = referenced_by_[ref.str()];
        uids.insert(std::upper_bound(uids.begin(), uids.end(), p.uid), p.uid);
    }
}

void pod_index::drop_references(const pod_info& p) {
    for (const auto& ref : p.references) {
        const auto it = referenced_by_.find(ref.str());
        if (it == referenced_by_.end()) {
            continue;
        }
        auto& uids = it->second;
        uids.erase(std::remove(uids.begin(), uids.end(), p.uid), uids.end());
        if (uids.empty()) {
            referenced_by_.erase(it);
        }
    }
}

void pod_index::recount() {
    in_scope_references_ =
        static_cast<std::size_t>(std::count_if(referenced_by_.begin(), referenced_by_.end(), [&](const auto& entry) {
            return std::any_of(entry.second.begin(), entry.second.end(), [&](const std::string& uid) {
                const auto p = pods_.find(uid);
                return p != pods_.end() && rule_.allows(p->second);
            });
        }));
}

bool pod_index::upsert(pod_info pod) {
    const auto it = pods_.find(pod.uid);
    if (it != pods_.end()) {
        const auto& old = it->second;
        const bool same_for_decisions = old.namespace_name == pod.namespace_name && old.name == pod.name &&
                                        old.service_account == pod.service_account && old.references == pod.references;
        if (same_for_decisions) {
            it->second = std::move(pod);  // the newest status, resourceVersion, images as written
            return false;
        }
        drop_references(it->second);
        it->second = std::move(pod);
        add_references(it->second);
    } else {
        auto uid = pod.uid;
        const auto [at, inserted] = pods_.emplace(std::move(uid), std::move(pod));
        add_references(at->second);
    }
    recount();
    return true;
}

bool pod_index::remove(std::string_view uid) {
    const auto it = pods_.find(uid);
    if (it == pods_.end()) {
        return false;
    }
    drop_references(it->second);
    pods_.erase(it);
    recount();
    return true;
}

void pod_index::replace_all(std::vector<pod_info> pods) {
    pods_.clear();
    referenced_by_.clear();
    for (auto& p : pods) {
        auto uid = p.uid;
        const auto [at, inserted] = pods_.insert_or_assign(std::move(uid), std::move(p));
        (void)inserted;
        (void)at;
    }
    for (const auto& [uid, p] : pods_) {
        add_references(p);
    }
    recount();
}

void pod_index::set_rule(scope_rule rule) {
    rule_ = std::move(rule);
    recount();
}

const pod_info* pod_index::find(std::string_view uid) const {
    const auto it = pods_.find(uid);
    return it == pods_.end() ? nullptr : &it->second;
}

std::vector<const pod_info*> pod_index::pods_referencing(std::string_view host, std::string_view repository) const {
    std::vector<const pod_info*> out;
    const auto it = referenced_by_.find(std::string(host) + "/" + std::string(repository));
    if (it == referenced_by_.end()) {
        return out;
    }
    for (const auto& uid : it->second) {
        if (const auto* p = find(uid)) {
            out.push_back(p);
        }
    }
    std::sort(out.begin(), out.end(), [](const pod_info* a, const pod_info* b) {
        return std::tie(a->namespace_name, a->name, a->uid) < std::tie(b->namespace_name, b->name, b->uid);
    });
    return out;
}

scope_decision pod_index::decide(std::string_view host, std::string_view repository) const {
    const auto key = std::string(host) + "/" + std::string(repository);
    if (!rule_.enabled) {
        return {scope_verdict::allowed, "scope disabled: every pod on this node may pull"};
    }
    const auto pods = pods_referencing(host, repository);
    if (pods.empty()) {
        return {scope_verdict::unknown, bounded("no pod on this node references " + key + " (yet)")};
    }
    std::set<std::string> namespaces;        // excluded by watch-namespace
    std::set<std::string> service_accounts;  // ns/sa excluded by service-account
    for (const auto* p : pods) {
        if (rule_.allows(*p)) {
            return {scope_verdict::allowed,
                    bounded("referenced by pod " + p->id() + " (ServiceAccount " + p->service_account + ")")};
        }
        if (!rule_.namespace_allowed(p->namespace_name)) {
            namespaces.insert(p->namespace_name);
        } else {
            service_accounts.insert(p->namespace_name + "/" + p->service_account);
        }
    }
    std::string reason = key + ": ";
    if (service_accounts.empty()) {
        reason +=
            "referenced only by pods in namespace " + list_names(namespaces) + " (" + rule_.describe_namespaces() + ")";
    } else if (namespaces.empty()) {
        reason += "referenced only by pods whose ServiceAccount " + list_names(service_accounts) + " is not in " +
                  rule_.describe_service_accounts();
    } else {
        reason += "referenced only by out-of-scope pods: namespace " + list_names(namespaces) + " (" +
                  rule_.describe_namespaces() + "); ServiceAccount " + list_names(service_accounts) + " not in " +
                  rule_.describe_service_accounts();
    }
    return {scope_verdict::denied, bounded(std::move(reason))};
}

}  // namespace acp::routing
