// config::secret: value semantics, and no copy of the bytes left behind in
// the object's own storage after destruction, move or replacement.
#include "config/config.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>
#include <string>
#include <string_view>

namespace {

using acp::config::secret;

// A short value lives in std::string's in-object buffer, so its bytes are in
// the secret's own storage, which the test owns and may read after the
// object is gone.
constexpr std::string_view short_value = "pw-0123456789";  // < 16: small-string buffer

struct storage {
    alignas(secret) unsigned char bytes[sizeof(secret)];
    secret* get() { return std::launder(reinterpret_cast<secret*>(bytes)); }  // NOLINT: raw storage on purpose
    [[nodiscard]] bool holds(std::string_view text) const {
        return std::search(std::begin(bytes), std::end(bytes), text.begin(), text.end(), [](unsigned char a, char b) {
                   return a == static_cast<unsigned char>(b);
               }) != std::end(bytes);
    }
};

}  // namespace

TEST_CASE("secret keeps its value through copies and moves", "[secret]") {
    secret a(std::string("hunter2-but-longer-than-sso-buffer"));
    secret b = a;
    CHECK(b == a);
    secret c = std::move(b);
    CHECK(c.reveal() == "hunter2-but-longer-than-sso-buffer");
    CHECK(b.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    secret d;
    d = c;
    CHECK(d == c);
    d = secret(std::string("other"));
    CHECK(d.reveal() == "other");
    d = std::move(c);
    CHECK(d.reveal() == "hunter2-but-longer-than-sso-buffer");
    CHECK(c.empty());  // NOLINT(bugprone-use-after-move)
}

TEST_CASE("a destroyed secret leaves no copy of its bytes in its storage", "[secret]") {
    storage s;
    new (s.bytes) secret(std::string(short_value));
    REQUIRE(s.holds(short_value));  // the test can see the bytes while the secret lives
    s.get()->~secret();
    CHECK_FALSE(s.holds(short_value));
}

TEST_CASE("a moved-from secret is wiped, not just emptied", "[secret]") {
    storage s;
    new (s.bytes) secret(std::string(short_value));
    secret taken = std::move(*s.get());
    CHECK(taken.reveal() == short_value);
    CHECK_FALSE(s.holds(short_value));  // std::string's move leaves short bytes behind; secret's does not
    s.get()->~secret();
}

TEST_CASE("a replaced secret does not keep the old bytes", "[secret]") {
    storage s;
    new (s.bytes) secret(std::string(short_value));
    *s.get() = secret(std::string("new"));
    CHECK_FALSE(s.holds(short_value));
    *s.get() = secret(std::string(short_value));
    const secret shorter(std::string("x"));
    *s.get() = shorter;  // copy-assign of a shorter value
    CHECK_FALSE(s.holds(short_value));
    s.get()->~secret();
}
