// Blocking HTTP(S) client for the control path (IMDS, STS, ACR OpenAPI), on libcurl.
//
// Owns: one reusable curl easy handle (keep-alive connections to the cloud
// endpoints). Thread affinity: an instance belongs to the one control thread
// that calls `perform`; it must NEVER be called from a data-path io_context
// (it blocks for up to the request's timeout). Nothing is async.
// Secrets: request bodies / headers are never logged; transport error text is
// curl's message plus scheme://host, never a query string.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace acp::tokens {

struct http_request {
    std::string method = "GET";
    std::string url;  // absolute http(s) URL, query already encoded
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds timeout{10000};  // whole exchange
    bool bypass_proxy = false;                 // IMDS: never through an HTTP proxy
};

struct http_response {
    long status = 0;
    std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
    std::string body;

    [[nodiscard]] std::optional<std::string> header(std::string_view lower_name) const;
};

struct http_outcome {
    std::optional<http_response> response;  // set when an HTTP answer arrived (any status)
    std::string error;                      // otherwise: what failed (no secrets)
    bool timed_out = false;
};

class http_client {
public:
    http_client() = default;
    http_client(const http_client&) = delete;
    http_client& operator=(const http_client&) = delete;
    http_client(http_client&&) = delete;
    http_client& operator=(http_client&&) = delete;
    virtual ~http_client() = default;

    virtual http_outcome perform(const http_request& req) = 0;
};

/// The libcurl implementation. Response bodies above 1 MiB are an error.
std::unique_ptr<http_client> make_curl_http_client();

/// "scheme://host[:port]" of a URL, for messages (drops path and query).
[[nodiscard]] std::string url_origin(std::string_view url);

/// "host[:port]" as sent in the Host header (port only when not the scheme's default).
[[nodiscard]] std::string url_host_header(std::string_view url);

}  // namespace acp::tokens
