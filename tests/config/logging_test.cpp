#include "config/logging.hpp"

#include <catch2/catch.hpp>

TEST_CASE("redact keeps only the length of a secret", "[config][logging]") {
    CHECK(acp::logging::redact("hunter2") == "<redacted 7 bytes>");
    CHECK(acp::logging::redact("") == "<empty>");
    CHECK(acp::logging::redact("hunter2").find("hunter") == std::string::npos);
}

TEST_CASE("json_escape produces a valid JSON string for control and quote characters", "[config][logging]") {
    CHECK(acp::logging::json_escape("a\"b\\c\n\x01") == R"("a\"b\\c\n\u0001")");
    CHECK(acp::logging::json_escape("") == R"("")");
}
