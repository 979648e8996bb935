#include "config/values.hpp"

#include "config/loader.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <string_view>

using namespace std::chrono_literals;
using acp::config::duration;

TEST_CASE("Go-style durations parse to milliseconds", "[config][values]") {
    struct row {
        std::string_view text;
        duration want;
    };
    const auto r = GENERATE(values<row>({
        {"15m", 15min},
        {"1h30m", 90min},
        {"90s", 90s},
        {"250ms", 250ms},
        {"1.5s", 1500ms},
        {".5s", 500ms},
        {"5.s", 5s},
        {"0", 0ms},
        {"0s", 0ms},
        {"+10s", 10s},
        {"-1h", -1h},
        {"1h0m0s", 1h},
        {"2h45m30.5s", 2h + 45min + 30500ms},
        {"1000us", 1ms},
        {"1000\xC2\xB5s", 1ms},
        {"1000000ns", 1ms},
        {"0.25h", 15min},
        {"1m1ms", 60001ms},
        {"12h", 12h},
    }));
    CAPTURE(r.text);
    const auto got = acp::config::parse_duration(r.text);
    REQUIRE(got);
    CHECK(got->count() == r.want.count());
}

TEST_CASE("malformed durations are rejected", "[config][values]") {
    const auto text =
        GENERATE(as<std::string_view>{}, "", "15", "m", "1.5.5s", "1x", "1 h", "1h ", " 1h", "0.5ms", "1ns",
                 "99999999999999999999h", "9999999999999h", "+", "-", "1s2", "1hh", ".s", "1H", "15min", "1d");
    CAPTURE(text);
    CHECK_FALSE(acp::config::parse_duration(text));
}

TEST_CASE("durations format in the shortest Go form and parse back", "[config][values]") {
    struct row {
        duration d;
        std::string_view want;
    };
    const auto r = GENERATE(values<row>({
        {0ms, "0s"},
        {250ms, "250ms"},
        {1500ms, "1.5s"},
        {90s, "1m30s"},
        {90min, "1h30m"},
        {1h + 500ms, "1h0.5s"},
        {25h, "25h"},
        {-15min, "-15m"},
        {1h + 1min + 1s + 1ms, "1h1m1.001s"},
        {10ms, "10ms"},
    }));
    CHECK(acp::config::format_duration(r.d) == r.want);
    const auto back = acp::config::parse_duration(acp::config::format_duration(r.d));
    REQUIRE(back);
    CHECK(back->count() == r.d.count());
}

TEST_CASE("listen addresses need an IP literal and a port", "[config][values]") {
    struct row {
        std::string_view text;
        std::string_view host;
        std::uint16_t port;
    };
    const auto r = GENERATE(values<row>({
        {"127.0.0.1:5005", "127.0.0.1", 5005},
        {"[::1]:5005", "::1", 5005},
        {"0.0.0.0:0", "0.0.0.0", 0},
        {"[::]:65535", "::", 65535},
        {"[FE80::1]:80", "fe80::1", 80},
        {"10.1.2.3:00080", "10.1.2.3", 80},
    }));
    const auto got = acp::config::parse_listen_address(r.text);
    REQUIRE(got);
    CHECK(got->host == r.host);
    CHECK(got->port == r.port);
}

TEST_CASE("malformed listen addresses are rejected", "[config][values]") {
    const auto text =
        GENERATE(as<std::string_view>{}, "localhost:5005", "127.0.0.1", ":5005", "127.0.0.1:", "127.0.0.1:65536",
                 "::1:5005", "[::1]5005", "[::1", "127.0.0.1:50a", "1.2.3:5", "127.0.0.1:+5", "[127.0.0.1]:5", "",
                 "http://127.0.0.1:5005", "127.0.0.1:5005 ");
    CAPTURE(text);
    CHECK_FALSE(acp::config::parse_listen_address(text));
}

TEST_CASE("endpoint URLs parse with default ports", "[config][values]") {
    struct row {
        std::string_view text;
        acp::config::endpoint_url want;
    };
    const auto r = GENERATE(values<row>({
        {"https://sts.aliyuncs.com", {"https", "sts.aliyuncs.com", 443, ""}},
        {"http://100.100.100.200", {"http", "100.100.100.200", 80, ""}},
        {"https://10.0.0.7:8443/v2", {"https", "10.0.0.7", 8443, "/v2"}},
        {"HTTPS://Example.COM/", {"https", "example.com", 443, ""}},
        {"http://[::1]:5000", {"http", "::1", 5000, ""}},
        {"https://cr.cn-hangzhou.aliyuncs.com/a/b", {"https", "cr.cn-hangzhou.aliyuncs.com", 443, "/a/b"}},
    }));
    CAPTURE(r.text);
    const auto got = acp::config::parse_endpoint_url(r.text);
    REQUIRE(got);
    CHECK(*got == r.want);
}

TEST_CASE("malformed endpoint URLs are rejected", "[config][values]") {
    const auto text = GENERATE(as<std::string_view>{}, "sts.aliyuncs.com", "ftp://x.example.com", "https://",
                               "https://user:pw@x.com", "https://x.com:0", "https://x.com:99999", "https://x.com?a=b",
                               "https://x .com", "https://[::1", "https://exa_mple.com", "https://x.com#f", "//x.com",
                               "https://-x.com", "https://x.com:", "https://1.2.3.999");
    CAPTURE(text);
    CHECK_FALSE(acp::config::parse_endpoint_url(text));
}

TEST_CASE("registry hosts are lower-cased DNS names or IP literals with an optional port", "[config][values]") {
    CHECK(acp::config::normalize_host("Registry.Example.COM") == "registry.example.com");
    CHECK(acp::config::normalize_host("registry.example.com:05000") == "registry.example.com:5000");
    CHECK(acp::config::normalize_host("10.0.0.5:5000") == "10.0.0.5:5000");
    CHECK(acp::config::normalize_host("[::1]:5000") == "[::1]:5000");
    CHECK(acp::config::normalize_host("localhost") == "localhost");
    for (auto bad : {"", "https://x.com", "x.com/path", "x_y.com", "-x.com", "x..com", "x.com:0", "x.com:70000", "::1",
                     "a b.com", "x.com.", "1.2.3.999"}) {
        CAPTURE(bad);
        CHECK_FALSE(acp::config::normalize_host(bad));
    }
}

TEST_CASE("realm host patterns are exact hosts or *.suffix with two labels", "[config][values]") {
    CHECK(acp::config::is_host_pattern("*.aliyuncs.com"));
    CHECK(acp::config::is_host_pattern("auth.example.com"));
    CHECK_FALSE(acp::config::is_host_pattern("*"));
    CHECK_FALSE(acp::config::is_host_pattern("*.com"));
    CHECK_FALSE(acp::config::is_host_pattern("*aliyuncs.com"));
    CHECK_FALSE(acp::config::is_host_pattern("a.*.com"));
    CHECK(acp::config::host_matches("*.aliyuncs.com", "dockerauth.cn-hangzhou.aliyuncs.com"));
    CHECK_FALSE(acp::config::host_matches("*.aliyuncs.com", "aliyuncs.com"));
    CHECK_FALSE(acp::config::host_matches("*.aliyuncs.com", "evil-aliyuncs.com"));
    CHECK(acp::config::host_matches("auth.example.com", "auth.example.com"));
}

TEST_CASE("loopback and wildcard addresses are recognised", "[config][values]") {
    CHECK(acp::config::is_loopback_ip("127.0.0.1"));
    CHECK(acp::config::is_loopback_ip("127.8.9.10"));
    CHECK(acp::config::is_loopback_ip("::1"));
    CHECK(acp::config::is_loopback_ip("::ffff:127.0.0.1"));
    CHECK_FALSE(acp::config::is_loopback_ip("10.0.0.1"));
    CHECK_FALSE(acp::config::is_loopback_ip("::"));
    CHECK(acp::config::is_wildcard_ip("0.0.0.0"));
    CHECK(acp::config::is_wildcard_ip("::"));
    CHECK_FALSE(acp::config::is_wildcard_ip("127.0.0.1"));
}

TEST_CASE("the closest known key ignores case, dashes and underscores", "[config][values]") {
    constexpr std::array<std::string_view, 4> known{"listen", "adminListen", "expiringThreshold", "followRedirects"};
    CHECK(acp::config::closest_key("listn", known) == "listen");
    CHECK(acp::config::closest_key("expiring-threshold", known) == "expiringThreshold");
    CHECK(acp::config::closest_key("admin_listen", known) == "adminListen");
    CHECK(acp::config::closest_key("followRedirect", known) == "followRedirects");
    CHECK(acp::config::key_distance("abc", "abc") == 0);
    CHECK(acp::config::key_distance("kitten", "sitting") == 3);
}

TEST_CASE("quoted values escape control characters and stay short", "[config][values]") {
    CHECK(acp::config::quote("a\"b\n") == "\"a\\\"b\\n\"");
    CHECK(acp::config::quote(std::string(200, 'x')).size() < 100);
}
