#include "tests/support/fake_alibaba.hpp"

#include "tokens/alibaba_http_client.hpp"

#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdexcept>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace acp::test {

namespace {

std::string python() {
    if (const char* p = std::getenv("ACP_PYTHON"); p != nullptr && *p != '\0') {
        return p;
    }
    for (const char* candidate : {"/usr/bin/python3", "/usr/local/bin/python3"}) {
        if (::access(candidate, X_OK) == 0) {
            return candidate;
        }
    }
    return {};
}

std::string script_path() {
    if (const char* root = std::getenv("ACP_SOURCE_ROOT"); root != nullptr && *root != '\0') {
        return std::string(root) + "/tests/support/fake_alibaba.py";
    }
    // Run by hand (not through meson test): the script sits next to this file.
    std::string here = __FILE__;
    return here.substr(0, here.rfind('/') + 1) + "fake_alibaba.py";
}

std::string read_line(int fd, std::chrono::milliseconds timeout) {
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            throw std::runtime_error("fake_alibaba.py did not announce its ports in time");
        }
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
            continue;
        }
        char c = 0;
        const auto n = ::read(fd, &c, 1);
        if (n <= 0) {
            throw std::runtime_error("fake_alibaba.py exited before announcing its ports");
        }
        if (c == '\n') {
            return line;
        }
        line.push_back(c);
    }
}

}  // namespace

fake_alibaba::fake_alibaba(const nlohmann::json& knobs) {
    const auto py = python();
    if (py.empty()) {
        std::fprintf(stderr, "SKIP: python3 not found (needed for tests/support/fake_alibaba.py)\n");
        std::exit(77);
    }
    int in_pipe[2];
    int out_pipe[2];
    if (::pipe2(in_pipe, O_CLOEXEC) != 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe failed");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
    const std::string script = script_path();
    const std::string arg = knobs.dump();
    std::vector<char*> argv{const_cast<char*>(py.c_str()), const_cast<char*>("-u"), const_cast<char*>(script.c_str()),
                            const_cast<char*>(arg.c_str()), nullptr};
    const int rc = posix_spawn(&pid_, py.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in_pipe[0]);
    ::close(out_pipe[1]);
    if (rc != 0) {
        ::close(in_pipe[1]);
        ::close(out_pipe[0]);
        throw std::runtime_error("cannot start fake_alibaba.py");
    }
    stdin_fd_ = in_pipe[1];
    try {
        const auto ports = nlohmann::json::parse(read_line(out_pipe[0], std::chrono::seconds(15)));
        imds_port_ = ports.at("imds").get<std::uint16_t>();
        sts_port_ = ports.at("sts").get<std::uint16_t>();
        acr_port_ = ports.at("acr").get<std::uint16_t>();
        control_port_ = ports.at("control").get<std::uint16_t>();
    } catch (...) {
        ::close(out_pipe[0]);
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
        ::close(stdin_fd_);
        throw;
    }
    ::close(out_pipe[0]);
}

fake_alibaba::~fake_alibaba() {
    if (pid_ > 0) {
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
    }
    if (stdin_fd_ >= 0) {
        ::close(stdin_fd_);
    }
}

nlohmann::json fake_alibaba::control(const std::string& method, const std::string& path, const nlohmann::json& body) {
    static thread_local auto client = tokens::make_curl_http_client();
    tokens::http_request req;
    req.method = method;
    req.url = url(control_port_) + path;
    req.body = method == "GET" ? std::string() : body.dump();
    req.headers = {{"Content-Type", "application/json"}};
    req.timeout = std::chrono::seconds(10);
    const auto out = client->perform(req);
    if (!out.response || out.response->status != 200) {
        throw std::runtime_error("fake_alibaba control " + path + " failed: " + out.error);
    }
    return nlohmann::json::parse(out.response->body);
}

void fake_alibaba::configure(const nlohmann::json& patch) {
    control("POST", "/config", patch);
}

void fake_alibaba::set_now(tokens::time_point t) {
    control("POST", "/now", {{"now_ms", tokens::to_epoch_ms(t)}});
}

void fake_alibaba::expire_imds_tokens() {
    control("POST", "/expire_imds_tokens", nlohmann::json::object());
}

void fake_alibaba::reset_requests() {
    control("POST", "/reset", nlohmann::json::object());
}

std::vector<nlohmann::json> fake_alibaba::requests() {
    const auto stats = control("GET", "/stats", nullptr);
    return stats.at("requests").get<std::vector<nlohmann::json>>();
}

std::vector<nlohmann::json> fake_alibaba::requests(std::string_view service, std::string_view action,
                                                   std::optional<int> status) {
    std::vector<nlohmann::json> out;
    for (auto& r : requests()) {
        if (r.value("service", "") == service && r.value("action", "") == action &&
            (!status || r.value("status", 0) == *status)) {
            out.push_back(std::move(r));
        }
    }
    return out;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return pred();
}

}  // namespace acp::test
