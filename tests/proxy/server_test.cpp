// In-process tests of the data plane: the real server on 127.0.0.1 port 0,
// small Beast fake upstreams, blocking clients with timeouts.
#include "tests/proxy/support/fake_upstream.hpp"
#include "tests/proxy/support/proxy_harness.hpp"
#include "tokens/static_credentials.hpp"

#include <boost/asio/ssl/context.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <thread>

using namespace acp::test;
using acp::config::auth_kind;
namespace http = boost::beast::http;

namespace {

const std::string digest = "sha256:" + std::string(64, 'b');
const std::string reg = "reg.test:5000";  // a made-up name mapped by endpointOverrides

fake_response ok_manifest(const recorded_request&) {
    return {200,
            {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}, {"Docker-Content-Digest", digest}},
            R"({"schemaVersion":2})"};
}

std::string error_code_of(const http::response<http::string_body>& res) {
    auto j = nlohmann::json::parse(res.body());
    return j["errors"][0]["code"].get<std::string>();
}

std::string message_of(const http::response<http::string_body>& res) {
    auto j = nlohmann::json::parse(res.body());
    return j["errors"][0]["message"].get<std::string>();
}

std::string manifest_path(const std::string& ns = reg) {
    return "/v2/library/app/manifests/v1?ns=" + ns;
}

}  // namespace

TEST_CASE("GET and HEAD /v2/ answer 200 {} at once, never 401", "[proxy][server]") {
    auto cfg = test_config();
    proxy_under_test p(cfg);
    client c(p.data());
    auto res = c.get("/v2/");
    CHECK(res.result_int() == 200);
    CHECK(res.body() == "{}");
    CHECK(res[http::field::content_type] == "application/json");
    auto head = c.get("/v2/", {}, http::verb::head);  // same connection: keep-alive
    CHECK(head.result_int() == 200);
    CHECK(head[http::field::content_length] == "2");
    CHECK(head.body().empty());
}

TEST_CASE("unknown or missing ns is a fast 404 and is never forwarded", "[proxy][server]") {
    fake_upstream up(ok_manifest);
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client c(p.data());
    auto unknown = c.get(manifest_path("other.example.com"));
    CHECK(unknown.result_int() == 404);
    CHECK(error_code_of(unknown) == "NAME_UNKNOWN");
    auto missing = c.get("/v2/library/app/manifests/v1");
    CHECK(missing.result_int() == 404);
    CHECK(error_code_of(missing) == "NAME_UNKNOWN");
    auto port_differs = c.get(manifest_path("reg.test:5001"));
    CHECK(port_differs.result_int() == 404);
    for (const auto* bad_ns : {"", "evil.com%2Freg.test", "reg.test:99999", "reg.test%3A5000%26ns%3Dx"}) {
        INFO(bad_ns);
        auto res = c.get(std::string("/v2/library/app/manifests/v1?ns=") + bad_ns);
        CHECK(res.result_int() == 404);
        CHECK(error_code_of(res) == "NAME_UNKNOWN");
    }
    auto repeated = c.get(manifest_path() + "&ns=" + reg);
    CHECK(repeated.result_int() == 404);
    CHECK(up.requests().empty());
}

TEST_CASE("requests without ns go to defaultRegistry when it is set", "[proxy][server]") {
    fake_upstream up(ok_manifest);
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    cfg->default_registry = reg;
    proxy_under_test p(cfg);
    client c(p.data());
    auto res = c.get("/v2/library/app/manifests/v1");
    CHECK(res.result_int() == 200);
    REQUIRE(up.requests().size() == 1);
    CHECK(up.requests()[0].target == "/v2/library/app/manifests/v1");
}

TEST_CASE("ns matches case-insensitively and is not forwarded upstream", "[proxy][server]") {
    fake_upstream up(ok_manifest);
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client c(p.data());
    auto res = c.get("/v2/library/app/manifests/v1?ns=REG.test%3A5000");
    CHECK(res.result_int() == 200);
    CHECK(res.body() == R"({"schemaVersion":2})");
    CHECK(res["Docker-Content-Digest"] == digest);
    REQUIRE(up.requests().size() == 1);
    CHECK(up.requests()[0].target == "/v2/library/app/manifests/v1");
    CHECK(up.requests()[0].values("Host") == std::vector<std::string>{up.authority()});
}

TEST_CASE("methods other than GET and HEAD get 405", "[proxy][server]") {
    fake_upstream up(ok_manifest);
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    for (auto verb : {http::verb::post, http::verb::put, http::verb::delete_, http::verb::patch, http::verb::options}) {
        client c(p.data());
        auto res = c.get(manifest_path(), {}, verb);
        CHECK(res.result_int() == 405);
        CHECK(res[http::field::allow] == "GET, HEAD");
    }
    CHECK(up.requests().empty());
}

TEST_CASE("malformed names and references get 400 and are not forwarded", "[proxy][server]") {
    fake_upstream up(ok_manifest);
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    struct bad {
        std::string target;
        std::string code;
    };
    const bad cases[] = {
        {"/v2/../etc/manifests/v1?ns=" + reg, "NAME_INVALID"},
        {"/v2/a%2Fb/manifests/v1?ns=" + reg, "NAME_INVALID"},
        {"/v2/Upper/manifests/v1?ns=" + reg, "NAME_INVALID"},
        {"/v2/app/manifests/-bad?ns=" + reg, "TAG_INVALID"},
        {"/v2/app/blobs/latest?ns=" + reg, "DIGEST_INVALID"},
        {"/v2/app/manifests/v1?ns=" + reg + "&n=x%zz", "UNSUPPORTED"},
    };
    client c(p.data());
    for (const auto& b : cases) {
        INFO(b.target);
        auto res = c.get(b.target);
        CHECK(res.result_int() == 400);
        CHECK(error_code_of(res) == b.code);
    }
    CHECK(up.requests().empty());
}

TEST_CASE("a request header block over 16 KiB gets 431 and the connection closes", "[proxy][server]") {
    proxy_under_test p(test_config());
    client c(p.data());
    auto res = c.get("/v2/", {{"X-Big", std::string(17 * 1024, 'x')}});
    CHECK(res.result_int() == 431);
    CHECK(c.closed_by_peer(std::chrono::seconds(2)));
}

TEST_CASE("a body on GET gets 400 and the connection closes", "[proxy][server]") {
    proxy_under_test p(test_config());
    client c(p.data());
    c.send_raw("GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    auto res = c.read_response();
    CHECK(res.result_int() == 400);
    CHECK(c.closed_by_peer(std::chrono::seconds(2)));
}

TEST_CASE("request smuggling shapes get 400 and the connection closes", "[proxy][server]") {
    proxy_under_test p(test_config());
    const std::string shapes[] = {
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 7\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    };
    for (const auto& raw : shapes) {
        INFO(raw);
        client c(p.data());
        c.send_raw(raw);
        auto res = c.read_response();
        CHECK(res.result_int() == 400);
        CHECK(c.closed_by_peer(std::chrono::seconds(2)));
    }
}

TEST_CASE("a slow request head is cut off after the header timeout", "[proxy][server]") {
    auto cfg = test_config();
    cfg->timeouts.header_read = std::chrono::milliseconds(200);
    proxy_under_test p(cfg);
    client c(p.data());
    c.send_raw("GET /v2/ HTTP/1.1\r\nHost: x\r\n");  // never finished
    const auto start = std::chrono::steady_clock::now();
    CHECK(c.closed_by_peer(std::chrono::seconds(3)));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
}

TEST_CASE("idle keep-alive connections are closed after the idle timeout", "[proxy][server]") {
    auto cfg = test_config();
    cfg->timeouts.idle = std::chrono::milliseconds(200);
    proxy_under_test p(cfg);
    client c(p.data());
    CHECK(c.get("/v2/").result_int() == 200);
    CHECK(c.closed_by_peer(std::chrono::seconds(3)));
}

TEST_CASE("a client's own Authorization is forwarded untouched, nothing injected", "[proxy][server][auth]") {
    fake_upstream up(ok_manifest);
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority(), auth_kind::basic, "proxyuser", "proxypass");
    proxy_under_test p(cfg);
    client c(p.data());
    auto res = c.get(manifest_path(), {{"Authorization", "Bearer pod-own-token"}});
    CHECK(res.result_int() == 200);
    REQUIRE(up.requests().size() == 1);
    CHECK(up.requests()[0].values("Authorization") == std::vector<std::string>{"Bearer pod-own-token"});
}

TEST_CASE("static Basic credentials are injected upstream", "[proxy][server][auth]") {
    fake_upstream up(ok_manifest);
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority(), auth_kind::basic, "u", "secret pw");
    proxy_under_test p(cfg);
    client c(p.data());
    CHECK(c.get(manifest_path()).result_int() == 200);
    REQUIRE(up.requests().size() == 1);
    CHECK(up.requests()[0].values("Authorization") ==
          std::vector<std::string>{"Basic " + acp::tokens::base64_encode("u:secret pw")});
}

TEST_CASE("an anonymous route injects nothing", "[proxy][server][auth]") {
    fake_upstream up(ok_manifest);
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client c(p.data());
    CHECK(c.get(manifest_path()).result_int() == 200);
    REQUIRE(up.requests().size() == 1);
    CHECK_FALSE(up.requests()[0].has("Authorization"));
}

TEST_CASE("upstream 401 becomes 403 DENIED naming registry and repository, never 401", "[proxy][server][auth]") {
    fake_upstream up([](const recorded_request&) {
        return fake_response{401, {{"WWW-Authenticate", R"(Basic realm="r")"}}, R"({"errors":[]})"};
    });
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority(), auth_kind::basic, "u", "wrong");
    proxy_under_test p(cfg);
    client c(p.data());
    auto res = c.get(manifest_path());
    CHECK(res.result_int() == 403);
    CHECK(error_code_of(res) == "DENIED");
    CHECK(message_of(res).find(reg) != std::string::npos);
    CHECK(message_of(res).find("library/app") != std::string::npos);
    CHECK(res.count(http::field::www_authenticate) == 0);
    CHECK(res.body().find("wrong") == std::string::npos);
    // the connection stays usable
    CHECK(c.get("/v2/").result_int() == 200);
}

TEST_CASE("an unreachable upstream is 502 and a silent one is 504, fast", "[proxy][server][errors]") {
    // A port that was free a moment ago: nothing listens there.
    std::uint16_t closed_port = 0;
    {
        boost::asio::io_context ioc;
        tcp::acceptor a(ioc, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
        closed_port = a.local_endpoint().port();
    }
    fake_upstream silent([](const recorded_request&) {
        fake_response r;
        r.never_respond = true;
        return r;
    });
    auto cfg = test_config();
    cfg->timeouts.upstream_headers = std::chrono::milliseconds(300);
    add_http_registry(*cfg, "down.test", "127.0.0.1:" + std::to_string(closed_port));
    add_http_registry(*cfg, "silent.test", silent.authority());
    proxy_under_test p(cfg);
    client c(p.data());
    auto unreachable = c.get(manifest_path("down.test"));
    CHECK(unreachable.result_int() == 502);
    const auto start = std::chrono::steady_clock::now();
    auto timeout = c.get(manifest_path("silent.test"));
    CHECK(timeout.result_int() == 504);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
    auto metrics = client(p.admin()).get("/metrics");
    CHECK(metrics.body().find("acp_upstream_connect_errors_total{upstream=\"127.0.0.1:" + std::to_string(closed_port) +
                              "\"} 1") != std::string::npos);
}

TEST_CASE("redirects pass through by default; the target is never contacted by the proxy",
          "[proxy][server][redirect]") {
    fake_upstream storage([](const recorded_request&) { return fake_response{200, {}, "blob-bytes"}; });
    const auto location = "http://" + storage.authority() + "/blob/data?sig=abc";
    fake_upstream registry([&](const recorded_request&) { return fake_response{307, {{"Location", location}}, ""}; });
    auto cfg = test_config();
    add_http_registry(*cfg, reg, registry.authority(), auth_kind::basic, "u", "p");
    proxy_under_test p(cfg);
    client c(p.data());
    auto res = c.get("/v2/library/app/blobs/" + digest + "?ns=" + reg);
    CHECK(res.result_int() == 307);
    CHECK(res[http::field::location] == location);
    CHECK(storage.requests().empty());
}

TEST_CASE("followRedirects follows to another host without Authorization, keeping Range", "[proxy][server][redirect]") {
    fake_upstream storage([](const recorded_request& r) {
        return fake_response{206, {{"Content-Range", "bytes 0-3/10"}}, r.target == "/blob/data?sig=abc" ? "blob" : "?"};
    });
    const auto location = "http://" + storage.authority() + "/blob/data?sig=abc";
    fake_upstream registry([&](const recorded_request& r) {
        if (r.target.find("/hop") != std::string::npos) {
            return fake_response{302, {{"Location", location}}, ""};
        }
        return fake_response{307, {{"Location", "/hop"}}, ""};  // same host first, then away
    });
    auto cfg = test_config();
    cfg->follow_redirects = true;
    add_http_registry(*cfg, reg, registry.authority(), auth_kind::basic, "u", "p");
    proxy_under_test p(cfg);
    client c(p.data());
    auto res = c.get("/v2/library/app/blobs/" + digest + "?ns=" + reg, {{"Range", "bytes=0-3"}});
    CHECK(res.result_int() == 206);
    CHECK(res.body() == "blob");
    CHECK(res[http::field::content_range] == "bytes 0-3/10");
    const auto at_registry = registry.requests();
    REQUIRE(at_registry.size() == 2);
    CHECK(at_registry[0].has("Authorization"));
    CHECK(at_registry[1].has("Authorization"));  // same origin: credentials still belong there
    CHECK(at_registry[1].target == "/hop");
    const auto at_storage = storage.requests();
    REQUIRE(at_storage.size() == 1);
    CHECK_FALSE(at_storage[0].has("Authorization"));
    CHECK(at_storage[0].values("Range") == std::vector<std::string>{"bytes=0-3"});
    CHECK(at_storage[0].values("Host") == std::vector<std::string>{storage.authority()});
}

TEST_CASE("followRedirects drops a client's own Authorization on a host change too", "[proxy][server][redirect]") {
    fake_upstream storage([](const recorded_request&) { return fake_response{200, {}, "x"}; });
    const auto location = "http://" + storage.authority() + "/b";
    fake_upstream registry([&](const recorded_request&) { return fake_response{307, {{"Location", location}}, ""}; });
    auto cfg = test_config();
    cfg->follow_redirects = true;
    add_http_registry(*cfg, reg, registry.authority());
    proxy_under_test p(cfg);
    client c(p.data());
    auto res = c.get("/v2/library/app/blobs/" + digest + "?ns=" + reg, {{"Authorization", "Bearer pod"}});
    CHECK(res.result_int() == 200);
    REQUIRE(storage.requests().size() == 1);
    CHECK_FALSE(storage.requests()[0].has("Authorization"));
}

TEST_CASE("followRedirects stops after 5 hops and refuses non-http schemes", "[proxy][server][redirect]") {
    fake_upstream loop([](const recorded_request& r) {
        return fake_response{302, {{"Location", r.target + "x"}}, ""};
    });
    fake_upstream ftp([](const recorded_request&) { return fake_response{302, {{"Location", "ftp://x/y"}}, ""}; });
    auto cfg = test_config();
    cfg->follow_redirects = true;
    add_http_registry(*cfg, "loop.test", loop.authority());
    add_http_registry(*cfg, "ftp.test", ftp.authority());
    proxy_under_test p(cfg);
    client c(p.data());
    CHECK(c.get("/v2/app/blobs/" + digest + "?ns=loop.test").result_int() == 502);
    CHECK(loop.requests().size() == 6);
    CHECK(c.get("/v2/app/blobs/" + digest + "?ns=ftp.test").result_int() == 502);
}

TEST_CASE("Range, Accept and distribution headers pass through; repeated lines keep their order",
          "[proxy][server][headers]") {
    fake_upstream up([](const recorded_request&) {
        return fake_response{206,
                             {{"Content-Type", "application/octet-stream"},
                              {"Content-Range", "bytes 2-5/10"},
                              {"Docker-Content-Digest", digest},
                              {"ETag", "\"" + digest + "\""},
                              {"Docker-Distribution-API-Version", "registry/2.0"},
                              {"Keep-Alive", "timeout=5"},
                              {"Connection", "X-Hop"},
                              {"X-Hop", "must not pass"},
                              {"Link", "<a>"},
                              {"Link", "<b>"}},
                             "2345"};
    });
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client c(p.data());
    auto res = c.get("/v2/library/app/blobs/" + digest + "?ns=" + reg,
                     {{"Accept", "application/vnd.oci.image.index.v1+json"},
                      {"Range", "bytes=2-5"},
                      {"Accept", "application/vnd.oci.image.manifest.v1+json"},
                      {"If-None-Match", "\"x\""},
                      {"Connection", "X-Client-Hop"},
                      {"X-Client-Hop", "1"},
                      {"Proxy-Authorization", "Basic eA=="},
                      {"TE", "trailers"},
                      {"Accept", "application/vnd.docker.distribution.manifest.v2+json"}});
    CHECK(res.result_int() == 206);
    CHECK(res.body() == "2345");
    CHECK(res[http::field::content_range] == "bytes 2-5/10");
    CHECK(res["Docker-Content-Digest"] == digest);
    CHECK(res[http::field::etag] == "\"" + digest + "\"");
    CHECK(res.count("X-Hop") == 0);
    CHECK(res.count(http::field::keep_alive) == 0);
    std::vector<std::string> links;
    for (auto it = res.find("Link"); it != res.end() && it->name_string() == "Link"; ++it) {
        links.emplace_back(it->value());
    }
    CHECK(links == std::vector<std::string>{"<a>", "<b>"});

    REQUIRE(up.requests().size() == 1);
    const auto recorded = up.requests();
    const auto& r = recorded[0];
    CHECK(r.values("Accept") == std::vector<std::string>{"application/vnd.oci.image.index.v1+json",
                                                         "application/vnd.oci.image.manifest.v1+json",
                                                         "application/vnd.docker.distribution.manifest.v2+json"});
    CHECK(r.values("Range") == std::vector<std::string>{"bytes=2-5"});
    CHECK(r.values("If-None-Match") == std::vector<std::string>{"\"x\""});
    CHECK_FALSE(r.has("X-Client-Hop"));
    CHECK_FALSE(r.has("Proxy-Authorization"));
    CHECK_FALSE(r.has("TE"));
}

TEST_CASE("HEAD is relayed without a body and keeps the upstream Content-Length", "[proxy][server]") {
    fake_upstream up([](const recorded_request& r) {
        fake_response res{200, {{"Docker-Content-Digest", digest}, {"Content-Length", "1234"}}, ""};
        if (r.method != "HEAD") {
            res.body = std::string(1234, 'm');
        }
        return res;
    });
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client c(p.data());
    auto head = c.get(manifest_path(), {}, http::verb::head);
    CHECK(head.result_int() == 200);
    CHECK(head[http::field::content_length] == "1234");
    CHECK(head.body().empty());
    REQUIRE(up.requests().size() == 1);
    CHECK(up.requests()[0].method == "HEAD");
    // the connection is still in sync for the next request
    auto get = c.get(manifest_path());
    CHECK(get.body().size() == 1234);
}

TEST_CASE("upstream keep-alive connections are reused across requests", "[proxy][server][pool]") {
    fake_upstream up(ok_manifest);
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client c1(p.data());
    for (int i = 0; i < 3; ++i) {
        CHECK(c1.get(manifest_path()).result_int() == 200);
    }
    client c2(p.data());
    CHECK(c2.get(manifest_path()).result_int() == 200);
    CHECK(up.requests().size() == 4);
    CHECK(up.connections() == 1);
}

TEST_CASE("an upstream that closed its idle connection is retried on a fresh one", "[proxy][server][pool]") {
    fake_upstream up([](const recorded_request&) {
        auto r = ok_manifest({});
        r.close = true;  // answers, then closes: the pooled connection goes stale
        return r;
    });
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client c(p.data());
    CHECK(c.get(manifest_path()).result_int() == 200);
    CHECK(c.get(manifest_path()).result_int() == 200);
    CHECK(up.connections() == 2);
}

TEST_CASE("chunked and large upstream bodies stream through intact", "[proxy][server][relay]") {
    constexpr std::uint64_t size = 48ull * 1024 * 1024 + 123;
    fake_upstream up([](const recorded_request& r) {
        fake_response res;
        res.generated_body = size;
        res.chunked = r.target.find("chunked") != std::string::npos;
        return res;
    });
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client c(p.data(), std::chrono::seconds(20));
    unsigned status = 0;
    CHECK(c.get_generated("/v2/big/blobs/" + digest + "?ns=" + reg, status) == size);
    CHECK(status == 200);
    CHECK(c.get_generated("/v2/chunked/blobs/" + digest + "?ns=" + reg, status) == size);
    CHECK(status == 200);
    auto metrics = client(p.admin()).get("/metrics");
    CHECK(metrics.body().find("acp_relayed_bytes_total{registry=\"" + reg + "\"} " + std::to_string(2 * size)) !=
          std::string::npos);
}

TEST_CASE("response headers reach the client before the body is complete", "[proxy][server][relay]") {
    // containerd >= 2.3 gives up after 30 s without response headers: the
    // proxy must send the head as soon as the upstream's arrives.
    fake_upstream up([](const recorded_request&) {
        fake_response r;
        r.generated_body = 1024;
        r.body_delay = std::chrono::milliseconds(1500);
        return r;
    });
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client c(p.data());
    const auto start = std::chrono::steady_clock::now();
    CHECK(c.get_head_only("/v2/x/blobs/" + digest + "?ns=" + reg) == 200);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1000));
}

TEST_CASE("connections over maxConnections get 503", "[proxy][server][limits]") {
    auto cfg = test_config();
    cfg->limits.max_connections = 1;
    proxy_under_test p(cfg);
    client first(p.data());
    CHECK(first.get("/v2/").result_int() == 200);  // stays open (keep-alive)
    client second(p.data());
    auto res = second.get("/v2/");
    CHECK(res.result_int() == 503);
    CHECK(error_code_of(res) == "TOOMANYREQUESTS");
    CHECK(first.get("/v2/").result_int() == 200);
}

TEST_CASE("the admin listener serves health, readiness and metrics, and never /v2", "[proxy][server][admin]") {
    fake_upstream up(ok_manifest);
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client data(p.data());
    CHECK(data.get(manifest_path()).result_int() == 200);
    client admin(p.admin());
    CHECK(admin.get("/healthz").result_int() == 200);
    CHECK(admin.get("/readyz").result_int() == 200);
    auto metrics = admin.get("/metrics");
    CHECK(metrics.result_int() == 200);
    CHECK(metrics.body().find("acp_requests_total{registry=\"" + reg + "\",kind=\"manifest\",status=\"2xx\"} 1") !=
          std::string::npos);
    CHECK(metrics.body().find("acp_request_latency_seconds_count 1") != std::string::npos);
    CHECK(metrics.body().find("acp_open_connections 1") != std::string::npos);
    CHECK(admin.get("/v2/").result_int() == 404);
    CHECK(admin.get(manifest_path()).result_int() == 404);
    CHECK(up.requests().size() == 1);
}

TEST_CASE("a reload swaps routes for new requests", "[proxy][server][reload]") {
    fake_upstream up(ok_manifest);
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client c(p.data());
    CHECK(c.get(manifest_path("new.test")).result_int() == 404);
    auto next = std::make_shared<acp::config::config>(*cfg);
    add_http_registry(*next, "new.test", up.authority());
    p.reload(next);
    CHECK(c.get(manifest_path("new.test")).result_int() == 200);
    CHECK(c.get(manifest_path()).result_int() == 200);
}

TEST_CASE("shutdown lets an in-flight transfer finish and closes idle connections", "[proxy][server][lifecycle]") {
    fake_upstream up([](const recorded_request&) {
        fake_response r{200, {}, "late"};
        r.delay = std::chrono::milliseconds(300);
        return r;
    });
    auto cfg = test_config();
    add_http_registry(*cfg, reg, up.authority());
    auto p = std::make_unique<proxy_under_test>(cfg);
    client idle(p->data());
    CHECK(idle.get("/v2/").result_int() == 200);
    client busy(p->data());
    busy.send_raw("GET " + manifest_path() + " HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(eventually([&] { return up.requests().size() == 1; }));
    std::thread stopper([&] { p->shutdown(); });
    auto res = busy.read_response();
    CHECK(res.result_int() == 200);
    CHECK(res.body() == "late");
    CHECK_FALSE(res.keep_alive());
    CHECK(idle.closed_by_peer(std::chrono::seconds(2)));
    stopper.join();
}

TEST_CASE("shutdown gives a connection that has sent nothing a moment for its request, not the idle timeout",
          "[proxy][server][lifecycle]") {
    fake_upstream up([](const recorded_request&) { return fake_response{200, {}, "ok"}; });
    auto cfg = test_config();
    cfg->timeouts.idle = std::chrono::seconds(30);
    cfg->timeouts.shutdown_grace = std::chrono::seconds(30);
    add_http_registry(*cfg, reg, up.authority());
    auto p = std::make_unique<proxy_under_test>(cfg);
    client silent(p->data());  // a spare connection (containerd opens some): never sends a byte
    client late(p->data());    // connected before the drain, its request comes just after it starts
    REQUIRE(eventually([&] {
        return client(p->admin()).get("/metrics").body().find("acp_open_connections 2\n") != std::string::npos;
    }));
    const auto start = std::chrono::steady_clock::now();
    std::thread stopper([&] { p->shutdown(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    late.send_raw("GET " + manifest_path() + " HTTP/1.1\r\nHost: x\r\n\r\n");
    auto res = late.read_response();
    CHECK(res.result_int() == 200);
    CHECK_FALSE(res.keep_alive());
    CHECK(silent.closed_by_peer(std::chrono::seconds(5)));
    stopper.join();
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("shutdown cancels transfers still running after the grace period", "[proxy][server][lifecycle]") {
    fake_upstream up([](const recorded_request&) {
        fake_response r;
        r.never_respond = true;
        return r;
    });
    auto cfg = test_config();
    cfg->timeouts.shutdown_grace = std::chrono::milliseconds(200);
    cfg->timeouts.upstream_headers = std::chrono::seconds(30);
    add_http_registry(*cfg, reg, up.authority());
    proxy_under_test p(cfg);
    client busy(p.data());
    busy.send_raw("GET " + manifest_path() + " HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(eventually([&] { return up.requests().size() == 1; }));
    const auto start = std::chrono::steady_clock::now();
    p.shutdown();
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));
}

TEST_CASE("TLS upstreams are verified against caFile, by hostname or IP", "[proxy][server][tls]") {
    const auto cert = test_certificate::make("localhost");
    auto tls = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
    tls->use_certificate_chain_file(cert.cert_file);
    tls->use_private_key_file(cert.key_file, boost::asio::ssl::context::pem);
    fake_upstream up(ok_manifest, tls);
    const auto other = test_certificate::make("localhost");

    auto cfg = test_config();
    auto add = [&](const std::string& host, const std::string& target_host, const std::string& ca, bool insecure) {
        acp::config::registry r;
        r.host = host;
        r.ca_file = ca;
        r.insecure_skip_verify = insecure;
        cfg->registries.push_back(r);
        cfg->endpoint_overrides[host] = {"https", target_host, up.port(), ""};
    };
    add("by-ip.test", "127.0.0.1", cert.cert_file, false);
    add("by-name.test", "localhost", cert.cert_file, false);
    add("wrong-ca.test", "127.0.0.1", other.cert_file, false);
    add("insecure.test", "127.0.0.1", other.cert_file, true);
    proxy_under_test p(cfg);
    client c(p.data());
    CHECK(c.get(manifest_path("by-ip.test")).result_int() == 200);
    CHECK(c.get(manifest_path("by-name.test")).result_int() == 200);
    auto wrong = c.get(manifest_path("wrong-ca.test"));
    CHECK(wrong.result_int() == 502);
    CHECK(wrong.body().find("certificate") != std::string::npos);
    CHECK(c.get(manifest_path("insecure.test")).result_int() == 200);
    auto metrics = client(p.admin()).get("/metrics");
    CHECK(metrics.body().find("acp_upstream_tls_errors_total") != std::string::npos);
}
