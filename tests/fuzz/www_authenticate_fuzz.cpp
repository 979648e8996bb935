// libFuzzer target: WWW-Authenticate parsing must never crash, and whatever
// it accepts must survive a render → parse round trip unchanged.
#include "tokens/bearer_challenge.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

std::string quote(const std::string& v) {
    std::string out = "\"";
    for (const char c : v) {
        if (c == '"' || c == '\\') {
            out.push_back('\\');
        }
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

std::string render(const std::vector<acp::tokens::challenge>& chs) {
    std::string out;
    for (const auto& ch : chs) {
        if (!out.empty()) {
            out += ", ";
        }
        out += ch.scheme;
        if (!ch.token68.empty()) {
            out += " " + ch.token68;
        }
        bool first = true;
        for (const auto& [k, v] : ch.params) {
            out += first ? " " : ",";
            out += k + "=" + quote(v);
            first = false;
        }
    }
    return out;
}

}  // namespace

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);
    const auto parsed = acp::tokens::parse_challenges(input);
    if (!parsed) {
        return 0;
    }
    (void)acp::tokens::find_bearer(*parsed);
    const auto rendered = render(*parsed);
    if (rendered.size() > acp::tokens::max_challenge_header_bytes) {
        return 0;  // quoting can grow an accepted value past the bound
    }
    const auto again = acp::tokens::parse_challenges(rendered);
    if (!again || *again != *parsed) {
        std::abort();
    }
    return 0;
}
