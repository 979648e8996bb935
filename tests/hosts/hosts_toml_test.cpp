#include "hosts/hosts_toml.hpp"

#include "hosts/toml_writer.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

using acp::hosts::render;
using acp::hosts::render_options;
using acp::hosts::render_status;

namespace {

constexpr std::string_view domain = "demo-registry.cn-hangzhou.cr.aliyuncs.com";
constexpr std::string_view proxy = "http://127.0.0.1:5005";

render_options opts_v(std::optional<std::string> dial = std::nullopt) {
    render_options o;
    o.version = "9.9.9";
    o.dial_timeout = std::move(dial);
    return o;
}

const std::string marker =
    "# Managed by acr-credential-proxy 9.9.9 (block between >>> and <<< is rewritten; \"hosts remove\" restores the "
    "original)\n";

std::string block(bool with_server, std::string_view url = proxy, std::string_view extra = "") {
    std::string b = "# >>> acr-credential-proxy\n";
    if (with_server) {
        b += "server = \"https://" + std::string(domain) + "\"\n";
    }
    b += "[host.\"" + std::string(url) + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n";
    b += extra;
    b += "# <<< acr-credential-proxy\n";
    return b;
}

// The [host] keys of a rendered file in the order containerd tries them (by line).
std::vector<std::string> host_order(const std::string& text) {
    std::vector<std::string> keys;
    const auto doc = toml::parse(text);
    if (const auto* h = doc.get_as<toml::table>("host")) {
        for (const auto& [k, n] : acp::hosts::toml_writer::in_source_order(*h)) {
            keys.emplace_back(k->str());
        }
    }
    return keys;
}

struct merge_case {
    const char* name;
    std::optional<std::string> existing;
    std::string expected;            // exact content ("" = not checked)
    std::vector<std::string> order;  // [host] order after rendering
    bool normalized = false;
};

}  // namespace

TEST_CASE("render and merge: table of existing files", "[hosts][render]") {
    const std::string ours(proxy);
    const std::vector<merge_case> cases = {
        {"no file: server and the proxy as the only host", std::nullopt, marker + block(true), {ours}},
        {"empty file", std::string(), marker + block(true), {ours}},
        {"single quotes, user mirror kept after ours",
         "server = 'https://demo-registry.cn-hangzhou.cr.aliyuncs.com'\n\n[host.'https://mirror.example.com']\n"
         "  capabilities = ['pull']\n",
         marker + "server = 'https://demo-registry.cn-hangzhou.cr.aliyuncs.com'\n\n" + block(false) +
             "[host.'https://mirror.example.com']\n  capabilities = ['pull']\n",
         {ours, "https://mirror.example.com"}},
        {"inline table for headers inside a [host] table",
         "[host.\"https://mirror.example.com\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
         "  header = { X-Tenant = \"team-a\", Authorization = [\"Basic a\", \"Basic b\"] }\n",
         marker + block(true) +
             "[host.\"https://mirror.example.com\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
             "  header = { X-Tenant = \"team-a\", Authorization = [\"Basic a\", \"Basic b\"] }\n",
         {ours, "https://mirror.example.com"}},
        {"[host.\"…\".header] tables with arrays of headers",
         "server = \"https://origin.example.com\"\n[host.\"https://m1.example.com\"]\n  skip_verify = true\n"
         "[host.\"https://m1.example.com\".header]\n  X-Custom = [\"a\", \"b\"]\n"
         "[host.\"https://m2.example.com\"]\n  ca = \"/etc/ca.pem\"\n",
         marker + "server = \"https://origin.example.com\"\n" + block(false) +
             "[host.\"https://m1.example.com\"]\n  skip_verify = true\n"
             "[host.\"https://m1.example.com\".header]\n  X-Custom = [\"a\", \"b\"]\n"
             "[host.\"https://m2.example.com\"]\n  ca = \"/etc/ca.pem\"\n",
         {ours, "https://m1.example.com", "https://m2.example.com"}},
        {"comments: a comment above the first header stays with it",
         "# file comment\n\nserver = \"https://origin.example.com\" # trailing\n\n# our CI mirror\n# (second line)\n"
         "[host.\"https://ci-mirror.example.com\"] # after header\n  capabilities = [\"pull\"] # after value\n",
         marker + "# file comment\n\nserver = \"https://origin.example.com\" # trailing\n\n" + block(false) +
             "# our CI mirror\n# (second line)\n[host.\"https://ci-mirror.example.com\"] # after header\n"
             "  capabilities = [\"pull\"] # after value\n",
         {ours, "https://ci-mirror.example.com"}},
        {"root-level host config keys stay root keys",
         "server = \"https://origin.example.com\"\ncapabilities = [\"pull\", \"resolve\"]\nca = \"/etc/ca.pem\"\n",
         marker +
             "server = \"https://origin.example.com\"\ncapabilities = [\"pull\", \"resolve\"]\nca = \"/etc/ca.pem\"\n" +
             block(false),
         {ours}},
        {"no trailing newline and no table: a newline is added before our block",
         "server = \"https://origin.example.com\"",
         marker + "server = \"https://origin.example.com\"\n" + block(false),
         {ours}},
        {"a multi-line string holding a [bracket] line is not a header",
         "note = \"\"\"\n[not a header]\n# nor a comment\n\"\"\"\n[host.\"https://m.example.com\"]\n",
         marker + "note = \"\"\"\n[not a header]\n# nor a comment\n\"\"\"\n" + block(true) +
             "[host.\"https://m.example.com\"]\n",
         {ours, "https://m.example.com"}},
        {"a multi-line array whose lines start with [",
         "matrix = [\n[1, 2],\n[3, 4],\n]\n[host.\"https://m.example.com\"]\n",
         marker + "matrix = [\n[1, 2],\n[3, 4],\n]\n" + block(true) + "[host.\"https://m.example.com\"]\n",
         {ours, "https://m.example.com"}},
        {"an explicit [host] table with inline entries",
         "[host]\n\"https://a.example.com\" = { capabilities = [\"pull\"] }\n"
         "\"https://b.example.com\" = { capabilities = [\"pull\"] }\n",
         marker + block(true) +
             "[host]\n\"https://a.example.com\" = { capabilities = [\"pull\"] }\n"
             "\"https://b.example.com\" = { capabilities = [\"pull\"] }\n",
         {ours, "https://a.example.com", "https://b.example.com"}},
        {"other tables and arrays of tables are kept",
         "[extra]\nkey = 1\n[[list]]\nname = \"a\"\n[[list]]\nname = \"b\"\n",
         marker + block(true) + "[extra]\nkey = 1\n[[list]]\nname = \"a\"\n[[list]]\nname = \"b\"\n",
         {ours}},
        {"hosts as one inline table at the root: re-rendered, order kept",
         "server = \"https://origin.example.com\"\nhost = { \"https://b.example.com\" = { capabilities = [\"pull\"] }, "
         "\"https://a.example.com\" = { capabilities = [\"pull\"], header = { X-A = \"1\" } } }\n",
         marker + "server = \"https://origin.example.com\"\n" + block(false) +
             "[host.\"https://b.example.com\"]\ncapabilities = [\"pull\"]\n"
             "[host.\"https://a.example.com\"]\ncapabilities = [\"pull\"]\nheader = { X-A = \"1\" }\n",
         {ours, "https://b.example.com", "https://a.example.com"},
         true},
        {"hosts as dotted keys at the root: re-rendered",
         "host.\"https://m.example.com\".capabilities = [\"pull\"]\n"
         "host.\"https://m.example.com\".header.X-A = \"1\"\n",
         marker + block(true) +
             "[host.\"https://m.example.com\"]\ncapabilities = [\"pull\"]\n"
             "[host.\"https://m.example.com\".header]\nX-A = \"1\"\n",
         {ours, "https://m.example.com"},
         true},
        {"the user already lists the proxy address: the managed entry replaces it",
         "[host.\"https://m.example.com\"]\ncapabilities = [\"pull\"]\n[host.\"http://127.0.0.1:5005\"]\n"
         "capabilities = [\"pull\"]\n",
         marker + block(true) + "[host.\"https://m.example.com\"]\ncapabilities = [\"pull\"]\n",
         {ours, "https://m.example.com"},
         true},
    };
    for (const auto& c : cases) {
        SECTION(c.name) {
            const auto r = render(domain, proxy,
                                  c.existing ? std::optional<std::string_view>(*c.existing) : std::nullopt, opts_v());
            REQUIRE(r.status == render_status::ok);
            if (!c.expected.empty()) {
                CHECK(r.content == c.expected);
            }
            CHECK(host_order(r.content) == c.order);
            CHECK(r.normalized == c.normalized);
            CHECK(acp::hosts::is_managed(r.content));

            // Our block comes out again exactly: the user's part is what was kept.
            const auto s = acp::hosts::strip_managed(r.content);
            CHECK(s.managed);
            CHECK(s.user_text == r.user_text);
            if (!c.normalized && c.existing) {
                const bool ends_nl = c.existing->empty() || c.existing->back() == '\n';
                CHECK(r.user_text == (ends_nl ? *c.existing : *c.existing + "\n"));
            }

            // Idempotent: rendering the managed file again changes nothing.
            const auto again = render(domain, proxy, r.content, opts_v());
            REQUIRE(again.status == render_status::ok);
            CHECK(again.content == r.content);
            CHECK_FALSE(again.normalized);
        }
    }
}

TEST_CASE("render: proxy address forms and options", "[hosts][render]") {
    SECTION("IPv6 listen address in brackets") {
        const auto url = acp::hosts::proxy_url({"::1", 5005});
        CHECK(url == "http://[::1]:5005");
        const auto r = render(domain, url, std::nullopt, opts_v());
        CHECK(r.content == marker + block(true, "http://[::1]:5005"));
        CHECK(host_order(r.content) == std::vector<std::string>{"http://[::1]:5005"});
    }
    SECTION("listen addresses") {
        struct row {
            std::string host;
            std::uint16_t port;
            std::string url;
        };
        const std::vector<row> rows = {
            {"127.0.0.1", 5005, "http://127.0.0.1:5005"}, {"::1", 15005, "http://[::1]:15005"},
            {"0.0.0.0", 5005, "http://127.0.0.1:5005"},   {"::", 5005, "http://[::1]:5005"},
            {"10.0.0.5", 30020, "http://10.0.0.5:30020"},
        };
        for (const auto& r : rows) {
            CHECK(acp::hosts::proxy_url({r.host, r.port}) == r.url);
        }
    }
    SECTION("dial_timeout only when asked") {
        CHECK(render(domain, proxy, std::nullopt, opts_v()).content.find("dial_timeout") == std::string::npos);
        const auto r = render(domain, proxy, std::nullopt, opts_v("200ms"));
        CHECK(r.content == marker + block(true, proxy, "  dial_timeout = \"200ms\"\n"));
        // Changing the option rewrites only the block.
        const auto without = render(domain, proxy, r.content, opts_v());
        CHECK(without.content == marker + block(true));
    }
    SECTION("docker.io's server is registry-1.docker.io") {
        const auto r = render("docker.io", proxy, std::nullopt, opts_v());
        CHECK(r.content.find("server = \"https://registry-1.docker.io\"\n") != std::string::npos);
    }
    SECTION("a new version rewrites the marker only") {
        auto o = opts_v();
        o.version = "10.0.0";
        const auto r = render(domain, proxy, render(domain, proxy, std::nullopt, opts_v()).content, o);
        CHECK(r.content.substr(0, 42) == "# Managed by acr-credential-proxy 10.0.0 (");
        CHECK(acp::hosts::strip_managed(r.content).user_text.empty());
    }
    SECTION("CRLF files keep CRLF") {
        const std::string crlf = "server = \"https://o.example.com\"\r\n[host.\"https://m.example.com\"]\r\n";
        const auto r = render(domain, proxy, crlf, opts_v());
        REQUIRE(r.status == render_status::ok);
        CHECK(r.content.find("# <<< acr-credential-proxy\r\n[host.\"https://m.example.com\"]\r\n") !=
              std::string::npos);
        CHECK(r.content.find("capabilities = [\"pull\", \"resolve\"]\r\n") != std::string::npos);
        CHECK(render(domain, proxy, r.content, opts_v()).content == r.content);
    }
}

TEST_CASE("render: managed files", "[hosts][render]") {
    const std::string user = "server = \"https://o.example.com\"\n[host.\"https://m.example.com\"]\n";
    const auto first = render(domain, proxy, user, opts_v());
    REQUIRE(first.status == render_status::ok);

    SECTION("edits inside the block are overwritten, edits outside are kept") {
        std::string edited = first.content;
        const auto caps = edited.find("[\"pull\", \"resolve\"]");
        edited.replace(caps, 19, "[\"pull\"]");
        edited += "[host.\"https://late.example.com\"]\n";
        const auto r = render(domain, proxy, edited, opts_v());
        CHECK(r.content == first.content + "[host.\"https://late.example.com\"]\n");
    }
    SECTION("a moved block goes back in front of the user's hosts") {
        const auto s = acp::hosts::strip_managed(first.content);
        const std::string moved = s.user_text + block(false);  // block after the user's [host]
        const auto r = render(domain, proxy, moved, opts_v());
        CHECK(r.content == first.content);
    }
    SECTION("a different proxy address replaces ours") {
        const auto r = render(domain, "http://127.0.0.1:6000", first.content, opts_v());
        CHECK(host_order(r.content) == std::vector<std::string>{"http://127.0.0.1:6000", "https://m.example.com"});
        CHECK(acp::hosts::managed_proxy_url(r.content) == "http://127.0.0.1:6000");
    }
    SECTION("a block without its end line is refused") {
        const auto r =
            render(domain, proxy, std::string(marker) + "# >>> acr-credential-proxy\n[host.\"x\"]\n", opts_v());
        CHECK(r.status == render_status::cannot_merge);
        CHECK(r.reason.find("no end line") != std::string::npos);
    }
}

TEST_CASE("render: files that are left untouched", "[hosts][render]") {
    struct row {
        const char* name;
        std::string text;
        render_status status;
        int line;
        int column;
    };
    const std::vector<row> rows = {
        {"unterminated table header", "server = \"https://x\"\n[host.\"https://m\"\n", render_status::unparsable, 2,
         18},
        {"duplicate key", "a = 1\na = 2\n", render_status::unparsable, 2, 5},
        {"unterminated string", "server = \"https://x\n", render_status::unparsable, 1, 20},
        {"host is not a table", "host = \"https://m\"\n", render_status::cannot_merge, 0, 0},
        {"a host entry is not a table", "host.ties = [\"pull\"]\n", render_status::cannot_merge, 0, 0},
    };
    for (const auto& r : rows) {
        SECTION(r.name) {
            const auto out = render(domain, proxy, r.text, opts_v());
            CHECK(out.status == r.status);
            CHECK(out.content.empty());
            CHECK_FALSE(out.reason.empty());
            if (r.status == render_status::unparsable) {
                REQUIRE(out.error);
                CHECK(out.error->line == r.line);
                CHECK(out.error->column == r.column);
                CHECK(out.reason.find("line " + std::to_string(r.line) + ", column ") != std::string::npos);
            }
        }
    }
}

TEST_CASE("normalize_domain: containerd directory names", "[hosts][domain]") {
    struct row {
        std::string in;
        std::optional<std::string> out;
    };
    const std::vector<row> rows = {
        {"demo-registry.cn-hangzhou.cr.aliyuncs.com", "demo-registry.cn-hangzhou.cr.aliyuncs.com"},
        {"Registry.Example.COM", "registry.example.com"},
        {"registry.example.com:5000", "registry.example.com:5000"},
        {"localhost", "localhost"},
        {"10.0.0.1:5000", "10.0.0.1:5000"},
        {"", std::nullopt},
        {"_default", std::nullopt},
        {"../etc", std::nullopt},
        {"a/b", std::nullopt},
        {"example.com.", std::nullopt},
        {".example.com", std::nullopt},
        {"-bad.example.com", std::nullopt},
        {"example.com:0", std::nullopt},
        {"example.com:65536", std::nullopt},
        {"example.com:", std::nullopt},
        {"example.com:80a", std::nullopt},
        {"[::1]:5000", std::nullopt},
        {"exa mple.com", std::nullopt},
    };
    for (const auto& r : rows) {
        INFO(r.in);
        CHECK(acp::hosts::normalize_domain(r.in) == r.out);
    }
}

TEST_CASE("is_go_duration: dial_timeout syntax", "[hosts][duration]") {
    for (const std::string ok : {"0", "200ms", "1s", "1.5s", "1m30s", "2h", "10us", "5ns", ".5s", "1.s"}) {
        INFO(ok);
        CHECK(acp::hosts::is_go_duration(ok));
    }
    for (const std::string bad : {"", "200", "ms", "1x", "-1s", "+1s", "1 s", "1.2.3s", "s1", ".s"}) {
        INFO(bad);
        CHECK_FALSE(acp::hosts::is_go_duration(bad));
    }
}

TEST_CASE("strip_managed returns everything but our lines, byte for byte", "[hosts][render]") {
    const std::string text = "a = 1\n" + marker + "b = 2\n" + block(true) + "c = 3";
    const auto s = acp::hosts::strip_managed(text);
    CHECK(s.managed);
    CHECK(s.user_text == "a = 1\nb = 2\nc = 3");
    CHECK_FALSE(acp::hosts::strip_managed("a = 1\n").managed);
    CHECK_FALSE(acp::hosts::is_managed("# Managed by someone else\n"));
}

TEST_CASE("toml_writer: values round-trip through the parser", "[hosts][writer]") {
    const std::string text =
        "s = \"quote \\\" back \\\\ tab \\t nl \\n ctl \\u0001 é\"\n"
        "i = 42\nneg = -7\nf = 1.5\ne = 1e+20\nwhole = 3.0\nb = true\nd = 1979-05-27\nt = 07:32:00\n"
        "dt = 1979-05-27T07:32:00Z\narr = [1, [2, 3], { x = 1 }]\nit = { \"a b\" = 1, c = { d = 2 } }\n"
        "[tbl]\nk = 'lit'\n[[aot]]\nn = 1\n[aot.sub]\nm = 2\n[[aot]]\nn = 3\n";
    const auto doc = toml::parse(text);
    const auto out = acp::hosts::toml_writer::normalized_document(doc, "", "\n");
    const auto again = toml::parse(out);
    CHECK(again == doc);
    CHECK(acp::hosts::toml_writer::key("bare-key_1") == "bare-key_1");
    CHECK(acp::hosts::toml_writer::key("http://x") == "\"http://x\"");
}
