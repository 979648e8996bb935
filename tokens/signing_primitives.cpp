#include "tokens/signing_primitives.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <ctime>
#include <stdexcept>

namespace acp::tokens {

namespace {

constexpr std::string_view hex_digits_upper = "0123456789ABCDEF";
constexpr std::string_view hex_digits_lower = "0123456789abcdef";

bool is_unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

int hex_value(char c) {
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
}

const unsigned char* bytes_of(std::string_view s) {
    return reinterpret_cast<const unsigned char*>(s.data());
}

std::string digest(const EVP_MD* md, std::string_view data) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) {
        throw std::runtime_error("EVP_Digest failed");
    }
    return {reinterpret_cast<const char*>(out.data()), len};
}

std::string hmac(const EVP_MD* md, std::string_view key, std::string_view data) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
    unsigned int len = 0;
    if (HMAC(md, key.data(), static_cast<int>(key.size()), bytes_of(data), data.size(), out.data(), &len) == nullptr) {
        throw std::runtime_error("HMAC failed");
    }
    return {reinterpret_cast<const char*>(out.data()), len};
}

// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2 ? 1 : 0;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? static_cast<unsigned>(-3) : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool parse_digits(std::string_view s, std::size_t pos, std::size_t n, unsigned& out) {
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (i >= s.size() || s[i] < '0' || s[i] > '9') {
            return false;
        }
        out = out * 10 + static_cast<unsigned>(s[i] - '0');
    }
    return true;
}

}  // namespace

std::string percent_encode(std::string_view in) {
    std::string out;
    out.reserve(in.size() * 3);
    for (const char ch : in) {
        const auto c = static_cast<unsigned char>(ch);
        if (is_unreserved(c)) {
            out.push_back(ch);
        } else {
            out.push_back('%');
            out.push_back(hex_digits_upper[c >> 4]);
            out.push_back(hex_digits_upper[c & 0x0f]);
        }
    }
    return out;
}

std::optional<std::string> percent_decode(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out.push_back(in[i]);
            continue;
        }
        if (i + 2 >= in.size()) {
            return std::nullopt;
        }
        const int hi = hex_value(in[i + 1]);
        const int lo = hex_value(in[i + 2]);
        if (hi < 0 || lo < 0) {
            return std::nullopt;
        }
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return out;
}

std::string percent_decode_lenient(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '%' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 && hex_value(in[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2])));
            i += 2;
        } else {
            out.push_back(in[i]);
        }
    }
    return out;
}

std::string hex_lower(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        out.push_back(hex_digits_lower[c >> 4]);
        out.push_back(hex_digits_lower[c & 0x0f]);
    }
    return out;
}

std::string to_base64(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    const int n =
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes_of(bytes), static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string sha256(std::string_view data) {
    return digest(EVP_sha256(), data);
}
std::string sha256_hex(std::string_view data) {
    return hex_lower(sha256(data));
}
std::string hmac_sha256(std::string_view key, std::string_view data) {
    return hmac(EVP_sha256(), key, data);
}
std::string hmac_sha1(std::string_view key, std::string_view data) {
    return hmac(EVP_sha1(), key, data);
}

std::string random_nonce() {
    std::array<unsigned char, 16> raw{};
    if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
        throw std::runtime_error("RAND_bytes failed");
    }
    return hex_lower({reinterpret_cast<const char*>(raw.data()), raw.size()});
}

std::string iso8601_utc(time_point t) {
    const std::time_t secs = wall_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::array<char, 32> buf{};
    const auto n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return {buf.data(), n};
}

std::optional<time_point> parse_iso8601_utc(std::string_view s) {
    // Exactly YYYY-MM-DDTHH:MM:SSZ; a fractional part before Z is tolerated.
    unsigned year = 0;
    unsigned mon = 0;
    unsigned day = 0;
    unsigned hh = 0;
    unsigned mm = 0;
    unsigned ss = 0;
    if (s.size() < 20 || !parse_digits(s, 0, 4, year) || s[4] != '-' || !parse_digits(s, 5, 2, mon) || s[7] != '-' ||
        !parse_digits(s, 8, 2, day) || s[10] != 'T' || !parse_digits(s, 11, 2, hh) || s[13] != ':' ||
        !parse_digits(s, 14, 2, mm) || s[16] != ':' || !parse_digits(s, 17, 2, ss)) {
        return std::nullopt;
    }
    std::size_t pos = 19;
    if (s[pos] == '.') {
        ++pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            ++pos;
        }
    }
    if (pos + 1 != s.size() || s[pos] != 'Z') {
        return std::nullopt;
    }
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) {
        return std::nullopt;
    }
    const std::int64_t days = days_from_civil(year, mon, day);
    const std::int64_t secs = days * 86400 + std::int64_t{hh} * 3600 + std::int64_t{mm} * 60 + std::int64_t{ss};
    // Past what the clock holds (nanoseconds: 1677-2262) the conversion would overflow.
    constexpr auto max_secs = std::chrono::duration_cast<std::chrono::seconds>(wall_clock::duration::max()).count();
    constexpr auto min_secs = std::chrono::duration_cast<std::chrono::seconds>(wall_clock::duration::min()).count();
    if (secs >= max_secs || secs <= min_secs) {
        return std::nullopt;
    }
    return time_point(std::chrono::duration_cast<wall_clock::duration>(std::chrono::seconds(secs)));
}

}  // namespace acp::tokens
