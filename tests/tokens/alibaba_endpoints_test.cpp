#include "tokens/alibaba_endpoints.hpp"

#include "tokens/alibaba_error.hpp"
#include "tokens/alibaba_http_client.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace acp::tokens;

namespace {

acp::config::environment env_of(std::map<std::string, std::string> vars) {
    return {[vars](const std::string& n) -> std::optional<std::string> {
                const auto it = vars.find(n);
                return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
            },
            {}};
}

}  // namespace

TEST_CASE("STS endpoint: config, ALIBABA_CLOUD_STS_ENDPOINT, STS region, VPC, default", "[alibaba][endpoints]") {
    struct row {
        const char* name;
        const char* configured;  // "" = default
        bool vpc;
        std::map<std::string, std::string> vars;
        const char* region;
        const char* expect;
    };
    const row rows[] = {
        {"default: the global endpoint", "", false, {}, "cn-hangzhou", "https://sts.aliyuncs.com"},
        {"a configured endpoint wins",
         "https://sts.example.internal",
         false,
         {{"ALIBABA_CLOUD_STS_ENDPOINT", "sts.cn-beijing.aliyuncs.com"}},
         "",
         "https://sts.example.internal"},
        {"ALIBABA_CLOUD_STS_ENDPOINT as a host",
         "",
         false,
         {{"ALIBABA_CLOUD_STS_ENDPOINT", "sts.cn-beijing.aliyuncs.com"}},
         "",
         "https://sts.cn-beijing.aliyuncs.com"},
        {"ALIBABA_CLOUD_STS_HTTP_SCHEME",
         "",
         false,
         {{"ALIBABA_CLOUD_STS_ENDPOINT", "127.0.0.1:8080"}, {"ALIBABA_CLOUD_STS_HTTP_SCHEME", "HTTP"}},
         "",
         "http://127.0.0.1:8080"},
        {"ALIBABA_CLOUD_STS_REGION",
         "",
         false,
         {{"ALIBABA_CLOUD_STS_REGION", "cn-shanghai"}},
         "",
         "https://sts.cn-shanghai.aliyuncs.com"},
        {"ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED with a region",
         "",
         false,
         {{"ALIBABA_CLOUD_STS_REGION", "cn-shanghai"}, {"ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"}},
         "",
         "https://sts-vpc.cn-shanghai.aliyuncs.com"},
        {"VPC from config, region from the node",
         "",
         true,
         {},
         "cn-hangzhou",
         "https://sts-vpc.cn-hangzhou.aliyuncs.com"},
        {"VPC without any region: global", "", true, {}, "", "https://sts.aliyuncs.com"},
        {"cn-hangzhou-finance maps to cn-hangzhou",
         "",
         false,
         {{"ALIBABA_CLOUD_STS_REGION", "cn-hangzhou-finance"}},
         "",
         "https://sts.cn-hangzhou.aliyuncs.com"},
    };
    for (const auto& r : rows) {
        SECTION(r.name) {
            acp::config::config cfg;
            if (std::string(r.configured).size() > 0) {
                cfg.alibaba.sts_endpoint = r.configured;
            }
            cfg.alibaba.use_vpc_endpoints = r.vpc;
            CHECK(resolve_sts_endpoint(cfg, env_of(r.vars), r.region) == r.expect);
        }
    }
}

TEST_CASE("ACR OpenAPI endpoint: {regionId}, cr-vpc, endpoint overrides", "[alibaba][endpoints]") {
    acp::config::config cfg;
    CHECK(resolve_acr_endpoint(cfg, "cn-hangzhou") == "https://cr.cn-hangzhou.aliyuncs.com");
    cfg.alibaba.use_vpc_endpoints = true;
    CHECK(resolve_acr_endpoint(cfg, "cn-hangzhou") == "https://cr-vpc.cn-hangzhou.aliyuncs.com");
    cfg.alibaba.acr_endpoint = "https://cr.{regionId}.example.internal";
    CHECK(resolve_acr_endpoint(cfg, "cn-beijing") == "https://cr.cn-beijing.example.internal");

    acp::config::config o;
    o.endpoint_overrides["cr.cn-hangzhou.aliyuncs.com"] = {"http", "127.0.0.1", 18080, ""};
    o.endpoint_overrides["sts.aliyuncs.com"] = {"http", "::1", 18081, "/sts/"};
    CHECK(resolve_acr_endpoint(o, "cn-hangzhou") == "http://127.0.0.1:18080");
    CHECK(resolve_acr_endpoint(o, "cn-beijing") == "https://cr.cn-beijing.aliyuncs.com");
    CHECK(resolve_sts_endpoint(o, env_of({}), "") == "http://[::1]:18081/sts");
}

TEST_CASE("IMDS endpoint: config, ALIBABA_CLOUD_IMDS_ENDPOINT, default", "[alibaba][endpoints]") {
    acp::config::config cfg;
    CHECK(resolve_imds_endpoint(cfg, env_of({})) == "http://100.100.100.200");
    CHECK(resolve_imds_endpoint(cfg, env_of({{"ALIBABA_CLOUD_IMDS_ENDPOINT", "127.0.0.1:9"}})) == "http://127.0.0.1:9");
    cfg.alibaba.imds_endpoint = "http://127.0.0.1:7/";
    CHECK(resolve_imds_endpoint(cfg, env_of({{"ALIBABA_CLOUD_IMDS_ENDPOINT", "127.0.0.1:9"}})) == "http://127.0.0.1:7");
}

TEST_CASE("Personal Edition domains of a region", "[alibaba][endpoints]") {
    CHECK(personal_edition_domains("cn-beijing") ==
          std::vector<std::string>{"registry.cn-beijing.aliyuncs.com", "registry-vpc.cn-beijing.aliyuncs.com",
                                   "registry-internal.cn-beijing.aliyuncs.com",
                                   "registry-intl.cn-beijing.aliyuncs.com"});
    CHECK(personal_edition_domains("").empty());
}

TEST_CASE("URL helpers for signing and messages", "[alibaba][endpoints]") {
    CHECK(url_host_header("https://cr.cn-hangzhou.aliyuncs.com/") == "cr.cn-hangzhou.aliyuncs.com");
    CHECK(url_host_header("https://CR.cn-hangzhou.aliyuncs.com:443/x") == "cr.cn-hangzhou.aliyuncs.com");
    CHECK(url_host_header("http://127.0.0.1:8080/?a=b") == "127.0.0.1:8080");
    CHECK(url_host_header("http://[::1]:80/") == "[::1]");
    CHECK(url_origin("https://sts.aliyuncs.com/?SecurityToken=secret&Signature=x") == "https://sts.aliyuncs.com");
}

TEST_CASE("scrub removes echoed request material and known secrets", "[alibaba][errors]") {
    const std::string token = "CAIS+abc/def=";
    CHECK(scrub("Specified signature is not matched. server string to sign is:POST&%2F&SecurityToken%3D" + token) ==
          "Specified signature is not matched. server [server echo removed]");
    CHECK(scrub("token " + token + " and " + "CAIS%2Babc%2Fdef%3D", {token}) == "token <redacted> and <redacted>");
    CHECK(scrub(std::string(1000, 'x')).size() == 403);
    CHECK(scrub("line\nbreak") == "line break");
}

TEST_CASE("RAM permission hints and instance failure messages", "[alibaba][errors]") {
    CHECK(ram_permission_hint("GetAuthorizationToken", "Forbidden.RAM", 403) == "cr:GetAuthorizationToken");
    CHECK(ram_permission_hint("ListInstanceEndpoint", "NoPermission", 400) == "cr:ListInstanceEndpoint");
    CHECK(ram_permission_hint("GetAuthorizationToken", "InternalError", 500).empty());
    api_error e{"GetAuthorizationToken", "Forbidden.RAM", "denied", 403, "R-1", "https://cr.cn-hangzhou.aliyuncs.com"};
    CHECK(describe_instance_failure("cri-abc", "cn-hangzhou", "ECS RAM role (instance metadata)", e) ==
          "ACR instance cri-abc (region cn-hangzhou): GetAuthorizationToken at https://cr.cn-hangzhou.aliyuncs.com "
          "failed: HTTP 403, Code=Forbidden.RAM, Message=denied, RequestId=R-1; the identity ECS RAM role (instance "
          "metadata) probably lacks the RAM permission cr:GetAuthorizationToken");
    api_error expired{"GetAuthorizationToken", "InvalidSecurityToken.Expired", "expired", 400, "", ""};
    CHECK(describe_instance_failure("cri-abc", "cn-hangzhou", "RRSA role r", expired).find("was rejected") !=
          std::string::npos);
    CHECK(pull_denied_hint("cri-abc", "ECS RAM role").find("cr:PullRepository") != std::string::npos);
}
