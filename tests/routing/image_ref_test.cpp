#include "routing/image_ref.hpp"

#include "routing/distribution_path.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string>

using acp::routing::parse_image_reference;
using acp::routing::parse_target;

namespace {

const std::string digest = "sha256:" + std::string(64, 'e');

struct norm_case {
    std::string image;  // as a pod spec writes it
    std::string host;   // what containerd sends as ?ns=
    std::string repository;
    std::string reference;  // tag or digest containerd asks the manifest for
};

}  // namespace

TEST_CASE("pod images normalise to the (ns, repository) containerd asks the mirror for", "[routing][image_ref]") {
    const norm_case cases[] = {
        {"nginx", "docker.io", "library/nginx", "latest"},
        {"nginx:1.25", "docker.io", "library/nginx", "1.25"},
        {"bitnami/redis", "docker.io", "bitnami/redis", "latest"},
        {"docker.io/nginx", "docker.io", "library/nginx", "latest"},
        {"docker.io/library/nginx:1", "docker.io", "library/nginx", "1"},
        {"index.docker.io/bitnami/redis:7", "docker.io", "bitnami/redis", "7"},
        {"nginx@" + digest, "docker.io", "library/nginx", digest},
        {"nginx:1.25@" + digest, "docker.io", "library/nginx", digest},
        {"registry.cn-hangzhou.aliyuncs.com/acs/pause:3.9", "registry.cn-hangzhou.aliyuncs.com", "acs/pause", "3.9"},
        {"Example-Registry.CN-Hangzhou.cr.aliyuncs.com/team/app:v1", "example-registry.cn-hangzhou.cr.aliyuncs.com",
         "team/app", "v1"},
        {"reg.example:5000/a/b/c", "reg.example:5000", "a/b/c", "latest"},
        {"localhost/app", "localhost", "app", "latest"},
        {"localhost:5000/app:dev", "localhost:5000", "app", "dev"},
        {"10.0.0.7:5000/app", "10.0.0.7:5000", "app", "latest"},
        {"[fd00::7]:5000/app:v2", "[fd00::7]:5000", "app", "v2"},
        {"reg.example/team/app@" + digest, "reg.example", "team/app", digest},
    };
    for (const auto& c : cases) {
        SECTION(c.image) {
            const auto got = parse_image_reference(c.image);
            INFO(got.error);
            REQUIRE(got.ref);
            CHECK(got.ref->host == c.host);
            CHECK(got.ref->repository == c.repository);
            CHECK(got.ref->reference() == c.reference);

            // The request containerd then sends to the mirror parses back to the same pair.
            const auto target = "/v2/" + c.repository + "/manifests/" + c.reference + "?ns=" + c.host;
            const auto path = parse_target(target);
            REQUIRE(path.has_value());
            CHECK(path->name == got.ref->repository);
            CHECK(path->ns == std::optional<std::string>(got.ref->host));
        }
    }
}

TEST_CASE("things that are not image references are refused with the reason", "[routing][image_ref]") {
    const struct {
        std::string scenario;
        std::string image;
        std::string phrase;
    } cases[] = {
        {"empty", "", "empty"},
        {"upper-case repository", "reg.example/Team/app", "lower-case"},
        {"a host only by its capitals (no normal form: lower-cased it reads as a Hub namespace)", "UPPER/app",
         "capital letters"},
        {"the same with a digit (found by the image_reference fuzz target)",
         "F1caost7/a/b@sha256:" + std::string(64, 'a'), "capital letters"},
        {"a scheme", "https://reg.example/app", "scheme"},
        {"a newline", "reg.example/app\nX-Evil: 1", "control"},
        {"a bad digest", "app@sha256:beef", "digest"},
        {"an image ID", std::string(64, 'a'), "image ID"},
        {"a long name", "reg.example/" + std::string(260, 'a'), "255"},
    };
    for (const auto& c : cases) {
        SECTION(c.scenario) {
            const auto got = parse_image_reference(c.image);
            CHECK_FALSE(got.ref);
            CHECK_THAT(got.error, Catch::Contains(c.phrase));
            CHECK(got.error.find('\n') == std::string::npos);
            CHECK(got.error.size() < 400);
        }
    }
}
