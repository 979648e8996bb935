#include "proxy/header_policy.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

using namespace acp::proxy;

namespace {

using lines = std::vector<std::pair<std::string, std::string>>;

lines dump(const http::fields& f) {
    lines out;
    for (const auto& field : f) {
        out.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    return out;
}

http::fields make(const lines& in) {
    http::fields f;
    for (const auto& [n, v] : in) {
        f.insert(n, v);
    }
    return f;
}

}  // namespace

TEST_CASE("hop-by-hop fields are stripped, including those named in Connection", "[proxy][headers]") {
    struct row {
        const char* scenario;
        lines in;
        lines out;
    };
    const row table[] = {
        {"fixed hop-by-hop names, any case",
         {{"connection", "keep-alive"},
          {"Keep-Alive", "timeout=5"},
          {"TRANSFER-ENCODING", "chunked"},
          {"TE", "trailers"},
          {"Trailer", "X"},
          {"Upgrade", "h2c"},
          {"Proxy-Connection", "keep-alive"},
          {"Proxy-Authorization", "Basic x"},
          {"Proxy-Authenticate", "Basic"},
          {"Content-Type", "a/b"}},
         {{"Content-Type", "a/b"}}},
        {"fields named by Connection, over several lines",
         {{"Connection", "X-A, x-b"},
          {"X-A", "1"},
          {"Accept", "1"},
          {"Connection", "X-C"},
          {"X-B", "2"},
          {"X-C", "3"},
          {"X-D", "4"}},
         {{"Accept", "1"}, {"X-D", "4"}}},
        // Beast keeps lines of one name together; their relative order is what HTTP defines.
        {"repeated end-to-end lines keep their order",
         {{"Accept", "a"}, {"Link", "<1>"}, {"Accept", "b"}, {"Link", "<2>"}, {"Accept", "c"}},
         {{"Accept", "a"}, {"Accept", "b"}, {"Accept", "c"}, {"Link", "<1>"}, {"Link", "<2>"}}},
        {"Authorization is end-to-end", {{"Authorization", "Bearer x"}}, {{"Authorization", "Bearer x"}}},
    };
    for (const auto& r : table) {
        INFO(r.scenario);
        auto f = make(r.in);
        strip_hop_by_hop(f);
        CHECK(dump(f) == r.out);
    }
}

TEST_CASE("request fields are copied in order without Host, framing or hop-by-hop fields", "[proxy][headers]") {
    const auto down = make({{"Host", "127.0.0.1:5005"},
                            {"User-Agent", "containerd/1.6"},
                            {"Accept", "application/vnd.oci.image.index.v1+json"},
                            {"Accept", "application/vnd.oci.image.manifest.v1+json"},
                            {"Content-Length", "0"},
                            {"Expect", "100-continue"},
                            {"Connection", "X-Trace"},
                            {"X-Trace", "1"},
                            {"Range", "bytes=0-9"},
                            {"Accept", "*/*"},
                            {"If-None-Match", "\"d\""},
                            {"X-Custom", "kept"}});
    http::fields up;
    copy_request_fields(down, up);
    CHECK(dump(up) == lines{{"User-Agent", "containerd/1.6"},
                            {"Accept", "application/vnd.oci.image.index.v1+json"},
                            {"Accept", "application/vnd.oci.image.manifest.v1+json"},
                            {"Accept", "*/*"},
                            {"Range", "bytes=0-9"},
                            {"If-None-Match", "\"d\""},
                            {"X-Custom", "kept"}});
}

TEST_CASE("connection tokens and field values are read across repeated lines", "[proxy][headers]") {
    const auto f = make({{"Connection", "close, X-A"},
                         {"WWW-Authenticate", "Bearer realm=\"a\""},
                         {"Connection", "x-b"},
                         {"WWW-Authenticate", "Basic realm=\"b\""}});
    CHECK(connection_tokens(f) == std::vector<std::string>{"close", "x-a", "x-b"});
    CHECK(field_values(f, http::field::www_authenticate) ==
          std::vector<std::string>{"Bearer realm=\"a\"", "Basic realm=\"b\""});
    CHECK(is_hop_by_hop("Keep-Alive"));
    CHECK_FALSE(is_hop_by_hop("Keep"));
}
