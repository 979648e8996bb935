#include "proxy/error.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using acp::proxy::errc;
using acp::proxy::make_error_code;
using acp::proxy::to_local_reply;
namespace http = boost::beast::http;

TEST_CASE("every error maps to exactly one status, registry code and connection fate", "[proxy][errors]") {
    struct row {
        errc e;
        unsigned status;
        const char* code;
        bool close;
    };
    const row table[] = {
        {errc::name_unknown, 404, "NAME_UNKNOWN", false},
        {errc::not_found, 404, "UNSUPPORTED", false},
        {errc::method_not_allowed, 405, "UNSUPPORTED", false},
        {errc::name_invalid, 400, "NAME_INVALID", false},
        {errc::tag_invalid, 400, "TAG_INVALID", false},
        {errc::digest_invalid, 400, "DIGEST_INVALID", false},
        {errc::bad_request, 400, "UNSUPPORTED", false},
        {errc::malformed_http, 400, "UNSUPPORTED", true},
        {errc::body_not_allowed, 400, "UNSUPPORTED", true},
        {errc::request_smuggling, 400, "UNSUPPORTED", true},
        {errc::header_too_large, 431, "UNSUPPORTED", true},
        {errc::too_many_connections, 503, "TOOMANYREQUESTS", true},
        {errc::shutting_down, 503, "UNAVAILABLE", true},
        {errc::credentials_unavailable, 503, "UNAVAILABLE", false},
        {errc::upstream_denied, 403, "DENIED", false},
        {errc::upstream_unreachable, 502, "UNAVAILABLE", false},
        {errc::upstream_tls, 502, "UNAVAILABLE", false},
        {errc::upstream_protocol, 502, "UNAVAILABLE", false},
        {errc::upstream_timeout, 504, "UNAVAILABLE", false},
        {errc::redirect_invalid, 502, "UNAVAILABLE", false},
        {errc::out_of_scope, 404, "NAME_UNKNOWN", false},
    };
    for (const auto& r : table) {
        INFO(make_error_code(r.e).message());
        const auto reply = to_local_reply(make_error_code(r.e), {"reg.example", "team/app", "basic", ""});
        CHECK(static_cast<unsigned>(reply.status) == r.status);
        CHECK(reply.close == r.close);
        const auto body = nlohmann::json::parse(reply.body);
        REQUIRE(body["errors"].is_array());
        REQUIRE(body["errors"].size() == 1);
        CHECK(body["errors"][0]["code"] == r.code);
        CHECK(body["errors"][0]["message"].is_string());
        CHECK(reply.allow_header == (r.e == errc::method_not_allowed));
    }
}

TEST_CASE("no upstream condition ever becomes a 401", "[proxy][errors]") {
    for (int e = 1; e <= static_cast<int>(errc::out_of_scope); ++e) {
        const auto reply = to_local_reply(make_error_code(static_cast<errc>(e)), {});
        CHECK(reply.status != http::status::unauthorized);
    }
}

TEST_CASE("DENIED names the registry, the repository and whose credentials failed", "[proxy][errors]") {
    const auto reply =
        to_local_reply(make_error_code(errc::upstream_denied), {"reg.example:5000", "team/app", "basic", ""});
    const auto body = nlohmann::json::parse(reply.body);
    const auto message = body["errors"][0]["message"].get<std::string>();
    CHECK(message.find("reg.example:5000") != std::string::npos);
    CHECK(message.find("team/app") != std::string::npos);
    CHECK(message.find("basic") != std::string::npos);
    CHECK(body["errors"][0]["detail"]["repository"] == "team/app");
}

TEST_CASE("a hostile ns reflected in a 404 stays valid JSON", "[proxy][errors]") {
    const std::string hostile = std::string("evil\"\\\n\xff\x01.io");
    const auto reply = to_local_reply(make_error_code(errc::name_unknown), {hostile, "", "", ""});
    CHECK_NOTHROW(nlohmann::json::parse(reply.body));
}

TEST_CASE("errors of other categories become 500 UNKNOWN and close", "[proxy][errors]") {
    const auto reply = to_local_reply(boost::asio::error::connection_reset, {});
    CHECK(reply.status == http::status::internal_server_error);
    CHECK(reply.close);
    CHECK(nlohmann::json::parse(reply.body)["errors"][0]["code"] == "UNKNOWN");
}

TEST_CASE("upstream transport errors are classified for the mapping", "[proxy][errors]") {
    using acp::proxy::classify_upstream;
    CHECK(classify_upstream(boost::beast::error::timeout) == errc::upstream_timeout);
    CHECK(classify_upstream(boost::asio::error::connection_refused) == errc::upstream_unreachable);
    CHECK(classify_upstream(boost::asio::error::connection_reset) == errc::upstream_unreachable);
    CHECK(classify_upstream(http::error::end_of_stream) == errc::upstream_unreachable);
    CHECK(classify_upstream(http::error::bad_version) == errc::upstream_protocol);
    CHECK(classify_upstream(boost::asio::ssl::error::stream_truncated) == errc::upstream_tls);
}

TEST_CASE("path grammar errors map onto proxy errors", "[proxy][errors]") {
    using acp::proxy::from_path_error;
    using acp::routing::path_error;
    CHECK(from_path_error(path_error::not_found) == errc::not_found);
    CHECK(from_path_error(path_error::bad_target) == errc::bad_request);
    CHECK(from_path_error(path_error::name_invalid) == errc::name_invalid);
    CHECK(from_path_error(path_error::tag_invalid) == errc::tag_invalid);
    CHECK(from_path_error(path_error::digest_invalid) == errc::digest_invalid);
    CHECK(from_path_error(path_error::query_invalid) == errc::bad_request);
    CHECK(from_path_error(path_error::ns_invalid) == errc::name_unknown);
}
