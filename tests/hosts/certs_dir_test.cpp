#include "hosts/certs_dir.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using acp::hosts::action;

namespace {

constexpr const char* domain_a = "demo-registry.cn-hangzhou.cr.aliyuncs.com";
constexpr const char* domain_b = "registry.example.com:5000";
const acp::config::listen_address listen{"127.0.0.1", 5005};

struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string tmpl = (fs::temp_directory_path() / "acp-hosts-test-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        // Undo read-only modes set by a test so everything can be deleted.
        for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
             it.increment(ec)) {
            if (it->is_directory(ec)) {
                fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
            }
        }
        fs::remove_all(path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
};

void write_text(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << text;
    REQUIRE(f.good());
}

std::string read_text(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

struct stamp {
    ino_t ino = 0;
    timespec mtime{};
    bool operator==(const stamp& o) const {
        return ino == o.ino && mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec;
    }
};

stamp stamp_of(const fs::path& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return {st.st_ino, st.st_mtim};
}

std::vector<std::string> listing(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) {
        names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::vector<action> actions(const acp::hosts::report& r) {
    std::vector<action> a;
    for (const auto& c : r.files) {
        a.push_back(c.what);
    }
    return a;
}

std::string errors_of(const acp::hosts::report& r) {
    std::string s;
    for (const auto& e : r.errors) {
        s += e + "\n";
    }
    for (const auto& c : r.files) {
        s += c.error.empty() ? "" : c.error + "\n";
    }
    return s;
}

// Runs `fn` without the power to write into read-only directories: as
// `nobody` in a child process when we are root (root ignores file modes).
// Returns what `fn` returned.
std::string run_unprivileged(const std::function<std::string()>& fn) {
    if (::geteuid() != 0) {
        return fn();
    }
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
            ::_exit(3);
        }
        const auto out = fn();
        const auto n = ::write(fds[1], out.data(), out.size());
        ::_exit(n == static_cast<ssize_t>(out.size()) ? 0 : 4);
    }
    ::close(fds[1]);
    std::string out;
    char buf[4096];
    ssize_t n = 0;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) {
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    return out;
}

const std::string user_file =
    "# the team's mirror, keep!\r\nserver = 'https://registry.example.com:5000'\r\n\r\n"
    "[host.'https://mirror.example.com']\r\n  capabilities = ['pull', 'resolve']\r\n"
    "  header = { X-Tenant = \"a\" }\r\n";

}  // namespace

TEST_CASE("install: a fresh certs dir gets one file per domain; twice does not rewrite", "[hosts][certs_dir]") {
    temp_dir t;
    const auto certs = t.path / "certs.d";  // does not exist yet
    const auto r =
        acp::hosts::install(certs, {domain_a, domain_b, "DEMO-registry.cn-hangzhou.cr.aliyuncs.com"}, listen);
    INFO(errors_of(r));
    REQUIRE(r.ok());
    CHECK(actions(r) == std::vector<action>{action::create, action::create});
    const auto file_a = certs / domain_a / "hosts.toml";
    const auto text = read_text(file_a);
    CHECK(text.find("server = \"https://demo-registry.cn-hangzhou.cr.aliyuncs.com\"\n") != std::string::npos);
    CHECK(text.find("[host.\"http://127.0.0.1:5005\"]\n  capabilities = [\"pull\", \"resolve\"]\n") !=
          std::string::npos);
    CHECK(read_text(certs / domain_b / "hosts.toml").find("server = \"https://registry.example.com:5000\"") !=
          std::string::npos);
    CHECK((fs::status(file_a).permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read));
    CHECK(listing(certs / domain_a) ==
          std::vector<std::string>{"hosts.toml", "hosts.toml.acr-credential-proxy.created"});

    const auto before = stamp_of(file_a);
    const auto again = acp::hosts::install(certs, {domain_a, domain_b}, listen);
    REQUIRE(again.ok());
    CHECK(actions(again) == std::vector<action>{action::unchanged, action::unchanged});
    CHECK(stamp_of(file_a) == before);
    CHECK(read_text(file_a) == text);
}

TEST_CASE("install: plan and print write nothing", "[hosts][certs_dir]") {
    temp_dir t;
    const auto certs = t.path / "certs.d";
    const auto p = acp::hosts::plan(certs, {domain_a}, listen);
    REQUIRE(p.files.size() == 1);
    CHECK(p.files[0].what == action::create);
    CHECK(p.files[0].create_dir);
    CHECK(p.files[0].content.find("[host.\"http://127.0.0.1:5005\"]") != std::string::npos);
    CHECK_FALSE(fs::exists(certs));
    // What plan shows is exactly what install writes.
    const auto r = acp::hosts::install(certs, {domain_a}, listen);
    CHECK(read_text(certs / domain_a / "hosts.toml") == p.files[0].content);
}

TEST_CASE("install merges a user's file, remove restores it byte for byte", "[hosts][certs_dir]") {
    temp_dir t;
    const auto certs = t.path;
    const auto file = certs / domain_b / "hosts.toml";
    write_text(file, user_file);
    fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);  // 0600 is kept

    const auto r = acp::hosts::install(certs, {domain_b}, listen);
    INFO(errors_of(r));
    REQUIRE(r.ok());
    CHECK(actions(r) == std::vector<action>{action::merge});
    const auto merged = read_text(file);
    // Ours first, then the user's mirror; their server line, quotes, comment and CRLF kept.
    const auto ours = merged.find("[host.\"http://127.0.0.1:5005\"]");
    const auto theirs = merged.find("[host.'https://mirror.example.com']");
    CHECK(ours != std::string::npos);
    CHECK(theirs != std::string::npos);
    CHECK(ours < theirs);
    CHECK(merged.find("# the team's mirror, keep!\r\nserver = 'https://registry.example.com:5000'\r\n") !=
          std::string::npos);
    CHECK(merged.find("server = \"") == std::string::npos);  // their server line, not a second one
    CHECK(read_text(certs / domain_b / "hosts.toml.acr-credential-proxy.orig") == user_file);
    CHECK_FALSE(fs::exists(certs / domain_b / "hosts.toml.acr-credential-proxy.created"));
    CHECK((fs::status(file).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));

    SECTION("installing again is a no-op") {
        const auto before = stamp_of(file);
        const auto again = acp::hosts::install(certs, {domain_b}, listen);
        CHECK(actions(again) == std::vector<action>{action::unchanged});
        CHECK(stamp_of(file) == before);
    }
    SECTION("a new listen address rewrites the block, the backup stays the original") {
        const auto again = acp::hosts::install(certs, {domain_b}, {"::1", 6000});
        CHECK(actions(again) == std::vector<action>{action::update});
        CHECK(read_text(file).find("[host.\"http://[::1]:6000\"]") != std::string::npos);
        CHECK(read_text(certs / domain_b / "hosts.toml.acr-credential-proxy.orig") == user_file);
    }
    SECTION("remove restores the original byte for byte") {
        const auto rm = acp::hosts::remove(certs);
        INFO(errors_of(rm));
        REQUIRE(rm.ok());
        CHECK(actions(rm) == std::vector<action>{action::restore});
        CHECK(read_text(file) == user_file);
        CHECK(listing(certs / domain_b) == std::vector<std::string>{"hosts.toml"});
        CHECK((fs::status(file).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
        // Nothing left to do.
        CHECK(acp::hosts::remove(certs).files.empty());
    }
    SECTION("remove after the user edited the file keeps their edits") {
        write_text(file, merged + "[host.\"https://late.example.com\"]\r\n");
        const auto rm = acp::hosts::remove(certs);
        CHECK(actions(rm) == std::vector<action>{action::strip});
        REQUIRE(rm.files[0].notes.size() == 1);
        CHECK(rm.files[0].notes[0].find("edited since install") != std::string::npos);
        CHECK(read_text(file) == user_file + "[host.\"https://late.example.com\"]\r\n");
        CHECK_FALSE(acp::hosts::is_managed(read_text(file)));
    }
}

TEST_CASE("remove deletes only what install created", "[hosts][certs_dir]") {
    temp_dir t;
    const auto certs = t.path;
    // Another domain's directory install never touched, and a directory that existed without hosts.toml.
    write_text(certs / "other.example.com" / "hosts.toml", "server = \"https://other.example.com\"\n");
    write_text(certs / "other.example.com" / "ca.crt", "cert");
    write_text(certs / domain_b / "ca.crt", "their cert");
    const auto other_stamp = stamp_of(certs / "other.example.com" / "hosts.toml");

    REQUIRE(acp::hosts::install(certs, {domain_a, domain_b}, listen).ok());
    CHECK(listing(certs / domain_b) ==
          std::vector<std::string>{"ca.crt", "hosts.toml", "hosts.toml.acr-credential-proxy.created"});

    const auto rm = acp::hosts::remove(certs);
    INFO(errors_of(rm));
    REQUIRE(rm.ok());
    CHECK(actions(rm) == std::vector<action>{action::remove, action::remove});
    CHECK_FALSE(fs::exists(certs / domain_a));                               // we made the directory
    CHECK(listing(certs / domain_b) == std::vector<std::string>{"ca.crt"});  // theirs: kept
    CHECK(listing(certs / "other.example.com") == std::vector<std::string>{"ca.crt", "hosts.toml"});
    CHECK(stamp_of(certs / "other.example.com" / "hosts.toml") == other_stamp);
}

TEST_CASE("install: a domain that left the config is undone", "[hosts][certs_dir]") {
    temp_dir t;
    const auto certs = t.path;
    write_text(certs / domain_b / "hosts.toml", user_file);
    REQUIRE(acp::hosts::install(certs, {domain_a, domain_b}, listen).ok());

    const auto r = acp::hosts::install(certs, {"registry.example.org"}, listen);
    INFO(errors_of(r));
    REQUIRE(r.ok());
    CHECK(actions(r) == std::vector<action>{action::create, action::remove, action::restore});
    CHECK_FALSE(r.files[1].configured);
    CHECK_FALSE(fs::exists(certs / domain_a));
    CHECK(read_text(certs / domain_b / "hosts.toml") == user_file);
    CHECK(listing(certs / domain_b) == std::vector<std::string>{"hosts.toml"});
    CHECK(fs::exists(certs / "registry.example.org" / "hosts.toml"));
}

TEST_CASE("install: files it cannot merge are left untouched with a warning", "[hosts][certs_dir]") {
    temp_dir t;
    const auto certs = t.path;
    const auto bad = certs / domain_b / "hosts.toml";
    const std::string broken = "server = \"https://registry.example.com:5000\"\n[host.\"https://m\"\n";
    write_text(bad, broken);
    const auto before = stamp_of(bad);

    const auto r = acp::hosts::install(certs, {domain_a, domain_b}, listen);
    CHECK_FALSE(r.ok());
    REQUIRE(r.files.size() == 2);
    CHECK(r.files[0].what == action::create);  // the other domain is still written
    CHECK(r.files[1].what == action::skip);
    CHECK(r.files[1].reason == bad.string() +
                                   ": not valid TOML (line 2, column 18: Error while parsing table header: expected "
                                   "']', saw '\\n'); left untouched");
    CHECK(read_text(bad) == broken);
    CHECK(stamp_of(bad) == before);
    CHECK(listing(certs / domain_b) == std::vector<std::string>{"hosts.toml"});

    SECTION("a symlinked hosts.toml is not replaced") {
        temp_dir t2;
        write_text(t2.path / "real.toml", "server = \"https://x\"\n");
        fs::create_directories(t2.path / domain_a);
        fs::create_symlink(t2.path / "real.toml", t2.path / domain_a / "hosts.toml");
        const auto s = acp::hosts::install(t2.path, {domain_a}, listen);
        CHECK(actions(s) == std::vector<action>{action::skip});
        CHECK(s.files[0].reason.find("symbolic link") != std::string::npos);
        CHECK(fs::is_symlink(t2.path / domain_a / "hosts.toml"));
    }
}

TEST_CASE("install: invalid domains and options are errors", "[hosts][certs_dir]") {
    temp_dir t;
    const auto r = acp::hosts::install(t.path, {"../escape", domain_a}, listen);
    CHECK_FALSE(r.ok());
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].find("'../escape'") != std::string::npos);
    CHECK(actions(r) == std::vector<action>{action::create});
    CHECK(listing(t.path) == std::vector<std::string>{domain_a});

    acp::hosts::render_options o;
    o.dial_timeout = "soon";
    const auto bad = acp::hosts::install(t.path, {domain_a}, listen, o);
    CHECK_FALSE(bad.ok());
    CHECK(bad.files.empty());
}

TEST_CASE("install: a read-only directory is an error and nothing is half-written", "[hosts][certs_dir]") {
    temp_dir t;
    fs::permissions(t.path, fs::perms::all, fs::perm_options::replace);  // reachable by the unprivileged child
    const auto certs = t.path / "certs.d";
    const auto file = certs / domain_b / "hosts.toml";
    write_text(file, user_file);
    fs::permissions(file,
                    fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
    const auto ro = fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read | fs::perms::group_exec |
                    fs::perms::others_read | fs::perms::others_exec;
    fs::permissions(certs / domain_b, ro, fs::perm_options::replace);
    fs::permissions(certs, ro, fs::perm_options::replace);

    const auto out = run_unprivileged([&] {
        const auto r = acp::hosts::install(certs, {domain_a, domain_b}, listen);
        std::string s = r.ok() ? "ok\n" : "not ok\n";
        for (const auto& c : r.files) {
            s += std::string(acp::hosts::to_string(c.what)) + "|" + c.error + "\n";
        }
        return s;
    });
    CHECK(out == "not ok\ncreate|" + (certs / domain_a).string() + ": cannot create: Permission denied\nmerge|" +
                     (certs / domain_b).string() + ": cannot create a temporary file: Permission denied\n");
    CHECK(read_text(file) == user_file);
    CHECK(listing(certs) == std::vector<std::string>{domain_b});
    CHECK(listing(certs / domain_b) == std::vector<std::string>{"hosts.toml"});
}

TEST_CASE("remove: a file we created that gained user lines keeps them", "[hosts][certs_dir]") {
    temp_dir t;
    REQUIRE(acp::hosts::install(t.path, {domain_a}, listen).ok());
    const auto file = t.path / domain_a / "hosts.toml";
    write_text(file, read_text(file) + "[host.\"https://added.example.com\"]\n");
    const auto rm = acp::hosts::remove(t.path);
    CHECK(actions(rm) == std::vector<action>{action::strip});
    CHECK(read_text(file) == "[host.\"https://added.example.com\"]\n");
    CHECK(listing(t.path / domain_a) == std::vector<std::string>{"hosts.toml"});
}

TEST_CASE("config_domains: instances' domains then registries, without duplicates", "[hosts][certs_dir]") {
    acp::config::config cfg;
    acp::config::acr_instance a;
    a.domains = {domain_a, "demo-registry-vpc.cn-hangzhou.cr.aliyuncs.com"};
    cfg.acr_instances.push_back(a);
    acp::config::registry reg;
    reg.host = domain_b;
    cfg.registries.push_back(reg);
    reg.host = domain_a;
    cfg.registries.push_back(reg);
    CHECK(acp::hosts::config_domains(cfg) ==
          std::vector<std::string>{domain_a, "demo-registry-vpc.cn-hangzhou.cr.aliyuncs.com", domain_b});
}

TEST_CASE("a re-rendered user file (inline hosts) is still restored byte for byte", "[hosts][certs_dir]") {
    temp_dir t;
    const auto file = t.path / domain_b / "hosts.toml";
    const std::string inline_hosts =
        "# hosts as one inline table\nhost = { \"https://b.example.com\" = { capabilities = [\"pull\"] } }\n";
    write_text(file, inline_hosts);
    const auto r = acp::hosts::install(t.path, {domain_b}, listen);
    REQUIRE(r.ok());
    CHECK(actions(r) == std::vector<action>{action::merge});
    REQUIRE(r.files[0].notes.size() == 1);
    CHECK(r.files[0].notes[0].find("rewritten as standard [host.") != std::string::npos);
    CHECK(read_text(file).find("[host.\"https://b.example.com\"]") != std::string::npos);
    CHECK(actions(acp::hosts::install(t.path, {domain_b}, listen)) == std::vector<action>{action::unchanged});

    const auto rm = acp::hosts::remove(t.path);
    CHECK(actions(rm) == std::vector<action>{action::restore});
    CHECK(read_text(file) == inline_hosts);
}

TEST_CASE("remove keeps a directory it created once someone else put files in it", "[hosts][certs_dir]") {
    temp_dir t;
    REQUIRE(acp::hosts::install(t.path, {domain_a}, listen).ok());
    write_text(t.path / domain_a / "ca.crt", "added later");
    const auto rm = acp::hosts::remove(t.path);
    REQUIRE(rm.ok());
    CHECK(actions(rm) == std::vector<action>{action::remove});
    REQUIRE(rm.files[0].notes.size() == 1);
    CHECK(rm.files[0].notes[0] == (t.path / domain_a).string() + ": kept: Directory not empty");
    CHECK(listing(t.path / domain_a) == std::vector<std::string>{"ca.crt"});
}
