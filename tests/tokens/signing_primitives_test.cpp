#include "tokens/signing_primitives.hpp"

#include <catch2/catch.hpp>

using namespace acp::tokens;

TEST_CASE("percent_encode follows RFC 3986 as the Alibaba SDKs do", "[alibaba][signing]") {
    struct row {
        const char* in;
        const char* out;
    };
    const row rows[] = {
        {"", ""},
        {"AZaz09-_.~", "AZaz09-_.~"},
        {" ", "%20"},  // not '+'
        {"*", "%2A"},
        {"+", "%2B"},
        {"/", "%2F"},
        {":", "%3A"},
        {"=&", "%3D%26"},
        {"%", "%25"},
        {"\xc3\xa9", "%C3%A9"},  // upper-case hex
        {"\x7f", "%7F"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.in);
        CHECK(percent_encode(r.in) == r.out);
        CHECK(percent_decode(r.out) == std::optional<std::string>(r.in));
    }
    CHECK_FALSE(percent_decode("%2"));
    CHECK_FALSE(percent_decode("%zz"));
}

TEST_CASE("digests and encodings match published test vectors", "[alibaba][signing]") {
    // FIPS 180-2 "abc"; RFC 4231 test case 2; RFC 2202 test case 2; RFC 4648 §10.
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hex_lower(hmac_sha256("Jefe", "what do ya want for nothing?")) ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    CHECK(hex_lower(hmac_sha1("Jefe", "what do ya want for nothing?")) == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    CHECK(to_base64("") == "");
    CHECK(to_base64("f") == "Zg==");
    CHECK(to_base64("fo") == "Zm8=");
    CHECK(to_base64("foobar") == "Zm9vYmFy");
}

TEST_CASE("ISO 8601 UTC timestamps round-trip", "[alibaba][signing]") {
    const auto t = parse_iso8601_utc("2024-02-29T23:59:58Z");
    REQUIRE(t);
    CHECK(to_epoch_ms(*t) == 1709251198000);
    CHECK(iso8601_utc(*t) == "2024-02-29T23:59:58Z");
    CHECK(parse_iso8601_utc("1970-01-01T00:00:00Z") == time_point{});
    CHECK(parse_iso8601_utc("2024-02-29T23:59:58.123Z") == t);
    CHECK_FALSE(parse_iso8601_utc("2024-02-29 23:59:58Z"));
    CHECK_FALSE(parse_iso8601_utc("2024-02-29T23:59:58"));
    CHECK_FALSE(parse_iso8601_utc("2024-13-01T00:00:00Z"));
    CHECK(random_nonce().size() == 32);
    CHECK(random_nonce() != random_nonce());
}
