#include "routing/distribution_path.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string>

using acp::routing::distribution_path;
using acp::routing::parse_target;
using acp::routing::path_error;
using acp::routing::request_kind;

namespace {

const std::string sha256_hex(64, 'a');
const std::string digest = "sha256:" + sha256_hex;

struct ok_case {
    std::string target;
    request_kind kind;
    std::string name;
    std::string reference;
    std::optional<std::string> ns;
    std::string upstream_target;
};

struct bad_case {
    std::string scenario;
    std::string target;
    path_error error;
};

}  // namespace

TEST_CASE("valid registry targets parse into kind, name, reference and ns", "[routing][path]") {
    const ok_case cases[] = {
        {"/v2/", request_kind::ping, "", "", std::nullopt, "/v2/"},
        {"/v2", request_kind::ping, "", "", std::nullopt, "/v2/"},
        {"/v2/?ns=ignored.io", request_kind::ping, "", "", std::nullopt, "/v2/"},
        {"/v2/alpine/manifests/latest", request_kind::manifest, "alpine", "latest", std::nullopt,
         "/v2/alpine/manifests/latest"},
        {"/v2/library/alpine/manifests/3.19?ns=docker.io", request_kind::manifest, "library/alpine", "3.19",
         "docker.io", "/v2/library/alpine/manifests/3.19"},
        {"/v2/a/b/c/manifests/" + digest + "?ns=reg.example%3A5000", request_kind::manifest, "a/b/c", digest,
         "reg.example:5000", "/v2/a/b/c/manifests/" + digest},
        {"/v2/x/blobs/" + digest + "?ns=REG.Example.COM", request_kind::blob, "x", digest, "reg.example.com",
         "/v2/x/blobs/" + digest},
        {"/v2/ns/repo/tags/list?ns=r.io&n=10&last=v1.2", request_kind::tags_list, "ns/repo", "", "r.io",
         "/v2/ns/repo/tags/list?n=10&last=v1.2"},
        {"/v2/ns/repo/tags/list", request_kind::tags_list, "ns/repo", "", std::nullopt, "/v2/ns/repo/tags/list"},
        {"/v2/my-app/manifests/v1?ns=[::1]:5000", request_kind::manifest, "my-app", "v1", "[::1]:5000",
         "/v2/my-app/manifests/v1"},
        {"/v2/a__b/c.d/e---f/manifests/_tag", request_kind::manifest, "a__b/c.d/e---f", "_tag", std::nullopt,
         "/v2/a__b/c.d/e---f/manifests/_tag"},
        // a repository may be called "manifests" or "blobs"
        {"/v2/manifests/manifests/blobs", request_kind::manifest, "manifests", "blobs", std::nullopt,
         "/v2/manifests/manifests/blobs"},
        {"/v2/tags/list/tags/list", request_kind::tags_list, "tags/list", "", std::nullopt, "/v2/tags/list/tags/list"},
        // unknown parameters are dropped, never forwarded
        {"/v2/x/manifests/t?ns=r.io&foo=bar&x", request_kind::manifest, "x", "t", "r.io", "/v2/x/manifests/t"},
        {"/v2/x/manifests/sha512:" + std::string(128, '0'), request_kind::manifest, "x",
         "sha512:" + std::string(128, '0'), std::nullopt, "/v2/x/manifests/sha512:" + std::string(128, '0')},
        {"/v2/x/blobs/multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", request_kind::blob, "x",
         "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", std::nullopt,
         "/v2/x/blobs/multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"},
    };
    for (const auto& c : cases) {
        INFO(c.target);
        auto r = parse_target(c.target);
        REQUIRE(r.has_value());
        CHECK(r->kind == c.kind);
        CHECK(r->name == c.name);
        CHECK(r->reference == c.reference);
        CHECK(r->ns == c.ns);
        CHECK(r->upstream_target() == c.upstream_target);
    }
}

TEST_CASE("hostile and malformed targets are refused with a precise error", "[routing][path]") {
    const std::string long_component(256, 'a');
    const std::string long_name = std::string(128, 'a') + "/" + std::string(127, 'b');  // 256 chars
    const bad_case cases[] = {
        {"not under /v2", "/v1/x/manifests/t", path_error::not_found},
        {"root", "/", path_error::not_found},
        {"catalog", "/v2/_catalog", path_error::not_found},
        {"upload endpoint", "/v2/x/blobs/uploads/", path_error::not_found},
        {"upload session", "/v2/x/blobs/uploads/1234", path_error::not_found},
        {"referrers", "/v2/x/referrers/" + digest, path_error::not_found},
        {"no name", "/v2/manifests/latest", path_error::not_found},
        {"absolute form", "http://evil.example/v2/x/manifests/t", path_error::bad_target},
        {"asterisk form", "*", path_error::bad_target},
        {"empty", "", path_error::bad_target},
        {"fragment", "/v2/x/manifests/t#frag", path_error::bad_target},
        {"NUL byte", std::string("/v2/x\0y/manifests/t", 19), path_error::bad_target},
        {"space", "/v2/x y/manifests/t", path_error::bad_target},
        {"DEL byte", "/v2/x\x7f/manifests/t", path_error::bad_target},
        {"high byte", "/v2/\xc3\xa9/manifests/t", path_error::bad_target},
        {"dot-dot component", "/v2/../etc/manifests/t", path_error::name_invalid},
        {"dot-dot inside", "/v2/a/../b/manifests/t", path_error::name_invalid},
        {"single dot component", "/v2/a/./b/manifests/t", path_error::name_invalid},
        {"encoded dot-dot", "/v2/%2e%2e/x/manifests/t", path_error::name_invalid},
        {"encoded slash", "/v2/a%2Fb/manifests/t", path_error::name_invalid},
        {"double slash", "/v2/a//b/manifests/t", path_error::name_invalid},
        {"leading double slash", "/v2//a/manifests/t", path_error::name_invalid},
        {"empty name", "/v2//manifests/t", path_error::name_invalid},
        {"upper-case name", "/v2/Alpine/manifests/t", path_error::name_invalid},
        {"name ends with separator", "/v2/a-/manifests/t", path_error::name_invalid},
        {"triple underscore", "/v2/a___b/manifests/t", path_error::name_invalid},
        {"mixed separators", "/v2/a.-b/manifests/t", path_error::name_invalid},
        {"huge component", "/v2/" + long_component + "/manifests/t", path_error::name_invalid},
        {"name over 255", "/v2/" + long_name + "/manifests/t", path_error::name_invalid},
        {"empty tag", "/v2/x/manifests/", path_error::tag_invalid},
        {"tag starting with dot", "/v2/x/manifests/.t", path_error::tag_invalid},
        {"tag of 129 chars", "/v2/x/manifests/" + std::string(129, 't'), path_error::tag_invalid},
        {"tag with percent", "/v2/x/manifests/a%2e", path_error::tag_invalid},
        {"short sha256", "/v2/x/manifests/sha256:abc", path_error::digest_invalid},
        {"upper-case sha256 hex", "/v2/x/manifests/sha256:" + std::string(64, 'A'), path_error::digest_invalid},
        {"blob by tag", "/v2/x/blobs/latest", path_error::digest_invalid},
        {"blob empty digest", "/v2/x/blobs/sha256:", path_error::digest_invalid},
        {"blob bad algorithm", "/v2/x/blobs/SHA256:" + sha256_hex, path_error::digest_invalid},
        {"repeated ns", "/v2/x/manifests/t?ns=a.io&ns=b.io", path_error::ns_invalid},
        {"ns smuggling a parameter", "/v2/x/manifests/t?ns=a.io%26ns%3Db.io", path_error::ns_invalid},
        {"ns with path", "/v2/x/manifests/t?ns=a.io%2Fx", path_error::ns_invalid},
        {"ns with userinfo", "/v2/x/manifests/t?ns=user%40a.io", path_error::ns_invalid},
        {"ns encoded NUL", "/v2/x/manifests/t?ns=a.io%00", path_error::ns_invalid},
        {"ns CRLF injection", "/v2/x/manifests/t?ns=a.io%0d%0aHost:%20evil", path_error::ns_invalid},
        {"ns truncated escape", "/v2/x/manifests/t?ns=a.io%2", path_error::ns_invalid},
        {"ns bad escape", "/v2/x/manifests/t?ns=a.io%zz", path_error::ns_invalid},
        {"ns empty", "/v2/x/manifests/t?ns=", path_error::ns_invalid},
        {"ns port out of range", "/v2/x/manifests/t?ns=a.io:70000", path_error::ns_invalid},
        {"tags n not a number", "/v2/x/tags/list?n=ten", path_error::query_invalid},
        {"tags last injection", "/v2/x/tags/list?last=a%26n%3D1", path_error::query_invalid},
        {"tags repeated n", "/v2/x/tags/list?n=1&n=2", path_error::query_invalid},
    };
    for (const auto& c : cases) {
        INFO(c.scenario << ": " << c.target);
        auto r = parse_target(c.target);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error() == c.error);
    }
}

TEST_CASE("name grammar follows the distribution spec", "[routing][path]") {
    using acp::routing::is_valid_name;
    CHECK(is_valid_name("a"));
    CHECK(is_valid_name("a/b/c"));
    CHECK(is_valid_name("a_b.c-d__e---f"));
    CHECK(is_valid_name(std::string(255, 'a')));
    CHECK_FALSE(is_valid_name(std::string(256, 'a')));
    CHECK_FALSE(is_valid_name("/a"));
    CHECK_FALSE(is_valid_name("a/"));
    CHECK_FALSE(is_valid_name("_a"));
    CHECK_FALSE(is_valid_name("a..b"));
    CHECK_FALSE(is_valid_name("a b"));
}

TEST_CASE("host grammar accepts names, ports and bracketed IPv6 only", "[routing][path]") {
    using acp::routing::is_valid_host;
    CHECK(is_valid_host("registry.example.com"));
    CHECK(is_valid_host("Registry.Example.com:5000"));
    CHECK(is_valid_host("127.0.0.1:5000"));
    CHECK(is_valid_host("[::1]"));
    CHECK(is_valid_host("[::1]:5000"));
    CHECK_FALSE(is_valid_host(""));
    CHECK_FALSE(is_valid_host("a..b"));
    CHECK_FALSE(is_valid_host("-a.io"));
    CHECK_FALSE(is_valid_host("a.io:"));
    CHECK_FALSE(is_valid_host("a.io:0"));
    CHECK_FALSE(is_valid_host("::1"));
    CHECK_FALSE(is_valid_host("[::1"));
    CHECK_FALSE(is_valid_host("[zz::1]"));
    CHECK_FALSE(is_valid_host("a.io/x"));
    CHECK_FALSE(is_valid_host("a_b.io"));
}
