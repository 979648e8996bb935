// libFuzzer target: doctor reads containerd's config.toml, whatever is in it.
// Analysing it must never crash or throw, and every ✗ must come with a fix.
#include "proxy/doctor_checks.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);
    const auto findings =
        acp::proxy::doctor::check_containerd_config(input, "/etc/containerd/config.toml", "/etc/containerd/certs.d");
    if (findings.empty()) {
        std::abort();  // every file gets a verdict
    }
    for (const auto& f : findings) {
        if (acp::proxy::doctor::render(f).empty() || (f.status == acp::proxy::doctor::mark::fail && f.fix.empty())) {
            std::abort();
        }
    }
    return 0;
}
