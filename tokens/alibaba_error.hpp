// Errors of the Alibaba Cloud control path (IMDS, STS, ACR OpenAPI) and the
// one place that turns them into operator-facing messages.
//
// Owns: `api_error` (what went wrong, never a secret), `api_result<T>` (value
// or error, no exceptions on the control loop), scrubbing of server-echoed
// text, and the RAM-permission hints. Pure; no thread affinity.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace acp::tokens {

struct api_error {
    std::string api;         // "GetAuthorizationToken", "AssumeRole", "IMDS credentials", ...
    std::string code;        // the service's Code ("Forbidden.RAM", "USER_NOT_EXIST"), or ours ("Transport", ...)
    std::string message;     // the service's Message, scrubbed; or our explanation
    long http_status = 0;    // 0: no HTTP answer
    std::string request_id;  // the service's RequestId, for support tickets
    std::string endpoint;    // scheme://host of the endpoint called (never a query string)

    /// "<api> at <endpoint> failed: HTTP 403, Code=..., Message=..., RequestId=..."
    [[nodiscard]] std::string describe() const;

    /// True when the credential used to sign is the likely culprit (expired or
    /// revoked STS token, unknown AccessKeyId): the caller drops its cached
    /// credential before retrying.
    [[nodiscard]] bool credential_rejected() const;
};

/// A value or an api_error. Control-path code branches on it; nothing throws.
template <class T>
class api_result {
public:
    api_result(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
    api_result(api_error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

    [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }
    [[nodiscard]] T& value() & { return std::get<0>(v_); }
    [[nodiscard]] const T& value() const& { return std::get<0>(v_); }
    [[nodiscard]] T&& value() && { return std::get<0>(std::move(v_)); }
    [[nodiscard]] const api_error& error() const { return std::get<1>(v_); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

private:
    std::variant<T, api_error> v_;
};

/// Server text that may echo request material (STS "server string to sign is:
/// ...SecurityToken%3D..."): cut at the echo, replace each of `secrets` (and
/// their percent-encoded form) with "<redacted>", bound the length.
[[nodiscard]] std::string scrub(std::string_view text, const std::vector<std::string_view>& secrets = {});

/// The RAM permission most likely missing when `api` fails with `code`
/// (e.g. "cr:GetAuthorizationToken"); empty when the failure is not about permissions.
[[nodiscard]] std::string ram_permission_hint(std::string_view api, std::string_view code, long http_status);

/// The one message for an ACR instance whose credential step failed: names the
/// instance, region, API action, Code/Message and what to do.
[[nodiscard]] std::string describe_instance_failure(std::string_view instance, std::string_view region,
                                                    std::string_view identity, const api_error& err);

/// For the proxy's 403 when the registry refuses a fresh token: what RAM
/// permission the node identity probably lacks for this instance.
[[nodiscard]] std::string pull_denied_hint(std::string_view instance, std::string_view identity);

}  // namespace acp::tokens
