// libFuzzer target: our YAML config (`--config FILE`), the whole load from
// bytes (parse, per-value checks, cross-section validation) with an
// environment whose files and variables hold secrets. Any input either loads
// or throws config_error (nothing else escapes); no error, warning or
// rendering shows a secret; an accepted config round-trips through render().
#include "tests/fuzz/config_fuzz_support.hpp"

#include <cstdint>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto input = acp::fuzz::as_text(data, size);
    try {
        const auto r = acp::config::load_yaml(input, "fuzz.yaml", acp::fuzz::config_env());
        acp::fuzz::check_accepted(r, input);
    } catch (const acp::config::config_error& e) {
        acp::fuzz::check_rejected(e, input);
    }
    return 0;
}
