#include "hosts/command.hpp"

#include "hosts/certs_dir.hpp"

#include <csignal>
#include <cstring>
#include <optional>
#include <pthread.h>

namespace acp::hosts {

namespace {

constexpr int exit_ok = 0;
constexpr int exit_partial = 1;
constexpr int exit_usage = 2;

struct hosts_args {
    std::string verb;
    std::string certs_dir{default_certs_dir};
    std::optional<std::string> dial_timeout;
    bool wait = false;
    bool help = false;
};

// Returns an error message, or nullopt when `a` is filled in.
std::optional<std::string> parse(const std::vector<std::string>& args, hosts_args& a) {
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        auto value_of = [&](std::string_view flag) -> std::optional<std::optional<std::string>> {
            if (arg == flag) {
                if (i + 1 >= args.size()) {
                    return std::optional<std::string>{};
                }
                return std::optional<std::string>{args[++i]};
            }
            if (arg.size() > flag.size() && arg.compare(0, flag.size(), flag) == 0 && arg[flag.size()] == '=') {
                return std::optional<std::string>{arg.substr(flag.size() + 1)};
            }
            return std::nullopt;  // not this flag
        };
        if (arg == "-h" || arg == "--help" || arg == "help") {
            a.help = true;
        } else if (arg == "--wait") {
            a.wait = true;
        } else if (auto v = value_of("--certs-dir")) {
            if (!*v || (*v)->empty()) {
                return "--certs-dir needs a directory";
            }
            a.certs_dir = **v;
        } else if (auto d = value_of("--dial-timeout")) {
            if (!*d || (*d)->empty()) {
                return "--dial-timeout needs a duration (e.g. 200ms)";
            }
            a.dial_timeout = **d;
        } else if (!arg.empty() && arg[0] == '-') {
            return "unknown option '" + arg + "'";
        } else if (a.verb.empty()) {
            a.verb = arg;
        } else {
            return "unexpected argument '" + arg + "'";
        }
    }
    if (a.help) {
        return std::nullopt;
    }
    if (a.verb != "install" && a.verb != "remove" && a.verb != "print") {
        return a.verb.empty() ? "expected install, remove or print" : "unknown hosts command '" + a.verb + "'";
    }
    if (a.dial_timeout && a.verb == "remove") {
        return "--dial-timeout applies to install and print only";
    }
    if (a.wait && a.verb != "remove") {
        return "--wait applies to remove only";
    }
    if (a.dial_timeout && !is_go_duration(*a.dial_timeout)) {
        return "--dial-timeout '" + *a.dial_timeout + "': expected a duration such as 200ms, 2s or 1m30s";
    }
    return std::nullopt;
}

std::string_view past_tense(action a) {
    switch (a) {
        case action::create:
            return "created";
        case action::merge:
            return "merged";
        case action::update:
            return "updated";
        case action::unchanged:
            return "unchanged";
        case action::restore:
            return "restored";
        case action::strip:
            return "stripped";
        case action::remove:
            return "removed";
        case action::skip:
            return "left untouched";
    }
    return "";
}

std::string detail(const file_change& c, const std::filesystem::path& certs_dir, bool installing) {
    std::string d;
    const auto dir = certs_dir / c.domain;
    if (c.what == action::create && c.create_dir) {
        d = "new directory " + dir.string();
    } else if (c.what == action::merge) {
        d = "original saved as " + (dir / std::string(backup_file_name)).string();
    } else if (c.what == action::restore) {
        d = "from " + (dir / std::string(backup_file_name)).string();
    }
    if (installing && !c.configured && c.what != action::skip) {
        d += std::string(d.empty() ? "" : "; ") + "domain no longer served";
    }
    return d.empty() ? d : " (" + d + ")";
}

void print_warnings(const report& r, std::ostream& err) {
    for (const auto& e : r.errors) {
        err << "error: " << e << "\n";
    }
    for (const auto& c : r.files) {
        for (const auto& n : c.notes) {
            err << "warning: " << n << "\n";
        }
        if (c.what == action::skip) {
            err << "warning: " << c.reason << "\n";
        }
        if (!c.error.empty()) {
            err << "error: " << c.error << "\n";
        }
    }
}

int print_plan(const report& r, std::ostream& out, std::ostream& err) {
    for (const auto& c : r.files) {
        out << "==> " << c.path.string() << ": " << to_string(c.what) << detail(c, r.certs_dir, true) << " <==\n";
        if (c.what == action::remove || c.what == action::skip) {
            continue;
        }
        out << c.content;
        if (!c.content.empty() && c.content.back() != '\n') {
            out << "\n(no newline at end of file)\n";
        }
    }
    if (r.files.empty()) {
        out << "nothing to do under " << r.certs_dir.string() << "\n";
    }
    print_warnings(r, err);
    return r.ok() ? exit_ok : exit_partial;
}

int print_applied(std::string_view verb, const report& r, std::ostream& out, std::ostream& err) {
    int written = 0;
    int unchanged = 0;
    int undone = 0;
    int untouched = 0;
    int failed = 0;
    for (const auto& c : r.files) {
        if (!c.error.empty()) {
            ++failed;
            continue;
        }
        out << past_tense(c.what) << " " << c.path.string() << detail(c, r.certs_dir, verb == "install") << "\n";
        switch (c.what) {
            case action::create:
            case action::merge:
            case action::update:
                ++written;
                break;
            case action::unchanged:
                ++unchanged;
                break;
            case action::skip:
                ++untouched;
                break;
            default:
                ++undone;
                break;
        }
    }
    print_warnings(r, err);
    out << "hosts " << verb << ": " << written << " written, " << unchanged << " unchanged, " << undone << " undone, "
        << untouched << " left untouched, " << failed << " failed (" << r.certs_dir.string() << ")\n";
    return r.ok() ? exit_ok : exit_partial;
}

// Blocks SIGTERM and SIGINT in the calling thread for its lifetime, so one that
// arrives while `remove` restores files stays pending instead of killing the
// process half-way; wait() then takes it. The old mask comes back at the end.
class termination_signals {
public:
    termination_signals() {
        ::sigemptyset(&set_);
        ::sigaddset(&set_, SIGTERM);
        ::sigaddset(&set_, SIGINT);
        blocked_ = ::pthread_sigmask(SIG_BLOCK, &set_, &old_) == 0;
    }
    ~termination_signals() {
        if (blocked_) {
            drop_pending();  // unblocking a pending SIGTERM would kill us: the caller chose to return
            ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
        }
    }
    termination_signals(const termination_signals&) = delete;
    termination_signals& operator=(const termination_signals&) = delete;

    /// The signal that arrived, or an error message.
    [[nodiscard]] std::optional<std::string> wait(int& signal) const {
        if (!blocked_) {
            return "cannot block SIGTERM/SIGINT";
        }
        if (const int rc = ::sigwait(&set_, &signal); rc != 0) {
            return std::string("sigwait failed: ") + std::strerror(rc);
        }
        return std::nullopt;
    }

private:
    void drop_pending() const {
        const timespec now{};
        while (::sigtimedwait(&set_, nullptr, &now) > 0) {
        }
    }

    sigset_t set_{};
    sigset_t old_{};
    bool blocked_ = false;
};

int remove_and_wait(const hosts_args& a, std::ostream& out, std::ostream& err) {
    const termination_signals signals;
    const int status = print_applied(a.verb, remove(a.certs_dir), out, err);
    if (status != exit_ok) {
        err << "hosts remove: not everything was undone; exiting without --wait so it is tried again\n";
        return status;
    }
    out << "hosts remove: done; waiting for SIGTERM (--wait)" << std::endl;
    int signal = 0;
    if (auto e = signals.wait(signal)) {
        err << "hosts remove: " << *e << "\n";
        return exit_partial;
    }
    out << "hosts remove: " << (signal == SIGINT ? "SIGINT" : "SIGTERM") << " received, exiting" << std::endl;
    return exit_ok;
}

}  // namespace

int run_hosts_command(const std::vector<std::string>& args, const config::config& cfg, std::ostream& out,
                      std::ostream& err) {
    return run_hosts_command(args, cfg, {}, out, err);
}

int run_hosts_command(const std::vector<std::string>& args, const config::config& cfg,
                      const std::vector<std::string>& discovered_domains, std::ostream& out, std::ostream& err) {
    hosts_args a;
    if (auto e = parse(args, a)) {
        err << "acr-credential-proxy hosts: " << *e << "\nRun 'acr-credential-proxy hosts --help' for usage.\n";
        return exit_usage;
    }
    if (a.help) {
        out << hosts_usage;
        return exit_ok;
    }
    if (a.verb == "remove") {
        return a.wait ? remove_and_wait(a, out, err) : print_applied(a.verb, remove(a.certs_dir), out, err);
    }
    auto domains = config_domains(cfg);
    domains.insert(domains.end(), discovered_domains.begin(), discovered_domains.end());
    for (const auto& inst : cfg.acr_instances) {
        if (inst.domains.empty() && discovered_domains.empty()) {
            err << "warning: ACR instance '" << inst.instance_id
                << "' lists no domains; its discovered domains are not written by this command\n";
        }
    }
    if (domains.empty()) {
        err << "warning: the configuration names no registry domain (acrInstances[].domains, registries[].host)\n";
    }
    render_options opts;
    opts.dial_timeout = a.dial_timeout;
    if (a.verb == "print") {
        return print_plan(plan(a.certs_dir, domains, cfg.listen, opts), out, err);
    }
    return print_applied(a.verb, install(a.certs_dir, domains, cfg.listen, opts), out, err);
}

}  // namespace acp::hosts
