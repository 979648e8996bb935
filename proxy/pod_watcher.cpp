#include "proxy/pod_watcher.hpp"

#include "acp_version.hpp"
#include "config/logging.hpp"

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <random>
#include <sstream>
#include <utility>

namespace acp::proxy {
namespace {

using clock = std::chrono::steady_clock;

constexpr std::size_t max_error_body = std::size_t{64} * 1024;  // a non-200 answer's body, for its Status message
constexpr std::size_t max_message = 240;
constexpr auto healthy_watch = std::chrono::seconds(30);  // a watch this long resets the backoff
constexpr std::size_t max_token_bytes = std::size_t{64} * 1024;

const std::shared_ptr<spdlog::logger>& log() {
    static const auto l = logging::logger("scope");
    return l;
}

// One line, bounded, control bytes replaced: for text that came from the network.
std::string one_line(std::string_view s) {
    std::string out;
    for (const char c : s.substr(0, max_message)) {
        const auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7f) ? ' ' : c;
    }
    if (s.size() > max_message) {
        out += "…";
    }
    return out;
}

// "HTTP 403 (Forbidden: pods is forbidden: …)" from a Status body, or the status alone.
std::string status_text(long status, std::string_view body) {
    std::string out = fmt::format("HTTP {}", status);
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object()) {
        std::string reason;
        std::string message;
        if (auto it = j.find("reason"); it != j.end() && it->is_string()) {
            reason = it->get<std::string>();
        }
        if (auto it = j.find("message"); it != j.end() && it->is_string()) {
            message = it->get<std::string>();
        }
        if (message == reason) {
            message.clear();  // {"reason":"Unauthorized","message":"Unauthorized"}: once is enough
        }
        if (!reason.empty() || !message.empty()) {
            out += " (" + one_line(reason) + (reason.empty() || message.empty() ? "" : ": ") + one_line(message) + ")";
        }
    }
    if (status == 401) {
        out += ": the API server rejected the token (expired, or not a ServiceAccount token of this cluster)";
    } else if (status == 403) {
        out += ": the ServiceAccount needs get/list/watch on pods (see deploy/kubernetes)";
    }
    return out;
}

std::optional<std::string> read_token(const std::string& path, std::string& error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = "cannot read the token file " + path;
        return std::nullopt;
    }
    std::string text;
    text.resize(max_token_bytes + 1);
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_token_bytes) {
        error = "the token file " + path + " is larger than 64 KiB";
        return std::nullopt;
    }
    const auto first = text.find_first_not_of(" \t\r\n");
    const auto last = text.find_last_not_of(" \t\r\n");
    if (first == std::string::npos) {
        error = "the token file " + path + " is empty";
        return std::nullopt;
    }
    text = text.substr(first, last - first + 1);
    if (std::any_of(text.begin(), text.end(), [](char c) {
            const auto u = static_cast<unsigned char>(c);
            return u < 0x21 || u > 0x7e;
        })) {
        error = "the token file " + path + " holds bytes a bearer token cannot contain";
        return std::nullopt;
    }
    return text;
}

struct curl_handle {
    CURL* h = curl_easy_init();
    curl_slist* headers = nullptr;
    curl_slist* connect_to = nullptr;
    ~curl_handle() {
        curl_slist_free_all(headers);
        curl_slist_free_all(connect_to);
        if (h != nullptr) {
            curl_easy_cleanup(h);
        }
    }
    curl_handle() = default;
    curl_handle(const curl_handle&) = delete;
    curl_handle& operator=(const curl_handle&) = delete;
    curl_handle(curl_handle&&) = delete;
    curl_handle& operator=(curl_handle&&) = delete;
};

void set_blob(CURL* h, CURLoption opt, const std::string& data) {
    curl_blob blob{};
    blob.data = const_cast<char*>(data.data());  // NOLINT(cppcoreguidelines-pro-type-const-cast): copied by curl
    blob.len = data.size();
    blob.flags = CURL_BLOB_COPY;
    curl_easy_setopt(h, opt, &blob);
}

}  // namespace

// What a transfer's callbacks share.
struct pod_watcher::transfer {
    pod_watcher* self = nullptr;
    std::string body;  // list: the whole answer; watch: a non-200 answer's body
    std::size_t limit = 0;
    bool too_large = false;
    routing::watch_line_splitter splitter;
    std::string abort_reason;  // why a callback ended the transfer
    bool relist = false;
    CURL* handle = nullptr;
};

pod_watcher::pod_watcher(pod_watcher_options o)
    : opts_(std::move(o)), holder_(opts_.rule), state_(opts_.rule, opts_.node_name) {}

pod_watcher::~pod_watcher() {
    stop();
}

void pod_watcher::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

void pod_watcher::set_rule(routing::scope_rule rule) {
    std::function<void()> notify;
    const auto text = rule.enabled ? rule.describe_namespaces() + "; " + rule.describe_service_accounts()
                                   : std::string("off (every pod on this node may pull)");
    {
        std::lock_guard lock(mutex_);
        if (rule == state_.index().rule()) {
            return;
        }
        state_.set_rule(std::move(rule));
        publish_locked();
        notify = on_change_;
    }
    log()->info("pull scope rule now {}", text);
    if (notify) {
        notify();
    }
}

void pod_watcher::publish_locked() {
    holder_.store(state_.snapshot());
}

std::int64_t pod_watcher::random_below(std::int64_t n) {
    if (n <= 1) {
        return 0;
    }
    std::lock_guard lock(mutex_);
    return std::uniform_int_distribution<std::int64_t>(0, n - 1)(random_);
}

bool pod_watcher::sleep_for(std::chrono::milliseconds d) {
    // +-20 %: after an API server outage the nodes' retries spread out instead of arriving together.
    d += std::chrono::milliseconds(random_below(d.count() * 2 / 5 + 1) - d.count() / 5);
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, d, [this] { return stopping_.load(); });
    return !stopping_;
}

namespace {

// Sets everything but the URL, the callbacks and the timeouts; returns an error text or "".
std::string prepare(curl_handle& c, const config::kube_access& a) {
    CURL* h = c.h;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 15L);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, nullptr);
    if (!a.ca_pem.empty()) {
        set_blob(h, CURLOPT_CAINFO_BLOB, a.ca_pem);
    } else if (!a.ca_file.empty()) {
        curl_easy_setopt(h, CURLOPT_CAINFO, a.ca_file.c_str());
    }
    if (a.insecure_skip_tls_verify) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (!a.client_cert_pem.empty()) {
        set_blob(h, CURLOPT_SSLCERT_BLOB, a.client_cert_pem);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    } else if (!a.client_cert_file.empty()) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, a.client_cert_file.c_str());
    }
    if (!a.client_key_pem.empty()) {
        set_blob(h, CURLOPT_SSLKEY_BLOB, a.client_key_pem.reveal());
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    } else if (!a.client_key_file.empty()) {
        curl_easy_setopt(h, CURLOPT_SSLKEY, a.client_key_file.c_str());
    }
    c.headers = curl_slist_append(c.headers, "Accept: application/json");
    c.headers = curl_slist_append(c.headers, "User-Agent: acr-credential-proxy/" ACP_VERSION);
    std::string token;
    if (!a.token_file.empty()) {
        std::string error;
        auto t = read_token(a.token_file, error);
        if (!t) {
            return error;
        }
        token = std::move(*t);
    } else if (!a.bearer_token.empty()) {
        token = a.bearer_token.reveal();
    }
    if (!token.empty()) {
        std::string header = "Authorization: Bearer " + token;
        c.headers = curl_slist_append(c.headers, header.c_str());
        std::fill(header.begin(), header.end(), '\0');
        std::fill(token.begin(), token.end(), '\0');
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c.headers);
    return {};
}

// The URL for a target; with tls-server-name, the URL names it and CONNECT_TO dials the server.
std::string url_for(curl_handle& c, const config::kube_access& a, const std::string& target) {
    if (a.tls_server_name.empty()) {
        return a.server + target;
    }
    CURLU* u = curl_url();
    std::string url = a.server + target;
    if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
        char* host = nullptr;
        char* port = nullptr;
        curl_url_get(u, CURLUPART_HOST, &host, 0);
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
        if (host != nullptr && port != nullptr) {
            const auto rule = fmt::format("{}:{}:{}:{}", a.tls_server_name, port, host, port);
            c.connect_to = curl_slist_append(c.connect_to, rule.c_str());
            curl_easy_setopt(c.h, CURLOPT_CONNECT_TO, c.connect_to);
            curl_url_set(u, CURLUPART_HOST, a.tls_server_name.c_str(), 0);
            char* out = nullptr;
            if (curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK && out != nullptr) {
                url = out;
                curl_free(out);
            }
        }
        curl_free(host);
        curl_free(port);
    }
    curl_url_cleanup(u);
    return url;
}

std::size_t on_list_body(char* data, std::size_t, std::size_t n, void* p) {
    auto* t = static_cast<pod_watcher::transfer*>(p);
    if (t->body.size() + n > t->limit) {
        t->too_large = true;
        return 0;
    }
    t->body.append(data, n);
    return n;
}

std::string curl_error(CURLcode rc, const char* errbuf) {
    std::string text = errbuf[0] != '\0' ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
    return one_line(text);
}

}  // namespace

std::string pod_watcher::list_once(bool consistent) {
    curl_handle c;
    if (c.h == nullptr) {
        return "curl_easy_init failed";
    }
    if (auto err = prepare(c, opts_.access); !err.empty()) {
        return err;
    }
    transfer t;
    t.self = this;
    t.limit = routing::max_pod_list_bytes;
    std::array<char, CURL_ERROR_SIZE> errbuf{};
    const auto url = url_for(c, opts_.access, routing::pod_list_target(opts_.node_name, consistent ? "" : "0"));
    curl_easy_setopt(c.h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c.h, CURLOPT_ERRORBUFFER, errbuf.data());
    curl_easy_setopt(c.h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(opts_.connect_timeout.count()));
    curl_easy_setopt(c.h, CURLOPT_TIMEOUT_MS, static_cast<long>(opts_.list_timeout.count()));
    curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, on_list_body);
    curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &t);
    const auto rc = curl_easy_perform(c.h);
    if (t.too_large) {
        return "the pod list is larger than 64 MiB";
    }
    if (rc != CURLE_OK) {
        return curl_error(rc, errbuf.data());
    }
    long status = 0;
    curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        return status_text(status, t.body);
    }
    auto parsed = routing::parse_pod_list(t.body);
    if (!parsed.list) {
        return "the pod list is unusable: " + parsed.error;
    }
    const auto skipped = parsed.list->skipped_count;
    for (const auto& why : parsed.list->skipped) {
        log()->warn("pod list: skipped an item: {}", why);
    }
    std::size_t pods = 0;
    std::size_t references = 0;
    {
        std::lock_guard lock(mutex_);
        state_.reset(std::move(*parsed.list));
        publish_locked();
        pods = state_.index().pods_indexed();
        references = state_.index().references_indexed();
    }
    log()->info("listed {} pod(s) of node {} from {} ({} in-scope reference(s){})", pods, opts_.node_name,
                opts_.access.server, references, skipped == 0 ? "" : fmt::format(", {} item(s) skipped", skipped));
    if (pods == 0 && !consistent) {
        // In a DaemonSet this proxy's own pod is bound to the node: none at all means a wrong node name,
        // and every pull would wait waitForPod and fall back.
        log()->warn(
            "no pod is bound to node {}: if pods do run here, the node name is wrong (it came from {}); "
            "give the name `kubectl get nodes` shows with --node-name",
            opts_.node_name, opts_.node_name_from.empty() ? std::string("the options") : opts_.node_name_from);
    }
    return {};
}

std::string pod_watcher::list_now(std::chrono::milliseconds budget) {
    const auto deadline = clock::now() + budget;
    auto backoff = opts_.backoff_initial;
    std::string last;
    for (int attempt = 1;; ++attempt) {
        last = list_once();
        if (last.empty()) {
            return {};
        }
        const auto now = clock::now();
        if (now >= deadline || stopping_) {
            return last;
        }
        // The last wait is cut to what is left of the budget, so the last attempt comes at its end.
        const auto wait = std::min(backoff, std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
        log()->warn("listing the pods of node {} from {} failed (attempt {}): {}; retrying in {} ms", opts_.node_name,
                    opts_.access.server, attempt, last, wait.count());
        if (!sleep_for(wait)) {
            return last;
        }
        backoff = std::min(backoff * 2, opts_.backoff_max);
    }
}

namespace {

std::size_t on_watch_body(char* data, std::size_t, std::size_t n, void* p);
std::size_t on_watch_header(char* data, std::size_t, std::size_t n, void* p);
int on_watch_progress(void* p, curl_off_t, curl_off_t, curl_off_t, curl_off_t);

}  // namespace

pod_watcher::watch_end pod_watcher::watch_once(std::string& why) {
    curl_handle c;
    if (c.h == nullptr) {
        why = "curl_easy_init failed";
        return watch_end::reconnect;
    }
    if (auto err = prepare(c, opts_.access); !err.empty()) {
        why = err;
        return watch_end::reconnect;
    }
    std::string rv;
    {
        std::lock_guard lock(mutex_);
        rv = state_.resource_version();
    }
    if (rv.empty()) {
        return watch_end::relist;
    }
    transfer t;
    t.self = this;
    t.limit = max_error_body;
    t.handle = c.h;
    std::array<char, CURL_ERROR_SIZE> errbuf{};
    // timeoutSeconds spread over [t, 2t) as client-go does: the proxies on every node of a cluster do not all
    // re-watch at the same moment.
    const auto timeout = opts_.watch_timeout + std::chrono::seconds(random_below(opts_.watch_timeout.count()));
    const auto url = url_for(c, opts_.access, routing::pod_watch_target(opts_.node_name, rv, timeout));
    curl_easy_setopt(c.h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c.h, CURLOPT_ERRORBUFFER, errbuf.data());
    curl_easy_setopt(c.h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(opts_.connect_timeout.count()));
    // The server ends the watch after timeoutSeconds; a silent connection ends here a minute later.
    const auto total =
        std::chrono::duration_cast<std::chrono::milliseconds>(timeout) + std::chrono::milliseconds(60000);
    curl_easy_setopt(c.h, CURLOPT_TIMEOUT_MS, static_cast<long>(total.count()));
    curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, on_watch_body);
    curl_easy_setopt(c.h, CURLOPT_HEADERFUNCTION, on_watch_header);
    curl_easy_setopt(c.h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c.h, CURLOPT_XFERINFOFUNCTION, on_watch_progress);
    curl_easy_setopt(c.h, CURLOPT_XFERINFODATA, &t);
    const auto started = clock::now();
    const auto rc = curl_easy_perform(c.h);  // on_watch_header sets watching_ once a 200 head has arrived
    watching_ = false;
    if (stopping_) {
        return watch_end::stopped;
    }
    long status = 0;
    curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &status);
    if (status == 410) {
        why = status_text(status, t.body);
        return watch_end::relist;
    }
    if (status != 0 && status != 200) {
        why = status_text(status, t.body);
        return watch_end::reconnect;
    }
    if (t.relist) {
        why = t.abort_reason;
        return watch_end::relist;
    }
    if (!t.abort_reason.empty()) {
        why = t.abort_reason;
        return watch_end::reconnect;
    }
    if (rc == CURLE_OK) {
        // The server ended the watch (timeoutSeconds): watch again at once, unless it ended within a
        // second (something in the way cutting streams): then back off rather than spin.
        const bool early = clock::now() - started < std::chrono::seconds(1);
        why = early ? "the API server ended the watch at once" : "";
        return early ? watch_end::reconnect : watch_end::timed_out;
    }
    why = curl_error(rc, errbuf.data());
    if (clock::now() - started >= healthy_watch) {
        why += " (after a healthy watch)";
    }
    return watch_end::reconnect;
}

namespace {

std::size_t on_watch_body(char* data, std::size_t, std::size_t n, void* p) {
    auto* t = static_cast<pod_watcher::transfer*>(p);
    long status = 0;
    curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        // A Status body: keep (bounded) for the message.
        t->body.append(data, std::min(n, t->limit - std::min(t->limit, t->body.size())));
        return n;
    }
    return t->self->on_stream(std::string_view(data, n), *t) ? n : 0;
}

// The blank line ending a 200 response head: the watch stream is open (it may carry no event for minutes).
std::size_t on_watch_header(char* data, std::size_t, std::size_t n, void* p) {
    auto* t = static_cast<pod_watcher::transfer*>(p);
    const std::string_view line(data, n);
    if (line == "\r\n" || line == "\n") {
        long status = 0;
        curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &status);
        if (status == 200) {
            t->self->set_watching();
        }
    }
    return n;
}

int on_watch_progress(void* p, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* t = static_cast<pod_watcher::transfer*>(p);
    return t->self->stopping() ? 1 : 0;
}

}  // namespace

bool pod_watcher::on_stream(std::string_view bytes, transfer& t) {
    if (stopping_) {
        return false;
    }
    const auto lines = t.splitter.feed(bytes);
    if (t.splitter.overflowed()) {
        t.abort_reason = fmt::format("a watch event is larger than {} bytes", routing::max_watch_line_bytes);
        return false;
    }
    bool changed = false;
    for (const auto& line : lines) {
        auto parsed = routing::parse_watch_line(line);
        if (!parsed.event) {
            t.abort_reason = "unusable watch event: " + parsed.error;
            break;
        }
        const auto& ev = *parsed.event;
        routing::watch_action action{};
        {
            std::lock_guard lock(mutex_);
            action = state_.apply(ev);
            if (action == routing::watch_action::index_changed) {
                publish_locked();
                changed = true;
            }
        }
        if (ev.pod) {
            log()->debug("watch: {} pod {} (ServiceAccount {}, {} image(s)) -> {}", routing::to_string(ev.type),
                         ev.pod->id(), ev.pod->service_account, ev.pod->references.size(), routing::to_string(action));
        }
        if (action == routing::watch_action::relist) {
            t.relist = true;
            t.abort_reason = fmt::format("the watch's resourceVersion is too old ({} {}: {})", ev.error_code,
                                         ev.error_reason, ev.error_message);
            break;
        }
        if (action == routing::watch_action::reconnect) {
            t.abort_reason = fmt::format("the API server sent an ERROR event ({} {}: {})", ev.error_code,
                                         ev.error_reason, ev.error_message);
            break;
        }
    }
    if (changed && on_change_) {
        on_change_();
    }
    return t.abort_reason.empty();
}

void pod_watcher::start(std::function<void()> on_change) {
    {
        std::lock_guard lock(mutex_);
        on_change_ = std::move(on_change);
    }
    thread_ = std::thread([this] { run(); });
}

bool pod_watcher::back_off(std::chrono::milliseconds& backoff) {
    if (!sleep_for(backoff)) {
        return false;
    }
    backoff = std::min(backoff * 2, opts_.backoff_max);
    return true;
}

void pod_watcher::run() {
    auto backoff = opts_.backoff_initial;
    bool need_list = false;
    while (!stopping_) {
        if (need_list) {
            relists_.fetch_add(1, std::memory_order_relaxed);
            const auto err = list_once(true);
            if (!err.empty()) {
                log()->warn("re-listing the pods of node {} from {} failed: {}; retrying in {} ms", opts_.node_name,
                            opts_.access.server, err, backoff.count());
                if (!back_off(backoff)) {
                    return;
                }
                continue;
            }
            if (on_change_) {
                on_change_();
            }
            need_list = false;
        }
        const auto started = clock::now();
        std::string why;
        const auto end = watch_once(why);
        if (clock::now() - started >= healthy_watch) {
            backoff = opts_.backoff_initial;
        }
        switch (end) {
            case watch_end::stopped:
                return;
            case watch_end::timed_out:
                log()->debug("watch of node {} ended by the server: watching again", opts_.node_name);
                continue;
            case watch_end::relist:
                log()->info("watch of node {}: {}; listing again", opts_.node_name,
                            why.empty() ? "no resourceVersion" : why);
                need_list = true;
                continue;
            case watch_end::reconnect:
                reconnects_.fetch_add(1, std::memory_order_relaxed);
                log()->warn("watch of node {} from {} ended: {}; watching again in {} ms", opts_.node_name,
                            opts_.access.server, why, backoff.count());
                if (!back_off(backoff)) {
                    return;
                }
                continue;
        }
    }
}

}  // namespace acp::proxy
