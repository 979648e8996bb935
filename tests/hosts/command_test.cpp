#include "hosts/command.hpp"

#include "hosts/certs_dir.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <pthread.h>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

constexpr const char* domain = "demo-registry.cn-hangzhou.cr.aliyuncs.com";

struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string tmpl = (fs::temp_directory_path() / "acp-hosts-cli-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
};

acp::config::config sample_config() {
    acp::config::config cfg;
    acp::config::acr_instance inst;
    inst.instance_id = "cri-abc";
    inst.domains = {domain};
    cfg.acr_instances.push_back(inst);
    return cfg;
}

struct run_result {
    int status;
    std::string out;
    std::string err;
};

run_result run(const std::vector<std::string>& args, const acp::config::config& cfg = sample_config(),
               const std::vector<std::string>& discovered = {}) {
    std::ostringstream out;
    std::ostringstream err;
    const int status = acp::hosts::run_hosts_command(args, cfg, discovered, out, err);
    return {status, out.str(), err.str()};
}

std::string read_text(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("hosts CLI: usage errors exit 2 and name the problem", "[hosts][cli]") {
    struct row {
        std::vector<std::string> args;
        std::string message;
    };
    const std::vector<row> rows = {
        {{}, "expected install, remove or print"},
        {{"instal"}, "unknown hosts command 'instal'"},
        {{"install", "--force"}, "unknown option '--force'"},
        {{"install", "extra"}, "unexpected argument 'extra'"},
        {{"install", "--certs-dir"}, "--certs-dir needs a directory"},
        {{"install", "--certs-dir="}, "--certs-dir needs a directory"},
        {{"install", "--dial-timeout", "fast"}, "--dial-timeout 'fast': expected a duration"},
        {{"remove", "--dial-timeout=1s"}, "--dial-timeout applies to install and print only"},
        {{"install", "--wait"}, "--wait applies to remove only"},
        {{"print", "--wait"}, "--wait applies to remove only"},
    };
    for (const auto& r : rows) {
        const auto res = run(r.args);
        INFO(res.err);
        CHECK(res.status == 2);
        CHECK(contains(res.err, "acr-credential-proxy hosts: " + r.message));
        CHECK(res.out.empty());
    }
    const auto help = run({"--help"});
    CHECK(help.status == 0);
    CHECK(help.out == acp::hosts::hosts_usage);
}

TEST_CASE("hosts CLI: print, install, install again, remove", "[hosts][cli]") {
    temp_dir t;
    const auto certs = (t.path / "certs.d").string();
    const auto file = certs + "/" + domain + "/hosts.toml";

    const auto printed = run({"print", "--certs-dir", certs, "--dial-timeout=250ms"});
    CHECK(printed.status == 0);
    CHECK(printed.err.empty());
    const auto header = "==> " + file + ": create (new directory " + certs + "/" + domain + ") <==\n";
    REQUIRE(printed.out.substr(0, header.size()) == header);
    const auto shown = printed.out.substr(header.size());
    CHECK(contains(shown, "  dial_timeout = \"250ms\"\n"));
    CHECK_FALSE(fs::exists(certs));

    const auto installed = run({"install", "--certs-dir=" + certs, "--dial-timeout", "250ms"});
    CHECK(installed.status == 0);
    CHECK(installed.err.empty());
    CHECK(installed.out == "created " + file + " (new directory " + certs + "/" + domain +
                               ")\nhosts install: 1 written, "
                               "0 unchanged, 0 undone, 0 left untouched, 0 failed (" +
                               certs + ")\n");
    CHECK(read_text(file) == shown);

    const auto again = run({"install", "--certs-dir", certs, "--dial-timeout", "250ms"});
    CHECK(again.status == 0);
    CHECK(contains(again.out, "unchanged " + file + "\n"));

    const auto removed = run({"remove", "--certs-dir", certs});
    CHECK(removed.status == 0);
    CHECK(removed.out == "removed " + file +
                             "\nhosts remove: 0 written, 0 unchanged, "
                             "1 undone, 0 left untouched, 0 failed (" +
                             certs + ")\n");
    CHECK(fs::is_empty(certs));
}

TEST_CASE("hosts CLI: a file left untouched exits 1 with a warning naming it", "[hosts][cli]") {
    temp_dir t;
    const auto dir = t.path / domain;
    fs::create_directories(dir);
    std::ofstream(dir / "hosts.toml") << "server = \"https://x\"\nserver = \"https://y\"\n";
    const auto res = run({"install", "--certs-dir", t.path.string()});
    CHECK(res.status == 1);
    CHECK(contains(res.err, "warning: " + (dir / "hosts.toml").string() + ": not valid TOML (line 2, column "));
    CHECK(contains(res.err, "; left untouched\n"));
    CHECK(contains(res.out, "1 left untouched"));
}

TEST_CASE("hosts CLI: domains come from the config and from discovery", "[hosts][cli]") {
    temp_dir t;
    auto cfg = sample_config();
    acp::config::registry reg;
    reg.host = "registry.example.com:5000";
    cfg.registries.push_back(reg);
    cfg.listen = {"::1", 15005};
    const auto res =
        run({"install", "--certs-dir", t.path.string()}, cfg, {"crpi-x.cn-hangzhou.personal.cr.aliyuncs.com"});
    CHECK(res.status == 0);
    for (const auto* d : {domain, "registry.example.com:5000", "crpi-x.cn-hangzhou.personal.cr.aliyuncs.com"}) {
        INFO(d);
        CHECK(contains(read_text(t.path / d / "hosts.toml"), "[host.\"http://[::1]:15005\"]"));
    }

    acp::config::config none;
    acp::config::acr_instance discover_only;
    discover_only.instance_id = "cri-discovered";
    none.acr_instances.push_back(discover_only);
    const auto empty = run({"print", "--certs-dir", (t.path / "empty").string()}, none);
    CHECK(contains(empty.err, "ACR instance 'cri-discovered' lists no domains"));
    CHECK(contains(empty.err, "names no registry domain"));
}

namespace {

// Blocks `sig` in the calling thread for the scope (a test that raises a
// signal at itself must not let the default action end the test runner).
class blocked_signal {
public:
    explicit blocked_signal(int sig) {
        ::sigemptyset(&set_);
        ::sigaddset(&set_, sig);
        REQUIRE(::pthread_sigmask(SIG_BLOCK, &set_, &old_) == 0);
    }
    ~blocked_signal() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
    blocked_signal(const blocked_signal&) = delete;
    blocked_signal& operator=(const blocked_signal&) = delete;

    [[nodiscard]] bool pending() const {
        sigset_t p;
        ::sigemptyset(&p);
        ::sigpending(&p);
        for (int s = 1; s < NSIG; ++s) {
            if (::sigismember(&set_, s) == 1 && ::sigismember(&p, s) == 1) {
                return true;
            }
        }
        return false;
    }

private:
    sigset_t set_{};
    sigset_t old_{};
};

std::string installed_file(const std::string& certs) {
    REQUIRE(run({"install", "--certs-dir", certs}).status == 0);
    return certs + "/" + domain + "/hosts.toml";
}

}  // namespace

TEST_CASE("hosts CLI: remove --wait undoes everything even when SIGTERM is already pending, then exits 0",
          "[hosts][cli][wait]") {
    temp_dir t;
    const auto certs = (t.path / "certs.d").string();
    const auto file = installed_file(certs);

    // The DaemonSet's pod can be deleted while files are being restored: the
    // signal must wait until they all are, then end the wait.
    const blocked_signal guard(SIGTERM);
    REQUIRE(::pthread_kill(::pthread_self(), SIGTERM) == 0);
    REQUIRE(guard.pending());
    const auto res = run({"remove", "--certs-dir", certs, "--wait"});
    INFO(res.out << res.err);
    CHECK(res.status == 0);
    CHECK_FALSE(fs::exists(file));
    CHECK(fs::is_empty(certs));
    CHECK(res.out ==
          "removed " + file + "\nhosts remove: 0 written, 0 unchanged, 1 undone, 0 left untouched, 0 failed (" + certs +
              ")\nhosts remove: done; waiting for SIGTERM (--wait)\nhosts remove: SIGTERM received, exiting\n");
    CHECK(res.err.empty());
    CHECK_FALSE(guard.pending());  // taken by the wait, not left behind
}

TEST_CASE("hosts CLI: remove --wait stays running until a signal arrives", "[hosts][cli][wait]") {
    temp_dir t;
    const auto certs = (t.path / "certs.d").string();
    const auto file = installed_file(certs);

    std::atomic<bool> returned{false};
    run_result res{};
    std::thread waiter([&] {
        res = run({"remove", "--certs-dir", certs, "--wait"});
        returned = true;
    });
    // The file goes before the wait starts; signals are blocked in that thread from before it goes.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (fs::exists(file) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
    }
    CHECK_FALSE(fs::exists(file));
    // Still running after the files are gone; a wait that returned on its own would usually have by now.
    for (int i = 0; i < 1000 && !returned; ++i) {
        std::this_thread::yield();
    }
    CHECK_FALSE(returned);
    REQUIRE(::pthread_kill(waiter.native_handle(), SIGINT) == 0);
    waiter.join();
    CHECK(returned);
    CHECK(res.status == 0);
    CHECK(contains(res.out,
                   "hosts remove: done; waiting for SIGTERM (--wait)\nhosts remove: SIGINT received, exiting\n"));
}

TEST_CASE("hosts CLI: remove --wait exits 1 at once when something could not be undone", "[hosts][cli][wait]") {
    temp_dir t;
    const auto certs = (t.path / "certs.d").string();
    const auto file = installed_file(certs);
    // Our file, replaced by someone with a symbolic link: left untouched, so the pod must restart and retry.
    fs::remove(file);
    fs::create_symlink("elsewhere.toml", file);

    const auto res = run({"remove", "--certs-dir", certs, "--wait"});
    INFO(res.out << res.err);
    CHECK(res.status == 1);
    CHECK(fs::is_symlink(file));
    CHECK(contains(res.out, "1 left untouched"));
    CHECK_FALSE(contains(res.out, "waiting for SIGTERM"));
    CHECK(contains(res.err, "hosts remove: not everything was undone; exiting without --wait so it is tried again\n"));
}
