// libFuzzer target: the downstream request head as the session reads it
// (Beast's parser with our 16 KiB header limit, then our framing, method,
// body and request-target checks: proxy/request_head.hpp), followed by the
// route lookup of a fixed table. Nothing crashes; whatever would be forwarded
// is a GET or HEAD without a body or ambiguous framing, with a head within the
// byte and field limits, a clean upstream target and an `ns` that is a configured host; every
// refusal maps to a local 4xx reply.
#include "config/loader.hpp"
#include "proxy/request_head.hpp"
#include "routing/route_table.hpp"
#include "tests/fuzz/fuzz_support.hpp"

#include <cstdint>
#include <iterator>
#include <memory>
#include <string>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace proxy = acp::proxy;
namespace http = proxy::http;
using acp::fuzz::require;

const acp::routing::route_table& routes() {
    static const acp::routing::route_table table(
        acp::config::load_yaml(R"(
registries:
  - host: registry.example.com
  - host: mirror.example.com:5000
acrInstances:
  - instanceId: cri-fuzz00000000001
    regionId: cn-hangzhou
    domains: [demo-registry.cn-hangzhou.cr.aliyuncs.com]
)",
                               "routes.yaml",
                               {[](const std::string&) { return std::optional<std::string>(); },
                                [](const std::string&) {
                                    return std::optional<std::string>();
                                }})
            .cfg);
    return table;
}

void require_local_4xx(proxy::errc e) {
    const auto reply = proxy::to_local_reply(proxy::make_error_code(e), {"", "", "", ""});
    const auto status = static_cast<unsigned>(reply.status);
    require(status >= 400 && status < 500);
    require(!reply.body.empty());
}

// What the request says about its body, read independently of Beast's flags.
bool announces_body(const http::request<http::empty_body>& req) {
    if (req.count(http::field::transfer_encoding) != 0) {
        return true;
    }
    for (const auto& f : req) {
        // Any digit but 0 ("00" is a valid zero).
        if (f.name() == http::field::content_length && f.value().find_first_not_of('0') != std::string_view::npos) {
            return true;
        }
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto bytes = acp::fuzz::as_text(data, size);
    const auto r = proxy::parse_request_head(bytes);
    switch (r.stage) {
        case proxy::head_stage::empty:
            require(bytes.empty());
            return 0;
        case proxy::head_stage::incomplete:
        case proxy::head_stage::read_error:
            require(r.error == proxy::errc::malformed_http || r.error == proxy::errc::header_too_large ||
                    r.error == proxy::errc::request_smuggling);
            require_local_4xx(r.error);
            return 0;
        case proxy::head_stage::checked:
            break;
    }
    require(r.consumed > 0 && r.consumed <= bytes.size());
    require(r.consumed <= proxy::max_request_header_bytes);
    const auto& v = r.verdict;
    if (v.reject) {
        require(!v.path);
        require_local_4xx(*v.reject);
        require(!acp::fuzz::has_control(v.detail));
        return 0;
    }
    require(v.path.has_value() && !v.close);

    // Accepted: parse the head again to look at it as forwarding would.
    proxy::request_parser parser;
    proxy::apply_request_limits(parser);
    proxy::error_code ec;
    parser.put(proxy::net::buffer(bytes.data(), r.consumed), ec);
    require(!ec && parser.is_header_done());
    const auto& req = parser.get();
    require(req.method() == http::verb::get || req.method() == http::verb::head);
    require(!announces_body(req));
    require(static_cast<std::size_t>(std::distance(req.begin(), req.end())) <= proxy::max_request_header_fields);

    const auto target = v.path->upstream_target();
    require(!target.empty() && target.front() == '/' && !acp::fuzz::has_control(target) &&
            target.find(' ') == std::string::npos);
    if (v.path->kind == acp::routing::request_kind::ping) {
        return 0;
    }
    if (const auto* route = routes().resolve(v.path->ns)) {
        // Never an open proxy: the route is the configured host `ns` names.
        require(v.path->ns.has_value() && route->host == *v.path->ns);
    }
    return 0;
}
