// Test harness for tests/support/fake_alibaba.py: starts the fake IMDS / STS /
// ACR OpenAPI process on loopback port 0, sets its knobs and reads what it saw.
//
// Owns: one child process (stopped by pid in the destructor; it also exits on
// its own when our end of its stdin closes). Thread affinity: the test thread.
// Skips the whole test binary with exit code 77 when python3 is missing.
#pragma once

#include "tokens/alibaba_clock.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace acp::test {

class fake_alibaba {
public:
    explicit fake_alibaba(const nlohmann::json& knobs = nlohmann::json::object());
    fake_alibaba(const fake_alibaba&) = delete;
    fake_alibaba& operator=(const fake_alibaba&) = delete;
    ~fake_alibaba();

    [[nodiscard]] std::string imds_url() const { return url(imds_port_); }
    [[nodiscard]] std::string sts_url() const { return url(sts_port_); }
    [[nodiscard]] std::string acr_url() const { return url(acr_port_); }
    /// The knob endpoint (also POST /check_password for a fake token realm).
    [[nodiscard]] std::string control_url() const { return url(control_port_); }

    /// Deep-merges `patch` into the knobs (see DEFAULT_KNOBS in fake_alibaba.py).
    void configure(const nlohmann::json& patch);
    /// Freezes the fake's clock at `t` (keep it in step with a manual_clock).
    void set_now(tokens::time_point t);
    void expire_imds_tokens();

    /// Every request recorded so far (service, action, status, principal, ...).
    [[nodiscard]] std::vector<nlohmann::json> requests();
    /// Requests matching service and action (and status, when given).
    [[nodiscard]] std::vector<nlohmann::json> requests(std::string_view service, std::string_view action,
                                                       std::optional<int> status = std::nullopt);
    [[nodiscard]] std::size_t count(std::string_view service, std::string_view action,
                                    std::optional<int> status = std::nullopt) {
        return requests(service, action, status).size();
    }
    void reset_requests();

private:
    [[nodiscard]] static std::string url(std::uint16_t port) { return "http://127.0.0.1:" + std::to_string(port); }
    nlohmann::json control(const std::string& method, const std::string& path, const nlohmann::json& body);

    pid_t pid_ = -1;
    int stdin_fd_ = -1;
    std::uint16_t imds_port_ = 0;
    std::uint16_t sts_port_ = 0;
    std::uint16_t acr_port_ = 0;
    std::uint16_t control_port_ = 0;
};

/// Polls `pred` every few milliseconds until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace acp::test
