// libFuzzer target: the downstream request target (`/v2/...?ns=...`) comes
// from any local process. Parsing must never crash, and whatever it accepts
// must be well-formed by the distribution grammar: a valid name, reference
// and `ns` host, and an upstream target that parses back to the same request.
#include "routing/distribution_path.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);
    const auto parsed = acp::routing::parse_target(input);
    if (!parsed) {
        (void)acp::routing::to_string(parsed.error());
        return 0;
    }
    const auto& p = *parsed;
    if (p.kind != acp::routing::request_kind::ping && !acp::routing::is_valid_name(p.name)) {
        std::abort();
    }
    if (!p.reference.empty() && !acp::routing::is_valid_tag(p.reference) &&
        !acp::routing::is_valid_digest(p.reference)) {
        std::abort();
    }
    if (p.ns && !acp::routing::is_valid_host(*p.ns)) {
        std::abort();
    }
    const auto target = p.upstream_target();
    if (target.find_first_of("\r\n ") != std::string::npos || target.rfind("/v2/", 0) != 0) {
        std::abort();  // what goes upstream is one clean origin-form target
    }
    const auto again = acp::routing::parse_target(target);
    if (!again || again->kind != p.kind || again->name != p.name || again->reference != p.reference) {
        std::abort();
    }
    return 0;
}
