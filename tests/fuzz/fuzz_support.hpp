// Shared checks of the libFuzzer targets in tests/fuzz/ (header-only): a
// failed invariant aborts, which libFuzzer and fuzz_smoke_main.cpp report as
// a crash with the input that caused it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace acp::fuzz {

inline void require(bool ok) {
    if (!ok) {
        std::abort();
    }
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

/// A byte below 0x20 or DEL: would break a log line or a header apart.
inline bool has_control(std::string_view s) {
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            return true;
        }
    }
    return false;
}

/// `s` with %XX escapes decoded (either case); malformed escapes kept as they are.
inline std::string percent_decoded(std::string_view s) {
    const auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
            return c - 'a' + 10;
        }
        if (c >= 'A' && c <= 'F') {
            return c - 'A' + 10;
        }
        return -1;
    };
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

/// Whether `text` shows `secret`, as is or percent-encoded in any case.
inline bool reveals(std::string_view text, std::string_view secret) {
    return text.find(secret) != std::string_view::npos || percent_decoded(text).find(secret) != std::string::npos;
}

/// The secrets the Alibaba targets hand to the parsers as "what the caller
/// signed with": error text must never show them, however the server echoes them.
inline constexpr std::string_view fuzz_ak_secret = "FuzzAkSecret0123456789abcdefXYZ";
inline constexpr std::string_view fuzz_sts_token = "CAISFuzzStsToken+/=0123456789abcdef";
inline const std::vector<std::string_view>& fuzz_secrets() {
    static const std::vector<std::string_view> s{fuzz_ak_secret, fuzz_sts_token};
    return s;
}

}  // namespace acp::fuzz
