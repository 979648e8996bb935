#include "tokens/alibaba_metrics.hpp"

namespace acp::tokens {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

void add_gauges(std::vector<metric_sample>& out, const credential_gauges& g, std::string_view kind,
                std::string_view label_name, time_point now) {
    const auto issued = g.issued_at_ms.load(relaxed);
    const auto expires = g.expires_at_ms.load(relaxed);
    if (issued == 0) {
        return;  // no credential yet: absent rather than a misleading 0
    }
    const auto now_ms = to_epoch_ms(now);
    const std::vector<std::pair<std::string, std::string>> labels{{std::string(label_name), g.label}};
    out.push_back({"acp_" + std::string(kind) + "_age_seconds", labels, static_cast<double>(now_ms - issued) / 1000.0});
    if (expires != 0) {
        out.push_back(
            {"acp_" + std::string(kind) + "_expiry_seconds", labels, static_cast<double>(expires - now_ms) / 1000.0});
    }
}

}  // namespace

std::string_view api_label(alibaba_api api) {
    switch (api) {
        case alibaba_api::imds_token:
            return "imds_token";
        case alibaba_api::imds_metadata:
            return "imds_metadata";
        case alibaba_api::sts_assume_role:
            return "sts_AssumeRole";
        case alibaba_api::sts_assume_role_with_oidc:
            return "sts_AssumeRoleWithOIDC";
        case alibaba_api::acr_get_authorization_token:
            return "cr_GetAuthorizationToken";
        case alibaba_api::acr_get_authorization_token_personal:
            return "cr_GetAuthorizationToken_personal";
        case alibaba_api::acr_list_instance_endpoint:
            return "cr_ListInstanceEndpoint";
        case alibaba_api::count_:
            break;
    }
    return "unknown";
}

void api_counters::record(bool ok, std::chrono::milliseconds latency) {
    (ok ? success : failure).fetch_add(1, relaxed);
    const auto ms = static_cast<std::uint64_t>(latency.count() < 0 ? 0 : latency.count());
    latency_ms_sum.fetch_add(ms, relaxed);
    auto prev = latency_ms_max.load(relaxed);
    while (prev < ms && !latency_ms_max.compare_exchange_weak(prev, ms, relaxed)) {
    }
}

void credential_gauges::set(time_point issued, time_point expires) {
    issued_at_ms.store(to_epoch_ms(issued), relaxed);
    expires_at_ms.store(to_epoch_ms(expires), relaxed);
}

std::vector<metric_sample> alibaba_metrics::collect(time_point now) const {
    std::vector<metric_sample> out;
    for (const auto& inst : instances_) {
        add_gauges(out, inst.password, "acr_password", "instance", now);
        const auto count = [&](std::string name, std::string outcome, const std::atomic<std::uint64_t>& v) {
            out.push_back({std::move(name),
                           {{"instance", inst.label}, {"outcome", std::move(outcome)}},
                           static_cast<double>(v.load(relaxed))});
        };
        count("acp_acr_password_refresh_total", "success", inst.refresh_success);
        count("acp_acr_password_refresh_total", "failure", inst.refresh_failure);
        count("acp_acr_endpoint_discovery_total", "success", inst.discovery_success);
        count("acp_acr_endpoint_discovery_total", "failure", inst.discovery_failure);
        out.push_back({"acp_acr_instance_ready", {{"instance", inst.label}}, inst.ready.load(relaxed) ? 1.0 : 0.0});
    }
    for (const auto& src : sources_) {
        add_gauges(out, src, "cloud_credential", "source", now);
    }
    for (std::size_t i = 0; i < alibaba_api_count; ++i) {
        const auto& c = api[i];
        const std::string label(api_label(static_cast<alibaba_api>(i)));
        out.push_back({"acp_alibaba_api_requests_total",
                       {{"api", label}, {"outcome", "success"}},
                       static_cast<double>(c.success.load(relaxed))});
        out.push_back({"acp_alibaba_api_requests_total",
                       {{"api", label}, {"outcome", "failure"}},
                       static_cast<double>(c.failure.load(relaxed))});
        out.push_back({"acp_alibaba_api_latency_seconds_sum",
                       {{"api", label}},
                       static_cast<double>(c.latency_ms_sum.load(relaxed)) / 1000.0});
        out.push_back({"acp_alibaba_api_latency_seconds_max",
                       {{"api", label}},
                       static_cast<double>(c.latency_ms_max.load(relaxed)) / 1000.0});
    }
    return out;
}

}  // namespace acp::tokens
