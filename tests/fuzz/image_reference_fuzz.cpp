// libFuzzer target: `doctor --image REF` parses what the operator typed.
// Never a crash; an accepted reference renders to a string that parses back
// to the same reference; a refused one says why.
#include "proxy/doctor_checks.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);
    const auto r = acp::proxy::doctor::parse_image_reference(input);
    if (!r.ref) {
        if (r.error.empty()) {
            std::abort();
        }
        return 0;
    }
    if (r.ref->host.empty() || r.ref->reference().empty()) {
        std::abort();
    }
    const auto again = acp::proxy::doctor::parse_image_reference(r.ref->str());
    if (!again.ref || !(*again.ref == *r.ref)) {
        std::abort();
    }
    return 0;
}
