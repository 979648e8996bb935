// Counters and gauges of the Alibaba credential path, for the admin endpoint.
//
// Owns: plain atomics. Written by the control thread (relaxed stores), read by
// any thread (the admin renderer) without locks. The set of instances and
// sources is fixed when the password store is built (`add_*` before start);
// afterwards only the atomics change, so references stay valid.
#pragma once

#include "tokens/alibaba_clock.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace acp::tokens {

enum class alibaba_api : std::size_t {
    imds_token,
    imds_metadata,
    sts_assume_role,
    sts_assume_role_with_oidc,
    acr_get_authorization_token,
    acr_get_authorization_token_personal,
    acr_list_instance_endpoint,
    count_,
};
inline constexpr std::size_t alibaba_api_count = static_cast<std::size_t>(alibaba_api::count_);

[[nodiscard]] std::string_view api_label(alibaba_api api);

struct api_counters {
    std::atomic<std::uint64_t> success{0};
    std::atomic<std::uint64_t> failure{0};
    std::atomic<std::uint64_t> latency_ms_sum{0};
    std::atomic<std::uint64_t> latency_ms_max{0};

    void record(bool ok, std::chrono::milliseconds latency);
};

/// Issue and expiry instants of one credential (epoch ms; 0 = none yet).
struct credential_gauges {
    explicit credential_gauges(std::string l) : label(std::move(l)) {}
    const std::string label;
    std::atomic<std::int64_t> issued_at_ms{0};
    std::atomic<std::int64_t> expires_at_ms{0};

    void set(time_point issued, time_point expires);
};

struct instance_counters {
    explicit instance_counters(std::string l) : label(l), password(std::move(l)) {}
    const std::string label;  // instance id, or "personal/<region>"
    credential_gauges password;
    std::atomic<std::uint64_t> refresh_success{0};
    std::atomic<std::uint64_t> refresh_failure{0};
    std::atomic<std::uint64_t> discovery_success{0};
    std::atomic<std::uint64_t> discovery_failure{0};
    std::atomic<bool> ready{false};
};

/// One exported value: Prometheus-style name, labels and value.
struct metric_sample {
    std::string name;
    std::vector<std::pair<std::string, std::string>> labels;
    double value = 0;
};

class alibaba_metrics {
public:
    std::array<api_counters, alibaba_api_count> api{};

    /// Construction time only (before the control thread starts).
    instance_counters& add_instance(std::string label) { return instances_.emplace_back(std::move(label)); }
    credential_gauges& add_source(std::string label) { return sources_.emplace_back(std::move(label)); }

    [[nodiscard]] const std::deque<instance_counters>& instances() const { return instances_; }
    [[nodiscard]] const std::deque<credential_gauges>& sources() const { return sources_; }

    /// Everything as samples; ages and seconds-to-expiry are computed against `now`:
    ///   acp_acr_password_age_seconds{instance}        acp_acr_password_expiry_seconds{instance}
    ///   acp_cloud_credential_age_seconds{source}      acp_cloud_credential_expiry_seconds{source}
    ///   acp_acr_password_refresh_total{instance,outcome}  acp_acr_endpoint_discovery_total{instance,outcome}
    ///   acp_acr_instance_ready{instance}
    ///   acp_alibaba_api_requests_total{api,outcome}   acp_alibaba_api_latency_seconds_sum{api}
    ///   acp_alibaba_api_latency_seconds_max{api}
    [[nodiscard]] std::vector<metric_sample> collect(time_point now) const;

private:
    std::deque<instance_counters> instances_;
    std::deque<credential_gauges> sources_;
};

}  // namespace acp::tokens
