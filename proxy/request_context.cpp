#include "proxy/request_context.hpp"

#include "config/logging.hpp"

namespace acp::proxy {
namespace {

double ms(std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace

void log_access(const request_context& rc) {
    static const auto log = logging::logger("access");
    const auto duration = std::chrono::steady_clock::now() - rc.start;
    std::string line = fmt::format(
        "id={} method={} registry={} repository={} kind={} status={} bytes={} duration_ms={:.1f} upstream_ms={} "
        "auth_injected={} auth={}",
        rc.id, rc.method, rc.registry, rc.repository, rc.kind, rc.status, rc.bytes, ms(duration),
        rc.upstream_time ? fmt::format("{:.1f}", ms(*rc.upstream_time)) : std::string("-"),
        rc.auth.rfind("injected", 0) == 0 ? "yes" : "no", rc.auth);
    if (rc.redirects > 0) {
        line += fmt::format(" redirects={}", rc.redirects);
    }
    if (!rc.error.empty()) {
        line += " error=" + logging::json_escape(rc.error);
    }
    log->info("{}", line);
}

}  // namespace acp::proxy
