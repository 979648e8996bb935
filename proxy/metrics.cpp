#include "proxy/metrics.hpp"

#include <fmt/format.h>

#include <chrono>

namespace acp::proxy {
namespace {

std::string status_class(unsigned status) {
    return fmt::format("{}xx", status / 100);
}

// Label values here are route hosts and fixed words; escape anyway.
std::string label(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') {
            out += '\\';
        }
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

}  // namespace

void metrics::on_request(std::string_view registry, std::string_view kind, unsigned status,
                         config::duration to_headers) {
    ++requests_[{std::string(registry), std::string(kind), status_class(status)}];
    const double seconds = std::chrono::duration<double>(to_headers).count();
    for (std::size_t i = 0; i < latency_buckets.size(); ++i) {
        if (seconds <= latency_buckets[i]) {
            ++latency_counts_[i];
            break;
        }
    }
    ++latency_count_;
    latency_sum_ += seconds;
}

void metrics::add_relayed_bytes(std::string_view registry, std::uint64_t n) {
    relayed_bytes_[std::string(registry)] += n;
}

void metrics::on_upstream_connect_error(std::string_view upstream) {
    ++connect_errors_[std::string(upstream)];
}

void metrics::on_upstream_tls_error(std::string_view upstream) {
    ++tls_errors_[std::string(upstream)];
}

void metrics::on_upstream_connection(bool reused) {
    ++(reused ? upstream_reused_ : upstream_new_);
}

std::string metrics::render() const {
    std::string out;
    auto header = [&out](std::string_view name, std::string_view type, std::string_view help) {
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    };
    header("acp_requests_total", "counter", "Registry requests answered, by registry host, kind and status class.");
    for (const auto& [key, n] : requests_) {
        const auto& [registry, kind, cls] = key;
        out += fmt::format("acp_requests_total{{registry=\"{}\",kind=\"{}\",status=\"{}\"}} {}\n", label(registry),
                           label(kind), cls, n);
    }
    header("acp_relayed_bytes_total", "counter", "Response body bytes relayed downstream, by registry host.");
    for (const auto& [registry, n] : relayed_bytes_) {
        out += fmt::format("acp_relayed_bytes_total{{registry=\"{}\"}} {}\n", label(registry), n);
    }
    header("acp_upstream_connect_errors_total", "counter", "Failed upstream connects (DNS, TCP), by upstream.");
    for (const auto& [upstream, n] : connect_errors_) {
        out += fmt::format("acp_upstream_connect_errors_total{{upstream=\"{}\"}} {}\n", label(upstream), n);
    }
    header("acp_upstream_tls_errors_total", "counter", "Failed upstream TLS handshakes, by upstream.");
    for (const auto& [upstream, n] : tls_errors_) {
        out += fmt::format("acp_upstream_tls_errors_total{{upstream=\"{}\"}} {}\n", label(upstream), n);
    }
    header("acp_upstream_connections_total", "counter", "Upstream connections used, new or reused from the pool.");
    out += fmt::format("acp_upstream_connections_total{{reused=\"false\"}} {}\n", upstream_new_);
    out += fmt::format("acp_upstream_connections_total{{reused=\"true\"}} {}\n", upstream_reused_);
    header("acp_upstream_tls_handshakes_total", "counter", "Successful upstream TLS handshakes (HTTP/1.1 and HTTP/2).");
    out += fmt::format("acp_upstream_tls_handshakes_total {}\n", upstream_tls_handshakes_);
    header("acp_upstream_h2_connections", "gauge", "Upstream HTTP/2 connections open now.");
    out += fmt::format("acp_upstream_h2_connections {}\n", upstream_h2_connections_);
    header("acp_request_latency_seconds", "histogram",
           "Time from the request head to the response head sent downstream.");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < latency_buckets.size(); ++i) {
        cumulative += latency_counts_[i];
        out += fmt::format("acp_request_latency_seconds_bucket{{le=\"{}\"}} {}\n", latency_buckets[i], cumulative);
    }
    out += fmt::format("acp_request_latency_seconds_bucket{{le=\"+Inf\"}} {}\n", latency_count_);
    out += fmt::format("acp_request_latency_seconds_sum {}\n", latency_sum_);
    out += fmt::format("acp_request_latency_seconds_count {}\n", latency_count_);
    header("acp_open_connections", "gauge", "Open downstream connections on the data listener.");
    out += fmt::format("acp_open_connections {}\n", open_connections_);
    header("acp_config_reloads_total", "counter", "Configuration reloads, by result.");
    out += fmt::format("acp_config_reloads_total{{result=\"ok\"}} {}\n", reloads_ok_);
    out += fmt::format("acp_config_reloads_total{{result=\"rejected\"}} {}\n", reloads_failed_);
    header("acp_scope_denied_total", "counter",
           "Requests answered 404 by the pull scope: only out-of-scope pods reference the repository, or none does.");
    out += fmt::format("acp_scope_denied_total{{reason=\"out_of_scope\"}} {}\n", scope_out_of_scope_);
    out += fmt::format("acp_scope_denied_total{{reason=\"not_referenced\"}} {}\n", scope_unreferenced_);
    header("acp_scope_waits_total", "counter", "Requests that waited for a pod on this node to reference them.");
    out += fmt::format("acp_scope_waits_total {}\n", scope_waits_);
    return out;
}

}  // namespace acp::proxy
