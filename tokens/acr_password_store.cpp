#include "tokens/acr_password_store.hpp"

#include "config/logging.hpp"
#include "tokens/acr_openapi.hpp"
#include "tokens/alibaba_endpoints.hpp"
#include "tokens/credential_chain.hpp"
#include "tokens/imds_client.hpp"
#include "tokens/signing_primitives.hpp"

#include <algorithm>
#include <cctype>
#include <random>
#include <set>

namespace acp::tokens {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

/// "Registry.cn-hangzhou.aliyuncs.com:443" → "registry.cn-hangzhou.aliyuncs.com".
std::string normalize_host(std::string_view host) {
    auto h = lower(host);
    while (!h.empty() && h.back() == '.') {
        h.pop_back();
    }
    if (h.size() > 4 && h.compare(h.size() - 4, 4, ":443") == 0) {
        h.resize(h.size() - 4);
    }
    return h;
}

std::string format_time(time_point t) {
    return iso8601_utc(t);
}

// Guards against a busy loop when passwords arrive (nearly) expired.
constexpr auto min_password_life = std::chrono::seconds(1);
constexpr auto min_refresh_interval = std::chrono::seconds(1);

std::string instance_label(const config::acr_instance& inst, std::size_t index) {
    if (!inst.instance_id.empty()) {
        return inst.instance_id;
    }
    return "personal/" + (inst.region_id.empty() ? std::to_string(index) : inst.region_id);
}

}  // namespace

std::string_view to_string(credential_state s) {
    switch (s) {
        case credential_state::ready:
            return "ready";
        case credential_state::pending:
            return "pending";
        case credential_state::unavailable:
            return "unavailable";
        case credential_state::unknown_host:
            return "unknown_host";
        case credential_state::cancelled:
            return "cancelled";
    }
    return "unknown";
}

std::string basic_credential::authorization() const {
    return "Basic " + to_base64(username + ":" + password.reveal());
}

time_point compute_refresh_at(time_point issued, time_point expires, wall_clock::duration threshold, double jitter01) {
    const auto jitter = duration_cast<wall_clock::duration>(threshold / 10 * std::clamp(jitter01, 0.0, 1.0));
    const auto ahead = expires - threshold - jitter;
    const auto floor = issued + (expires - issued) / 4;
    return std::max(ahead, floor);
}

wall_clock::duration backoff_delay(int failures, wall_clock::duration initial, wall_clock::duration max,
                                   double jitter01) {
    auto d = initial;
    for (int i = 1; i < failures && d < max; ++i) {
        d *= 2;
    }
    d = std::min(d, max);
    return duration_cast<wall_clock::duration>(d * (0.5 + 0.5 * std::clamp(jitter01, 0.0, 1.0)));
}

// ---------------------------------------------------------------------------------------

struct acr_password_store::instance_state {
    config::acr_instance cfg;
    std::string label;
    std::string region;
    std::shared_ptr<credential_provider> provider;
    std::string provider_error;  // why no provider could be built
    std::vector<std::string> domains;
    bool discover = false;
    bool domains_known = false;
    bool discovery_attempted = false;
    std::shared_ptr<const basic_credential> credential;
    std::string reason;
    std::string discovery_reason;
    bool attempted = false;
    time_point next_refresh{};
    time_point next_discovery{};
    int failures = 0;
    int discovery_failures = 0;
    bool refresh_requested = false;  // guarded by mu_
    instance_counters* counters = nullptr;
};

struct acr_password_store::impl {
    std::unique_ptr<provider_context> ctx;
    std::shared_ptr<imds_client> imds;
    std::unique_ptr<acr_openapi> api;
    std::optional<std::string> node_region;
    std::string node_region_error;
    std::mt19937_64 prng{std::random_device{}()};
};

acr_password_store::acr_password_store(acr_password_store_options opts)
    : cfg_(std::move(opts.cfg)),
      env_(std::move(opts.env)),
      http_(std::move(opts.http)),
      clock_(std::move(opts.clock)),
      random01_(std::move(opts.random01)),
      nonce_(std::move(opts.nonce)),
      impl_(std::make_unique<impl>()) {
    if (!cfg_) {
        cfg_ = std::make_shared<const config::config>();
    }
    if (!env_.getenv && !env_.read_file) {
        env_.getenv = [](const std::string& name) -> std::optional<std::string> {
            const char* v = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe): nobody calls setenv
            return v != nullptr ? std::optional<std::string>(v) : std::nullopt;
        };
    }
    if (!http_) {
        http_ = make_curl_http_client();
    }
    if (!clock_) {
        clock_ = std::make_shared<system_clock_source>();
    }
    const auto& cfg = *cfg_;
    const auto& ali = cfg.alibaba;

    // An aggregate holding references: braces, so no make_unique.
    impl_->ctx = std::unique_ptr<provider_context>(  // NOLINT(modernize-make-unique)
        new provider_context{*http_, *clock_, cfg, env_, &metrics_, {}, nonce_});
    impl_->ctx->sts_endpoint = [this] {
        return resolve_sts_endpoint(*cfg_, env_, node_region());
    };

    imds_options io;
    io.endpoint = resolve_imds_endpoint(cfg, env_);
    io.role_name =
        !ali.ecs_role_name.empty() ? ali.ecs_role_name : first_env(env_, {"ALIBABA_CLOUD_ECS_METADATA"}).value_or("");
    io.imdsv1_disabled = ali.imdsv1_disabled || env_flag(env_, "ALIBABA_CLOUD_IMDSV1_DISABLED");
    io.imdsv2_disabled = env_flag(env_, "ALIBABA_CLOUD_IMDSV2_DISABLED");
    io.token_ttl = duration_cast<std::chrono::seconds>(ali.imds_token_ttl);
    impl_->imds = std::make_shared<imds_client>(*http_, *clock_, io, &metrics_);
    impl_->api =
        std::make_unique<acr_openapi>(*http_, *clock_, duration_cast<milliseconds>(ali.api_timeout), &metrics_, nonce_);

    // Providers, shared between instances that use the same identity.
    const auto choice = choose_base_source(cfg, env_);
    std::shared_ptr<credential_provider> base;
    std::string base_error;
    if (!cfg.acr_instances.empty()) {
        auto& gauges = metrics_.add_source(std::string(to_string(choice.source)));
        auto b = make_base_provider(*impl_->ctx, choice, impl_->imds, &gauges);
        if (b) {
            base = b.value();
        } else {
            base_error = b.error().message;
        }
    }
    std::map<std::string, std::shared_ptr<credential_provider>> shared;
    for (std::size_t i = 0; i < cfg.acr_instances.size(); ++i) {
        auto st = std::make_unique<instance_state>();
        st->cfg = cfg.acr_instances[i];
        st->label = instance_label(st->cfg, i);
        st->counters = &metrics_.add_instance(st->label);
        for (const auto& d : st->cfg.domains) {
            st->domains.push_back(normalize_host(d));
        }
        st->discover = st->domains.empty();
        st->domains_known = !st->discover;

        std::shared_ptr<credential_provider> provider = base;
        std::string error = base_error;
        if (const auto rrsa = instance_rrsa(st->cfg, env_)) {
            // The add-on's per-instance RRSA role: the pod's OIDC token, this role.
            const auto key = "rrsa|" + rrsa->role_arn + "|" + rrsa->oidc_provider_arn;
            auto& p = shared[key];
            if (!p) {
                auto& gauges = metrics_.add_source("rrsa/" + rrsa->role_arn);
                p = make_oidc_provider(*impl_->ctx, *rrsa, role_session_name(env_, st->cfg.role_session_name),
                                       sts_session_duration(ali.sts_duration), &gauges);
            }
            provider = p;
            error.clear();
        }
        const auto assume = instance_assume_role(st->cfg, env_);
        if (provider && assume) {
            const auto key = "assume|" + assume->role_arn + "|" + assume->role_session_name + "|" +
                             std::to_string(assume->duration.count()) + "|" + provider->identity();
            auto& p = shared[key];
            if (!p) {
                auto& gauges = metrics_.add_source("assume_role/" + assume->role_arn);
                p = make_assume_role_provider(*impl_->ctx, provider, *assume, &gauges);
            }
            provider = p;
        }
        st->provider = provider;
        st->provider_error = error;
        instances_.push_back(std::move(st));
    }
    publish();
}

acr_password_store::~acr_password_store() {
    stop();
}

void acr_password_store::start() {
    std::lock_guard lk(mu_);
    if (control_thread_.joinable() || stopping_) {
        return;
    }
    control_thread_ = std::thread([this] { run_control(); });
    waiter_thread_ = std::thread([this] { run_waiters(); });
    running_.store(true);
}

void acr_password_store::stop() {
    {
        std::lock_guard lk(mu_);
        stopping_ = true;
    }
    running_.store(false);
    cv_.notify_all();
    if (control_thread_.joinable()) {
        control_thread_.join();
    }
    std::map<std::uint64_t, waiter> left;
    {
        std::lock_guard lk(waiters_mu_);
        waiters_stopping_ = true;
        left.swap(waiters_);
    }
    waiters_cv_.notify_all();
    if (waiter_thread_.joinable()) {
        waiter_thread_.join();
    }
    for (auto& [id, w] : left) {
        credential_answer a = find(w.host);
        a.state = credential_state::unavailable;
        a.credential.reset();
        a.reason = "the credential store is shutting down";
        w.complete(std::move(a));
    }
}

// ---- data path -------------------------------------------------------------------------

credential_answer acr_password_store::find(std::string_view host) const {
    const auto snap = snapshot_.load();
    credential_answer a;
    const auto it = snap->by_host.find(normalize_host(host));
    if (it == snap->by_host.end()) {
        if (snap->discovery_pending) {
            a.state = credential_state::pending;
            a.reason = "ACR endpoint discovery (ListInstanceEndpoint) has not finished yet";
        }
        return a;
    }
    const auto& e = snap->instances[it->second];
    a.instance = e.label;
    const auto now = clock_->now();
    if (e.credential && e.credential->expires_at > now) {
        a.state = credential_state::ready;
        a.credential = e.credential;
        return a;
    }
    if (!e.attempted) {
        a.state = credential_state::pending;
        a.reason = "the first temporary password for " + e.label + " is being fetched";
        return a;
    }
    a.state = credential_state::unavailable;
    if (e.credential) {
        a.reason = "the temporary password for " + e.label + " expired at " + format_time(e.credential->expires_at) +
                   (e.reason.empty() ? std::string() : " and could not be refreshed: " + e.reason);
    } else {
        a.reason = e.reason.empty() ? "no temporary password for " + e.label : e.reason;
    }
    return a;
}

bool acr_password_store::request_refresh(std::string_view host) {
    const auto snap = snapshot_.load();
    const auto it = snap->by_host.find(normalize_host(host));
    if (it == snap->by_host.end()) {
        return false;
    }
    {
        std::lock_guard lk(mu_);
        instances_[it->second]->refresh_requested = true;
    }
    cv_.notify_all();
    return true;
}

bool acr_password_store::add_waiter(std::uint64_t id, std::string host,
                                    std::function<void(credential_answer)> complete) {
    std::unique_lock lk(waiters_mu_);
    // Checked under the waiters lock: publish() stores the snapshot before
    // scanning the waiters under this lock, so no answer can be missed.
    auto a = find(host);
    const bool can_wait = running_.load() && !waiters_stopping_;
    if (a.state != credential_state::pending || !can_wait) {
        lk.unlock();
        if (a.state == credential_state::pending) {
            // Nobody would ever end the wait: answer now rather than hang the request.
            a.state = credential_state::unavailable;
            a.reason = "the ACR credential store is not running";
        }
        complete(std::move(a));
        return false;
    }
    const auto wait = duration_cast<std::chrono::steady_clock::duration>(cfg_->alibaba.first_credential_wait);
    waiters_.emplace(id, waiter{std::move(host), std::chrono::steady_clock::now() + wait, std::move(complete)});
    lk.unlock();
    waiters_cv_.notify_all();
    return true;
}

void acr_password_store::cancel_waiter(std::uint64_t id) {
    std::unique_lock lk(waiters_mu_);
    const auto it = waiters_.find(id);
    if (it == waiters_.end()) {
        return;
    }
    auto w = std::move(it->second);
    waiters_.erase(it);
    lk.unlock();
    credential_answer a;
    a.state = credential_state::cancelled;
    a.reason = "the request went away";
    w.complete(std::move(a));
}

void acr_password_store::complete_settled_waiters() {
    std::vector<std::pair<waiter, credential_answer>> done;
    {
        std::lock_guard lk(waiters_mu_);
        for (auto it = waiters_.begin(); it != waiters_.end();) {
            auto a = find(it->second.host);
            if (a.state != credential_state::pending) {
                done.emplace_back(std::move(it->second), std::move(a));
                it = waiters_.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto& [w, a] : done) {
        w.complete(std::move(a));
    }
}

void acr_password_store::run_waiters() {
    std::unique_lock lk(waiters_mu_);
    while (!waiters_stopping_) {
        const auto now = std::chrono::steady_clock::now();
        auto next = now + std::chrono::hours(1);
        std::vector<waiter> expired;
        for (auto it = waiters_.begin(); it != waiters_.end();) {
            if (it->second.deadline <= now) {
                expired.push_back(std::move(it->second));
                it = waiters_.erase(it);
            } else {
                next = std::min(next, it->second.deadline);
                ++it;
            }
        }
        if (!expired.empty()) {
            lk.unlock();
            for (auto& w : expired) {
                auto a = find(w.host);
                if (a.state == credential_state::pending) {
                    a.state = credential_state::unavailable;
                    a.reason =
                        "timed out after " +
                        std::to_string(duration_cast<milliseconds>(cfg_->alibaba.first_credential_wait).count()) +
                        " ms waiting: " + a.reason;
                }
                w.complete(std::move(a));
            }
            lk.lock();
            continue;
        }
        waiters_cv_.wait_until(lk, next);
    }
}

// ---- control thread --------------------------------------------------------------------

double acr_password_store::jitter() {
    if (random01_) {
        return random01_();
    }
    return std::uniform_real_distribution<double>(0.0, 1.0)(impl_->prng);
}

std::string acr_password_store::node_region() {
    if (!cfg_->alibaba.region_id.empty()) {
        return cfg_->alibaba.region_id;
    }
    if (impl_->node_region) {
        return *impl_->node_region;
    }
    if (cfg_->alibaba.ecs_metadata_disabled || env_flag(env_, "ALIBABA_CLOUD_ECS_METADATA_DISABLED")) {
        impl_->node_region_error = "no regionId is configured and instance metadata is disabled";
        return {};
    }
    auto r = impl_->imds->region_id();
    if (!r) {
        impl_->node_region_error =
            "no regionId is configured and the node's region could not be read: " + r.error().describe();
        return {};
    }
    impl_->node_region = r.value();
    return r.value();
}

void acr_password_store::run_control() {
    std::unique_lock lk(mu_);
    while (!stopping_) {
        const auto now = clock_->now();
        instance_state* due = nullptr;
        auto next = now + std::chrono::hours(1);
        for (auto& inst : instances_) {
            auto at = inst->next_refresh;
            if (inst->discover) {
                at = std::min(at, inst->next_discovery);
            }
            if (inst->refresh_requested || at <= now) {
                due = inst.get();
                break;
            }
            next = std::min(next, at);
        }
        if (due != nullptr) {
            const bool forced = due->refresh_requested;
            due->refresh_requested = false;
            lk.unlock();
            if (forced) {
                due->next_refresh = std::min(due->next_refresh, clock_->now());
            }
            work_on(*due);
            publish();
            lk.lock();
            continue;
        }
        clock_->wait_until(lk, cv_, next);
    }
}

bool acr_password_store::ensure_region(instance_state& inst) {
    if (!inst.region.empty()) {
        return true;
    }
    inst.region = !inst.cfg.region_id.empty() ? inst.cfg.region_id : node_region();
    if (!inst.region.empty()) {
        if (inst.cfg.instance_id.empty() && inst.discover) {
            // Personal Edition: its registry domains follow from the region.
            inst.domains = personal_edition_domains(inst.region);
            inst.discover = false;
            inst.domains_known = true;
        }
        return true;
    }
    const auto now = clock_->now();
    inst.failures++;
    inst.attempted = true;
    inst.discovery_attempted = true;
    inst.reason = (inst.cfg.instance_id.empty() ? std::string("ACR Personal Edition") : "ACR instance " + inst.label) +
                  ": " + impl_->node_region_error;
    const auto delay = backoff_delay(inst.failures, cfg_->alibaba.refresh_backoff_initial,
                                     cfg_->alibaba.refresh_backoff_max, jitter());
    inst.next_refresh = now + delay;
    inst.next_discovery = now + delay;
    inst.counters->refresh_failure.fetch_add(1, std::memory_order_relaxed);
    return false;
}

void acr_password_store::work_on(instance_state& inst) {
    if (!inst.provider) {
        const auto now = clock_->now();
        inst.attempted = true;
        inst.discovery_attempted = true;
        inst.reason = "ACR instance " + inst.label + ": " + inst.provider_error;
        inst.counters->refresh_failure.fetch_add(1, std::memory_order_relaxed);
        // Nothing can change without a new config; look again rarely.
        inst.next_refresh = now + cfg_->alibaba.refresh_backoff_max;
        inst.next_discovery = inst.next_refresh;
        return;
    }
    if (!ensure_region(inst)) {
        return;
    }
    if (inst.discover && inst.next_discovery <= clock_->now()) {
        discover(inst);
    }
    if (inst.next_refresh <= clock_->now()) {
        refresh_password(inst);
    }
}

void acr_password_store::discover(instance_state& inst) {
    const auto& ali = cfg_->alibaba;
    const auto min_validity = 2 * cfg_->expiring_threshold;
    auto cred = inst.provider->get(min_validity);
    api_result<std::vector<instance_domain>> listed =
        cred ? impl_->api->list_instance_endpoint(resolve_acr_endpoint(*cfg_, inst.region), inst.cfg.instance_id,
                                                  cred.value())
             : api_result<std::vector<instance_domain>>(cred.error());
    const auto now = clock_->now();
    inst.discovery_attempted = true;
    if (listed) {
        std::vector<std::string> domains;
        for (const auto& d : listed.value()) {
            domains.push_back(normalize_host(d.domain));
        }
        if (domains.empty()) {
            inst.discovery_reason =
                "ACR instance " + inst.label + " (region " + inst.region +
                "): ListInstanceEndpoint returned no enabled endpoint; enable one or configure domains";
        } else {
            inst.discovery_reason.clear();
        }
        if (domains != inst.domains) {
            acp::logging::logger("tokens")->info("ACR instance {}: {} registry domain(s) discovered", inst.label,
                                                 domains.size());
        }
        inst.domains = std::move(domains);
        inst.domains_known = !inst.domains.empty();
        inst.discovery_failures = 0;
        inst.next_discovery = now + ali.endpoint_relist_interval;
        inst.counters->discovery_success.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    if (listed.error().credential_rejected()) {
        inst.provider->invalidate();
    }
    inst.discovery_failures++;
    inst.discovery_reason =
        describe_instance_failure(inst.label, inst.region, inst.provider->identity(), listed.error());
    inst.next_discovery =
        now + backoff_delay(inst.discovery_failures, ali.refresh_backoff_initial, ali.refresh_backoff_max, jitter());
    inst.counters->discovery_failure.fetch_add(1, std::memory_order_relaxed);
    acp::logging::logger("tokens")->warn("{}", inst.discovery_reason);
}

void acr_password_store::refresh_password(instance_state& inst) {
    const auto& ali = cfg_->alibaba;
    // Refresh the signing credential first when it would cut the password short.
    const auto min_validity = 2 * cfg_->expiring_threshold;
    auto cred = inst.provider->get(min_validity);
    api_result<acr_temporary_password> pw = api_error{};
    const auto endpoint = resolve_acr_endpoint(*cfg_, inst.region);
    if (!cred) {
        pw = cred.error();
    } else if (inst.cfg.instance_id.empty()) {
        pw = impl_->api->get_personal_authorization_token(endpoint, cred.value());
    } else {
        pw = impl_->api->get_authorization_token(endpoint, inst.cfg.instance_id, cred.value());
    }
    const auto now = clock_->now();
    inst.attempted = true;
    if (pw) {
        // The password cannot outlive the STS credential that obtained it (facts §1.2).
        auto expires = pw->expires_at;
        if (cred->expiration && *cred->expiration < expires) {
            expires = *cred->expiration;
        }
        if (expires <= now + min_password_life) {
            // Refreshing would spin: most likely this node's clock is far off.
            pw = api_error{"GetAuthorizationToken",
                           "ExpiredOnArrival",
                           "the new temporary password expires at " + format_time(expires) +
                               ", not later than this node's clock (" + format_time(now) +
                               ") allows; check the node's time synchronisation (NTP)",
                           0,
                           pw->request_id,
                           url_origin(endpoint)};
        }
    }
    if (pw) {
        auto c = std::make_shared<basic_credential>();
        c->username = pw->username;
        c->password = std::move(pw->password);
        c->issued_at = now;
        c->expires_at = pw->expires_at;
        if (cred->expiration && *cred->expiration < c->expires_at) {
            c->expires_at = *cred->expiration;
        }
        c->instance = inst.label;
        inst.next_refresh = std::max(compute_refresh_at(now, c->expires_at, cfg_->expiring_threshold, jitter()),
                                     now + min_refresh_interval);
        inst.failures = 0;
        inst.reason.clear();
        inst.counters->password.set(c->issued_at, c->expires_at);
        inst.counters->refresh_success.fetch_add(1, std::memory_order_relaxed);
        acp::logging::logger("tokens")->info(
            "ACR instance {}: temporary password refreshed (user {}, password {}, expires {}, next refresh {})",
            inst.label, c->username, acp::logging::redact(c->password.reveal()), format_time(c->expires_at),
            format_time(inst.next_refresh));
        inst.credential = std::move(c);
        return;
    }
    if (pw.error().credential_rejected()) {
        inst.provider->invalidate();
    }
    inst.failures++;
    inst.reason = describe_instance_failure(inst.cfg.instance_id, inst.region, inst.provider->identity(), pw.error());
    auto retry = now + backoff_delay(inst.failures, ali.refresh_backoff_initial, ali.refresh_backoff_max, jitter());
    inst.next_refresh = retry;
    inst.counters->refresh_failure.fetch_add(1, std::memory_order_relaxed);
    const bool still_valid = inst.credential && inst.credential->expires_at > now;
    acp::logging::logger("tokens")->warn(
        "{} (retry at {}; {})", inst.reason, format_time(retry),
        still_valid ? "the current password stays in use until " + format_time(inst.credential->expires_at)
                    : std::string("no valid password"));
}

void acr_password_store::publish() {
    auto snap = std::make_shared<store_snapshot>();
    const auto prev = snapshot_.load();
    snap->generation = prev ? prev->generation + 1 : 1;
    const auto now = clock_->now();
    std::vector<std::string> all_domains;
    for (std::size_t i = 0; i < instances_.size(); ++i) {
        const auto& inst = *instances_[i];
        store_snapshot::entry e;
        e.label = inst.label;
        e.instance_id = inst.cfg.instance_id;
        e.region = inst.region.empty() ? inst.cfg.region_id : inst.region;
        e.identity = inst.provider ? inst.provider->identity() : std::string("none");
        e.domains = inst.domains;
        e.domains_known = inst.domains_known;
        e.attempted = inst.attempted && (inst.domains_known || inst.discovery_attempted);
        e.credential = inst.credential;
        e.reason = !inst.reason.empty() ? inst.reason : (inst.domains_known ? std::string() : inst.discovery_reason);
        if (inst.discover && !inst.discovery_attempted) {
            snap->discovery_pending = true;
        }
        for (const auto& d : inst.domains) {
            if (snap->by_host.emplace(d, i).second) {
                all_domains.push_back(d);
            } else {
                acp::logging::logger("tokens")->warn("domain {} is listed for two ACR instances; {} keeps it", d,
                                                     instances_[snap->by_host[d]]->label);
            }
        }
        const bool ready = inst.credential && inst.credential->expires_at > now && inst.domains_known;
        inst.counters->ready.store(ready, std::memory_order_relaxed);
        snap->instances.push_back(std::move(e));
    }
    snapshot_.store(std::move(snap));
    complete_settled_waiters();
    std::sort(all_domains.begin(), all_domains.end());
    if (all_domains != last_domains_) {
        last_domains_ = all_domains;
        if (domains_changed_ && prev) {
            domains_changed_(all_domains);
        }
    }
}

// ---- admin -----------------------------------------------------------------------------

std::vector<instance_status> acr_password_store::status() const {
    const auto snap = snapshot_.load();
    const auto now = clock_->now();
    std::vector<instance_status> out;
    for (const auto& e : snap->instances) {
        instance_status s;
        s.instance = e.label;
        s.instance_id = e.instance_id;
        s.region = e.region;
        s.identity = e.identity;
        s.domains = e.domains;
        s.ready = e.credential && e.credential->expires_at > now && e.domains_known;
        if (e.credential) {
            s.expires_at = e.credential->expires_at;
        }
        if (!s.ready) {
            const auto first = e.domains.empty() ? std::string() : e.domains.front();
            s.reason =
                !e.reason.empty() ? e.reason : (!first.empty() ? find(first).reason : std::string("not fetched yet"));
            if (s.reason.empty()) {
                s.reason = "not fetched yet";
            }
        }
        out.push_back(std::move(s));
    }
    return out;
}

bool acr_password_store::ready() const {
    const auto st = status();
    return std::all_of(st.begin(), st.end(), [](const auto& s) { return s.ready; });
}

std::vector<std::string> acr_password_store::domains() const {
    const auto snap = snapshot_.load();
    std::vector<std::string> out;
    out.reserve(snap->by_host.size());
    for (const auto& [d, i] : snap->by_host) {
        out.push_back(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace acp::tokens
