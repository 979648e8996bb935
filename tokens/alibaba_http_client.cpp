#include "tokens/alibaba_http_client.hpp"

#include "config/logging.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <mutex>

namespace acp::tokens {

namespace {

constexpr std::size_t max_body = std::size_t{1024} * 1024;

// For the debug log: the URL's path and, of its query, only the `Action`
// parameter (RPC-style APIs name the call there). Everything else in a query
// (signatures, SecurityToken, nonces) stays out of logs.
std::string loggable_target(std::string_view url) {
    const auto scheme_end = url.find("://");
    std::string_view rest = scheme_end == std::string_view::npos ? url : url.substr(scheme_end + 3);
    const auto path_at = rest.find('/');
    if (path_at == std::string_view::npos) {
        return "/";
    }
    rest = rest.substr(path_at);
    const auto q = rest.find('?');
    std::string out(rest.substr(0, std::min(rest.find('#'), q)));
    if (q != std::string_view::npos) {
        std::string_view query = rest.substr(q + 1);
        while (!query.empty()) {
            const auto amp = query.find('&');
            const std::string_view param = query.substr(0, amp);
            if (param.starts_with("Action=") && param.size() < 80) {
                out += "?";
                out += param;
                break;
            }
            query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        }
    }
    return out;
}

std::string to_lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
        s.remove_suffix(1);
    }
    return std::string(s);
}

struct transfer {
    http_response response;
    bool too_large = false;
};

extern "C" std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
    auto* t = static_cast<transfer*>(user);
    const std::size_t len = size * n;
    if (t->response.body.size() + len > max_body) {
        t->too_large = true;
        return 0;  // aborts the transfer
    }
    t->response.body.append(data, len);
    return len;
}

extern "C" std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
    auto* t = static_cast<transfer*>(user);
    const std::size_t len = size * n;
    const std::string_view line(data, len);
    if (line.substr(0, 5) == "HTTP/") {
        t->response.headers.clear();  // a new response (after 100-continue or a redirect)
        return len;
    }
    const auto colon = line.find(':');
    if (colon != std::string_view::npos) {
        t->response.headers.emplace_back(to_lower(trim(line.substr(0, colon))), trim(line.substr(colon + 1)));
    }
    return len;
}

void global_init_once() {
    static std::once_flag flag;
    std::call_once(flag, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string no_proxy_list() {
    // Loopback never goes through a proxy; keep whatever the operator excluded.
    std::string list = "127.0.0.1,::1,localhost";
    for (const char* name : {"NO_PROXY", "no_proxy"}) {
        // NOLINTNEXTLINE(concurrency-mt-unsafe): read once per client, nobody calls setenv
        if (const char* v = std::getenv(name); v != nullptr && *v != '\0') {
            list += ",";
            list += v;
            break;
        }
    }
    return list;
}

class curl_http_client final : public http_client {
public:
    curl_http_client() : handle_(curl_easy_init()), no_proxy_(no_proxy_list()) {}
    curl_http_client(const curl_http_client&) = delete;
    curl_http_client& operator=(const curl_http_client&) = delete;
    curl_http_client(curl_http_client&&) = delete;
    curl_http_client& operator=(curl_http_client&&) = delete;
    ~curl_http_client() override {
        if (handle_ != nullptr) {
            curl_easy_cleanup(handle_);
        }
    }

    http_outcome perform(const http_request& req) override {
        http_outcome out;
        if (handle_ == nullptr) {
            out.error = "curl_easy_init failed";
            return out;
        }
        CURL* h = handle_;
        curl_easy_reset(h);
        transfer t;
        curl_slist* headers = nullptr;
        bool has_expect = false;
        for (const auto& [name, value] : req.headers) {
            std::string line = name;
            line += ": ";
            line += value;
            headers = curl_slist_append(headers, line.c_str());
            has_expect = has_expect || to_lower(name) == "expect";
        }
        if (!has_expect) {
            headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
        }
        std::array<char, CURL_ERROR_SIZE> errbuf{};

        curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(req.connect_timeout.count()));
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout.count()));
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf.data());
        curl_easy_setopt(h, CURLOPT_NOPROXY, req.bypass_proxy ? "*" : no_proxy_.c_str());
        if (req.method == "GET") {
            curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        } else if (req.method == "HEAD") {
            curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        } else {
            if (req.method == "POST") {
                curl_easy_setopt(h, CURLOPT_POST, 1L);
            } else {
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
            }
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.c_str());
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
        }

        const auto started = std::chrono::steady_clock::now();
        const CURLcode rc = curl_easy_perform(h);
        curl_slist_free_all(headers);
        const auto elapsed_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
        if (rc != CURLE_OK) {
            out.timed_out = rc == CURLE_OPERATION_TIMEDOUT;
            if (t.too_large) {
                out.error = "response body larger than 1 MiB from " + url_origin(req.url);
            } else {
                out.error = std::string(curl_easy_strerror(rc)) + " (" + url_origin(req.url) + ")";
                // The error buffer may name the host; it never holds the query string.
                if (errbuf[0] != '\0') {
                    out.error += ": " + std::string(errbuf.data());
                }
            }
            acp::logging::logger("tokens")->debug("{} {}{} failed after {:.1f} ms: {}", req.method, url_origin(req.url),
                                                  loggable_target(req.url), elapsed_ms, out.error);
            return out;
        }
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &t.response.status);
        acp::logging::logger("tokens")->debug("{} {}{} -> {} in {:.1f} ms ({} bytes)", req.method, url_origin(req.url),
                                              loggable_target(req.url), t.response.status, elapsed_ms,
                                              t.response.body.size());
        out.response = std::move(t.response);
        return out;
    }

private:
    CURL* handle_;
    std::string no_proxy_;
};

}  // namespace

std::optional<std::string> http_response::header(std::string_view lower_name) const {
    for (const auto& [name, value] : headers) {
        if (name == lower_name) {
            return value;
        }
    }
    return std::nullopt;
}

std::unique_ptr<http_client> make_curl_http_client() {
    global_init_once();
    return std::make_unique<curl_http_client>();
}

std::string url_origin(std::string_view url) {
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos) {
        return "<invalid URL>";
    }
    const auto rest = url.substr(scheme_end + 3);
    const auto end = rest.find_first_of("/?#");
    return std::string(url.substr(0, scheme_end + 3)) + std::string(rest.substr(0, end));
}

std::string url_host_header(std::string_view url) {
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos) {
        return {};
    }
    const auto scheme = to_lower(url.substr(0, scheme_end));
    auto authority = url.substr(scheme_end + 3);
    authority = authority.substr(0, authority.find_first_of("/?#"));
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
        authority.remove_prefix(at + 1);
    }
    // Drop a default port so the signed Host matches what curl sends.
    const auto colon = authority.rfind(':');
    const auto bracket = authority.rfind(']');
    if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
        const auto port = authority.substr(colon + 1);
        if ((scheme == "https" && port == "443") || (scheme == "http" && port == "80")) {
            authority = authority.substr(0, colon);
        }
    }
    return to_lower(authority);
}

}  // namespace acp::tokens
