#include "proxy/redirect_policy.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string>

using namespace acp::proxy;

TEST_CASE("Location values resolve against the answering URL", "[proxy][redirect]") {
    const http_url base{"https", "registry.example", 443, "/v2/app/blobs/sha256:aa?x=1"};
    struct row {
        const char* location;
        std::optional<std::string> expected;
    };
    const row table[] = {
        {"https://oss.example/b/data?Signature=s", "https://oss.example/b/data?Signature=s"},
        {"HTTP://OSS.Example:8080/d", "http://oss.example:8080/d"},
        {"http://oss.example:80/d", "http://oss.example/d"},
        {"//cdn.example/p", "https://cdn.example/p"},
        {"/v2/other", "https://registry.example/v2/other"},
        {"data?x=2", "https://registry.example/v2/app/blobs/data?x=2"},
        {"https://oss.example/d#frag", "https://oss.example/d"},
        {"https://[::1]:8443/d", "https://[::1]:8443/d"},
        {"https://oss.example", "https://oss.example/"},
        {"ftp://oss.example/d", std::nullopt},
        {"file:///etc/passwd", std::nullopt},
        {"javascript:alert(1)", std::nullopt},
        {"https://user:pw@oss.example/d", std::nullopt},
        {"https://oss.example:0/d", std::nullopt},
        {"https://oss.example/a b", std::nullopt},
        {"https://oss.example/\r\nX: y", std::nullopt},
        {"", std::nullopt},
    };
    for (const auto& r : table) {
        INFO(r.location);
        const auto got = resolve_location(base, r.location);
        if (!r.expected) {
            CHECK_FALSE(got.has_value());
        } else {
            REQUIRE(got.has_value());
            CHECK(got->str() == *r.expected);
        }
    }
}

TEST_CASE("origins differ by scheme, host or port", "[proxy][redirect]") {
    const http_url a{"https", "r.example", 443, "/x"};
    CHECK(same_origin(a, http_url{"https", "r.example", 443, "/y"}));
    CHECK_FALSE(same_origin(a, http_url{"http", "r.example", 443, "/x"}));
    CHECK_FALSE(same_origin(a, http_url{"https", "r.example", 8443, "/x"}));
    CHECK_FALSE(same_origin(a, http_url{"https", "oss.example", 443, "/x"}));
}

TEST_CASE("only 301, 302, 303, 307 and 308 are followed", "[proxy][redirect]") {
    for (unsigned s : {301u, 302u, 303u, 307u, 308u}) {
        CHECK(is_redirect_status(s));
    }
    for (unsigned s : {200u, 300u, 304u, 305u, 306u, 401u}) {
        CHECK_FALSE(is_redirect_status(s));
    }
}

TEST_CASE("followed redirects never reach internal addresses", "[proxy][redirect]") {
    struct row {
        const char* address;
        bool allow_loopback;
        bool refused;
    };
    const row rows[] = {
        {"100.100.100.200", false, true},  // Alibaba Cloud metadata
        {"100.100.100.200", true, true},
        {"::ffff:100.100.100.200", false, true},
        {"169.254.169.254", false, true},
        {"169.254.0.1", true, true},
        {"fe80::1", false, true},
        {"0.0.0.0", false, true},
        {"0.1.2.3", true, true},
        {"::", false, true},
        {"224.0.0.1", false, true},
        {"255.255.255.255", false, true},
        {"ff02::1", false, true},
        {"127.0.0.1", false, true},
        {"127.1.2.3", false, true},
        {"::1", false, true},
        {"::ffff:127.0.0.1", false, true},
        {"127.0.0.1", true, false},  // a registry on loopback may redirect to loopback
        {"::1", true, false},
        {"100.100.100.199", false, false},
        {"100.118.28.1", false, false},  // OSS internal endpoints live in 100.64/10
        {"10.0.0.7", false, false},      // VPC addresses
        {"47.96.1.2", false, false},
        {"2001:db8::1", false, false},
    };
    for (const auto& r : rows) {
        CAPTURE(r.address, r.allow_loopback);
        const auto why = forbidden_redirect_address(boost::asio::ip::make_address(r.address), r.allow_loopback);
        CHECK(why.has_value() == r.refused);
    }
}

TEST_CASE("loopback hosts are localhost and loopback literals", "[proxy][redirect]") {
    CHECK(is_loopback_host("localhost"));
    CHECK(is_loopback_host("127.0.0.1"));
    CHECK(is_loopback_host("127.9.9.9"));
    CHECK(is_loopback_host("::1"));
    CHECK_FALSE(is_loopback_host("192.0.2.10"));
    CHECK_FALSE(is_loopback_host("localhost.example"));
    CHECK_FALSE(is_loopback_host("registry.example"));
}
