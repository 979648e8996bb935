#include "proxy/doctor_checks.hpp"

#include "hosts/hosts_toml.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

using acp::proxy::doctor::check_containerd_config;
using acp::proxy::doctor::check_hosts_toml;
using acp::proxy::doctor::compare_domains;
using acp::proxy::doctor::finding;
using acp::proxy::doctor::fix_for_api_error;
using acp::proxy::doctor::image_reference;
using acp::proxy::doctor::mark;
using acp::proxy::doctor::parse_image_reference;
using acp::proxy::doctor::render;

namespace {

constexpr const char* certs = "/etc/containerd/certs.d";
constexpr const char* path = "/etc/containerd/config.toml";
const std::string hex64(64, 'a');

std::string marks(const std::vector<finding>& fs) {
    std::string out;
    for (const auto& f : fs) {
        out += f.status == mark::pass ? 'P' : (f.status == mark::fail ? 'F' : 'W');
    }
    return out;
}

std::string all_text(const std::vector<finding>& fs) {
    std::string out;
    for (const auto& f : fs) {
        out += f.text + "\n" + f.fix + "\n";
    }
    return out;
}

struct containerd_case {
    std::string scenario;
    std::optional<std::string> text;  // nullopt: no file
    std::string certs_dir;
    std::string want_marks;                 // one letter per finding: P pass, F fail, W warn
    std::vector<std::string> want_phrases;  // each must appear in some finding's text or fix
};

const std::string v2_head = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n";
const std::string v3_head = "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n";

}  // namespace

TEST_CASE("containerd config: config_path for the 1.x and 2.x layouts, mirrors and the transfer-service pitfall",
          "[proxy][doctor]") {
    const containerd_case cases[] = {
        {"no config file: defaults, a warning",
         std::nullopt,
         certs,
         "W",
         {"does not exist", "/etc/containerd/certs.d:/etc/docker/certs.d", "version = 3", "version = 2"}},
        {"v2 with config_path = the certs dir",
         v2_head + "config_path = \"/etc/containerd/certs.d\"\n",
         certs,
         "P",
         {"version 2, containerd 1.x", "includes /etc/containerd/certs.d"}},
        {"v2 with a trailing slash names the same directory",
         v2_head + "config_path = \"/etc/containerd/certs.d/\"\n",
         certs,
         "P",
         {}},
        {"v2 without config_path",
         "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"x\"\n",
         certs,
         "F",
         {"config_path is not set",
          "add config_path = \"/etc/containerd/certs.d\" under "
          "[plugins.\"io.containerd.grpc.v1.cri\".registry]",
          "restart containerd"}},
        {"v2 without any plugins table", "version = 2\n", certs, "F", {"config_path is not set"}},
        {"v2 config_path elsewhere",
         v2_head + "config_path = \"/etc/docker/certs.d\"\n",
         certs,
         "F",
         {"does not include /etc/containerd/certs.d", "--certs-dir /etc/docker/certs.d"}},
        {"v2 empty config_path", v2_head + "config_path = \"\"\n", certs, "F", {"config_path = \"\""}},
        {"v2 colon list: fine on 1.x, warning for 2.x",
         v2_head + "config_path = \"/etc/containerd/certs.d:/etc/docker/certs.d\"\n",
         certs,
         "PW",
         {"transfer service", "before upgrading"}},
        {"v2 mirrors beside config_path",
         v2_head + "config_path = \"/etc/containerd/certs.d\"\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors"
                   ".\"docker.io\"]\nendpoint = [\"https://mirror.example\"]\n",
         certs,
         "PF",
         {"refuses this combination", "move each mirror"}},
        {"v2 mirrors without config_path",
         "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\nendpoint = "
         "[\"https://m.example\"]\n",
         certs,
         "F",
         {"config_path is not set", "mirrors] entry into a hosts.toml"}},
        {"v2 file with the config_path in the version 3 table",
         "version = 2\n[plugins.\"io.containerd.cri.v1.images\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n",
         certs,
         "F",
         {"is not read by a version 2 file"}},
        {"v2 deprecated configs and auths",
         v2_head + "config_path = \"/etc/containerd/certs.d\"\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs."
                   "\"r.example\".tls]\ninsecure_skip_verify = true\n[plugins.\"io.containerd.grpc.v1.cri\".registry."
                   "auths.\"r.example\"]\nusername = \"u\"\n",
         certs,
         "PW",
         {"registry.configs and registry.auths", "deprecated"}},
        {"v3 with config_path = the certs dir",
         v3_head + "config_path = \"/etc/containerd/certs.d\"\n",
         certs,
         "P",
         {"version 3, containerd 2.x"}},
        {"v3 colon list with the transfer service",
         v3_head + "config_path = \"/etc/containerd/certs.d:/x\"\n",
         certs,
         "F",
         {"colon-separated list", "containerd#12415", "use_local_image_pull = true under"}},
        {"v3 colon list with use_local_image_pull",
         "version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\nuse_local_image_pull = true\n"
         "[plugins.\"io.containerd.cri.v1.images\".registry]\nconfig_path = \"/etc/containerd/certs.d:/x\"\n",
         certs,
         "P",
         {"use_local_image_pull = true splits the list"}},
        {"v3 without config_path: the 2.x default is a colon list, broken by the transfer service",
         "version = 3\n",
         certs,
         "F",
         {"containerd 2.x's default", "transfer service"}},
        {"v3 without config_path, local pulls: the default works",
         "version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\nuse_local_image_pull = true\n",
         certs,
         "P",
         {"containerd 2.x's default"}},
        {"v3 without config_path and a certs dir outside the default",
         "version = 3\n",
         "/srv/certs.d",
         "F",
         {"does not include /srv/certs.d"}},
        {"v3 with mirrors: no default, config_path not set",
         "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry.mirrors.\"docker.io\"]\nendpoint = "
         "[\"https://m.example\"]\n",
         certs,
         "F",
         {"config_path is not set"}},
        {"v3 file with the config_path in the version 2 table",
         "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n",
         certs,
         "F",
         {"is not read by a version 3 file"}},
        {"no version key: version 1 short plugin name",
         "[plugins.cri.registry]\nconfig_path = \"/etc/containerd/certs.d\"\n",
         certs,
         "P",
         {"version 1 (no `version` key)"}},
        {"an unknown version", "version = 4\n", certs, "W", {"version = 4"}},
        {"not TOML", "version = [\n", certs, "F", {"not valid TOML", "line 1"}},
    };
    for (const auto& c : cases) {
        SECTION(c.scenario) {
            const auto got = check_containerd_config(c.text, path, c.certs_dir);
            INFO(all_text(got));
            CHECK(marks(got) == c.want_marks);
            const auto text = all_text(got);
            for (const auto& phrase : c.want_phrases) {
                CHECK_THAT(text, Catch::Contains(phrase));
            }
            for (const auto& f : got) {
                if (f.status == mark::fail) {
                    CHECK_FALSE(f.fix.empty());  // every ✗ says what to do
                }
                CHECK_THAT(f.text, Catch::Contains(path));  // names the file
            }
        }
    }
}

TEST_CASE("image references: docker grammar, docker.io normalisation, ports, digests", "[proxy][doctor]") {
    struct ok_case {
        std::string text;
        image_reference want;
    };
    const std::string digest = "sha256:" + hex64;
    const ok_case ok[] = {
        {"alpine", {"docker.io", "library/alpine", "latest", ""}},
        {"alpine:3.19", {"docker.io", "library/alpine", "3.19", ""}},
        {"user/app", {"docker.io", "user/app", "latest", ""}},
        {"docker.io/alpine", {"docker.io", "library/alpine", "latest", ""}},
        {"index.docker.io/library/alpine:1", {"docker.io", "library/alpine", "1", ""}},
        {"localhost/app:v1", {"localhost", "app", "v1", ""}},
        {"localhost:5000/app", {"localhost:5000", "app", "latest", ""}},
        {"reg.example:5000/team/app:v1.2", {"reg.example:5000", "team/app", "v1.2", ""}},
        {"Reg.Example.COM/team/app", {"reg.example.com", "team/app", "latest", ""}},
        {"127.0.0.1:5000/a/b/c", {"127.0.0.1:5000", "a/b/c", "latest", ""}},
        {"[::1]:5000/app:v1", {"[::1]:5000", "app", "v1", ""}},
        {"acp-e2e-registry.cn-hangzhou.cr.aliyuncs.com/e2e/probe@" + digest,
         {"acp-e2e-registry.cn-hangzhou.cr.aliyuncs.com", "e2e/probe", "", digest}},
        {"reg.example/app:v1@" + digest, {"reg.example", "app", "v1", digest}},
        {"reg.example/a__b/c.d/e---f:_t", {"reg.example", "a__b/c.d/e---f", "_t", ""}},
    };
    for (const auto& c : ok) {
        SECTION("ok: " + c.text) {
            const auto got = parse_image_reference(c.text);
            INFO(got.error);
            REQUIRE(got.ref);
            CHECK(*got.ref == c.want);
            CHECK(got.ref->reference() == (c.want.digest.empty() ? c.want.tag : c.want.digest));
        }
    }

    struct bad_case {
        std::string scenario;
        std::string text;
        std::string phrase;
    };
    const bad_case bad[] = {
        {"empty", "", "empty"},
        {"upper-case familiar name", "Alpine", "lower-case"},
        {"a host only by its capitals", "UPPER/app", "capital letters"},
        {"upper-case path under a host", "reg.example/Team/app", "lower-case"},
        {"a space", "reg.example/app:bad tag", "spaces"},
        {"a tag starting with '-'", "reg.example/app:-bad", "tag '-bad'"},
        {"an empty tag", "reg.example/app:", "tag ''"},
        {"a short sha256", "reg.example/app@sha256:abc", "digest"},
        {"an upper-case sha256", "reg.example/app@sha256:" + std::string(64, 'A'), "digest"},
        {"an empty path component", "reg.example//app", "grammar"},
        {"a host and nothing else", "reg.example/", "path is empty"},
        {"a URL", "https://reg.example/app", "scheme"},
        {"a port out of range", "reg.example:99999/app", "host"},
        {"a name over 255 characters", "reg.example/" + std::string(300, 'a'), "255"},
        {"an image ID", hex64, "image ID"},
        {"only a tag", ":v1", "name is empty"},
        {"a trailing separator", "reg.example/app-:v1", "grammar"},
    };
    for (const auto& c : bad) {
        SECTION("bad: " + c.scenario) {
            const auto got = parse_image_reference(c.text);
            CHECK_FALSE(got.ref);
            CHECK_THAT(got.error, Catch::Contains(c.phrase));
        }
    }
    SECTION("str() writes the normalised reference") {
        CHECK(parse_image_reference("alpine").ref->str() == "docker.io/library/alpine:latest");
        CHECK(parse_image_reference("r.example/a:v1@" + digest).ref->str() == "r.example/a:v1@" + digest);
    }
}

TEST_CASE("hosts.toml: present, managed, this proxy first, with resolve", "[proxy][doctor]") {
    const std::string domain = "reg.example.com";
    const std::string proxy = "http://127.0.0.1:5005";
    const std::string file = "/etc/containerd/certs.d/reg.example.com/hosts.toml";
    const std::string install =
        "acr-credential-proxy hosts install --config c.yaml --certs-dir /etc/containerd/certs.d";
    const auto ours = acp::hosts::render(domain, proxy, std::nullopt).content;
    const auto merged =
        acp::hosts::render(domain, proxy,
                           std::string("server = \"https://m.example\"\n[host.\"https://cache.example\"]\n"
                                       "  capabilities = [\"pull\"]\n"))
            .content;
    const auto for_other_port = acp::hosts::render(domain, "http://127.0.0.1:6000", std::nullopt).content;
    const std::string marker = std::string(acp::hosts::marker_prefix) + "\n";

    struct hosts_case {
        std::string scenario;
        std::optional<std::string> text;
        mark want;
        std::string phrase;
    };
    const hosts_case cases[] = {
        {"missing", std::nullopt, mark::fail, "is missing"},
        {"as hosts install writes it", ours, mark::pass, "capabilities pull, resolve"},
        {"merged with a user's file: ours first", merged, mark::pass, "first [host] is this proxy"},
        {"a user's file without our marker", std::string("[host.\"http://127.0.0.1:5005\"]\n"), mark::fail,
         "not written by acr-credential-proxy"},
        {"written for another listen address", for_other_port, mark::fail, "written for http://127.0.0.1:6000"},
        {"another host moved in front of ours",
         marker + "[host.\"https://cache.example\"]\n[host.\"http://127.0.0.1:5005\"]\ncapabilities = [\"pull\", "
                  "\"resolve\"]\n",
         mark::fail, "the first [host] is \"https://cache.example\""},
        {"resolve dropped", marker + "[host.\"http://127.0.0.1:5005\"]\ncapabilities = [\"pull\"]\n", mark::fail,
         "lack \"resolve\""},
        {"pull dropped", marker + "[host.\"http://127.0.0.1:5005\"]\ncapabilities = [\"resolve\"]\n", mark::fail,
         "lack \"pull\""},
        {"capabilities not listed: containerd allows everything", marker + "[host.\"http://127.0.0.1:5005\"]\n",
         mark::pass, "capabilities not listed"},
        {"no host at all", marker + "server = \"https://reg.example.com\"\n", mark::fail, "no [host] entry"},
        {"not TOML", marker + "[host.\n", mark::fail, "not valid TOML"},
    };
    for (const auto& c : cases) {
        SECTION(c.scenario) {
            std::optional<std::string_view> text;
            if (c.text) {
                text = *c.text;
            }
            const auto got = check_hosts_toml(domain, file, text, proxy, install);
            INFO(got.text + "\n" + got.fix);
            CHECK(got.status == c.want);
            CHECK_THAT(got.text, Catch::Contains(c.phrase) && Catch::Contains(file));
            if (got.status == mark::fail) {
                CHECK_THAT(got.fix, Catch::Contains(install));
            }
        }
    }
}

TEST_CASE("ACR domains: configured against ListInstanceEndpoint", "[proxy][doctor]") {
    using acp::tokens::instance_domain;
    const std::vector<instance_domain> listed = {{"a-registry.cn-hangzhou.cr.aliyuncs.com", "SYSTEM", "internet"},
                                                 {"a-registry-vpc.cn-hangzhou.cr.aliyuncs.com", "SYSTEM", "vpc"}};
    struct domains_case {
        std::string scenario;
        std::vector<std::string> configured;
        std::vector<instance_domain> discovered;
        std::string want_marks;
        std::vector<std::string> phrases;
    };
    const domains_case cases[] = {
        {"nothing configured: the listed domains are served", {}, listed, "P", {"a-registry-vpc", "(vpc)"}},
        {"nothing configured and nothing listed", {}, {}, "F", {"serves nothing", "acrInstances[].domains"}},
        {"configured = listed (any case)",
         {"A-Registry.cn-hangzhou.cr.aliyuncs.com", "a-registry-vpc.cn-hangzhou.cr.aliyuncs.com"},
         listed,
         "P",
         {"match"}},
        {"a typo in the configured domain",
         {"a-regsitry.cn-hangzhou.cr.aliyuncs.com", "a-registry-vpc.cn-hangzhou.cr.aliyuncs.com"},
         listed,
         "WW",
         {"a-regsitry", "typo", "a-registry.cn-hangzhou.cr.aliyuncs.com (internet) is an endpoint",
          "do not go through the proxy"}},
        {"a listed domain not configured",
         {"a-registry.cn-hangzhou.cr.aliyuncs.com"},
         listed,
         "W",
         {"a-registry-vpc.cn-hangzhou.cr.aliyuncs.com (vpc) is an endpoint", "add a-registry-vpc"}},
    };
    for (const auto& c : cases) {
        SECTION(c.scenario) {
            const auto got = compare_domains("cri-x", c.configured, c.discovered);
            INFO(all_text(got));
            CHECK(marks(got) == c.want_marks);
            for (const auto& p : c.phrases) {
                CHECK_THAT(all_text(got), Catch::Contains(p));
            }
        }
    }
}

TEST_CASE("API failures: each fix says what to do", "[proxy][doctor]") {
    using acp::tokens::api_error;
    struct fix_case {
        std::string scenario;
        api_error err;
        std::string phrase;
    };
    const fix_case cases[] = {
        {"GetAuthorizationToken denied",
         {"GetAuthorizationToken", "Forbidden.RAM", "not authorized", 403, "R1", "https://cr.x"},
         "cr:GetAuthorizationToken, cr:ListInstanceEndpoint and cr:PullRepository"},
        {"ListInstanceEndpoint denied",
         {"ListInstanceEndpoint", "Forbidden.RAM", "", 403, "", ""},
         "missing here: cr:ListInstanceEndpoint"},
        {"AssumeRole denied", {"AssumeRole", "NoPermission", "", 403, "", ""}, "needs sts:AssumeRole"},
        {"unreachable endpoint",
         {"GetAuthorizationToken", "Transport", "timeout", 0, "", "https://cr.x"},
         "make https://cr.x reachable"},
        {"unreachable metadata",
         {"IMDS credentials", "Transport", "refused", 0, "", "http://100.100.100.200"},
         "outside ECS"},
        {"Personal Edition user never registered",
         {"GetAuthorizationToken", "USER_NOT_EXIST", "", 404, "", ""},
         "CreateUserInfo"},
        {"rejected AccessKey",
         {"GetAuthorizationToken", "InvalidAccessKeyId.NotFound", "", 404, "", ""},
         "was rejected"},
        {"no credentials", {"credential chain", "NoCredentials", "", 0, "", ""}, "ALIBABA_CLOUD_ACCESS_KEY_ID"},
        {"no such instance", {"GetAuthorizationToken", "INSTANCE_NOT_EXIST", "", 200, "", ""}, "instanceId"},
        {"anything else", {"GetAuthorizationToken", "InternalError", "", 500, "RID-7", ""}, "RequestId RID-7"},
    };
    for (const auto& c : cases) {
        SECTION(c.scenario) {
            CHECK_THAT(fix_for_api_error(c.err, "ECS RAM role (instance metadata)"), Catch::Contains(c.phrase));
        }
    }
}

TEST_CASE("checklist lines: a mark, the text, and an indented fix", "[proxy][doctor]") {
    using acp::proxy::doctor::fail;
    using acp::proxy::doctor::pass;
    using acp::proxy::doctor::warn;
    CHECK(render(pass("config ok")) == "\u2713 config ok\n");
    CHECK(render(fail("broken", "do this")) == "\u2717 broken\n    fix: do this\n");
    CHECK(render(warn("careful")) == "! careful\n");
    CHECK(render(fail("two\nlines", "a\nb")) == "\u2717 two\n  lines\n    fix: a\n         b\n");
}
