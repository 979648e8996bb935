// acr-credential-proxy: command-line entry point. Parses arguments, loads the
// configuration and hands over to the subcommand. Exceptions stop here.
#include "acp_version.hpp"
#include "config/loader.hpp"
#include "config/logging.hpp"
#include "hosts/command.hpp"
#include "hosts/hosts_toml.hpp"
#include "proxy/doctor.hpp"
#include "proxy/serve.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

constexpr int exit_usage = 2;  // also: invalid configuration

constexpr std::string_view usage_text = R"(acr-credential-proxy — node-local registry auth proxy for containerd

Usage:
  acr-credential-proxy serve        (--config FILE | --acr-configuration DIR) [options]
                                    [--certs-dir DIR [--dial-timeout DURATION]] [--reuse-port]
                                    [--kubeconfig FILE [--kube-context NAME]] [--node-name NAME]
  acr-credential-proxy check-config (--config FILE | --acr-configuration DIR) [options]
  acr-credential-proxy hosts (install | print) (--config FILE | --acr-configuration DIR) [--certs-dir DIR]
                             [--dial-timeout DURATION]
  acr-credential-proxy hosts remove [--certs-dir DIR] [--wait]
  acr-credential-proxy doctor       (--config FILE | --acr-configuration DIR) [options]
                                    [--certs-dir DIR] [--containerd-config FILE]
                                    [--image REF] [--timeout DURATION]
                                    [--kubeconfig FILE [--kube-context NAME]] [--node-name NAME]
  acr-credential-proxy version
  acr-credential-proxy --help

Commands:
  serve          Run the proxy: the registry mirror containerd talks to (listen) and
                 the admin endpoints /healthz /readyz /metrics (adminListen).
                 SIGHUP or a change of the config file/directory reloads; a bad new
                 config is rejected and the old one keeps serving. SIGTERM drains
                 in-flight transfers (timeouts.shutdownGrace), then exits 0.
  check-config   Load and validate the configuration, print it normalized with
                 secrets redacted, and exit 0; or print every error and exit 2.
  hosts          Point containerd at the proxy: write, show or undo
                 <certs-dir>/<domain>/hosts.toml for every configured registry domain,
                 merging with (never wiping) files that are already there.
                 See 'acr-credential-proxy hosts --help'.
  doctor         Check this node end to end and print a checklist (✓ ok, ✗ failed,
                 ! warning), each ✗ with the fix: the configuration; the Alibaba
                 credential source and its expiry; per ACR instance GetAuthorizationToken
                 and ListInstanceEndpoint (configured vs discovered domains); per domain
                 DNS, TLS and the token realm, as the proxy dials them; each domain's
                 hosts.toml; containerd's config_path; the running proxy's /readyz; with
                 --image, whether its registry is served and a manifest HEAD through the
                 proxy. Exit 0 when nothing failed (warnings allowed), 1 otherwise.
                 See docs/doctor.md.
  version        Print the version.

Configuration sources (at least one; with both, the file is the base and the
ConfigMap adds its ACR instances and pull scope):
  --config FILE             our YAML format (see config/example.yaml)
  --acr-configuration DIR   a mounted `acr-configuration` ConfigMap (one file per
                            key), as read by Alibaba's aliyun-acr-credential-helper

Options:
  --listen HOST:PORT        override `listen` (the data listener)
  --admin-listen HOST:PORT  override `adminListen`
  --certs-dir DIR           serve: keep DIR/<domain>/hosts.toml in step with every
                            domain served, configured and discovered (as `hosts install`
                            does), at start and after each reload; files stay when the
                            proxy exits (undo with `hosts remove`)
                            doctor: where the hosts.toml files should be
                            (default /etc/containerd/certs.d)
  --dial-timeout DURATION   serve --certs-dir: also write dial_timeout (containerd >= 2.1)
  --containerd-config FILE  doctor: containerd's config (default /etc/containerd/config.toml)
  --image REF               doctor: also check this image (host[:port]/path[:tag][@digest]):
                            its registry is served, and its manifest answers through the proxy
  --timeout DURATION        doctor: bound for each network call (default 5s)
  --reuse-port              serve: bind with SO_REUSEPORT and take new connections over
                            from a proxy already listening on the same addresses (also
                            started with --reuse-port), which then drains and exits on
                            SIGTERM without refusing or resetting a connection: the
                            DaemonSet's rolling update (maxSurge). Under systemd, socket
                            activation (acr-credential-proxy.socket) keeps the listening
                            socket across restarts instead.
  --kubeconfig FILE         serve, doctor: reach the Kubernetes API server with this
                            kubeconfig to watch this node's pods (the pull scope) —
                            for bare nodes; in a pod the default is in-cluster access
                            (KUBERNETES_SERVICE_HOST and the mounted ServiceAccount token)
  --kube-context NAME       the kubeconfig context (default: its current-context)
  --node-name NAME          the node whose pods are watched (default: $NODE_NAME, set
                            from spec.nodeName by the DaemonSet, else the host name)
  -h, --help                this text

Pull scope: with a `scope` section in --config, or always with --acr-configuration
(the add-on's watch-namespace / service-account, defaults `default`), credentials
go only to images that a pod on this node references, in a watched namespace and
with an allowed ServiceAccount; anything else gets a 404 so containerd falls back
to the registry itself. serve lists this node's pods before it listens and exits 1
when the API server cannot be reached (never serving unscoped by accident). With
no scope configured it serves every pod and says so once. See docs/scope.md.

Under systemd (Type=notify) serve sends READY=1 once it listens with the
configuration loaded, and WATCHDOG=1 when WatchdogSec is set.
Secrets are read from files or the environment only, never from arguments.
Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.
)";

struct cli_args {
    std::string command;
    std::vector<std::string> rest;  // `hosts`: the words after it that main does not consume
    acp::config::load_options load;
    std::optional<std::string> listen;
    std::optional<std::string> admin_listen;
    std::optional<std::string> certs_dir;     // serve
    std::optional<std::string> dial_timeout;  // serve
    bool reuse_port = false;                  // serve
    std::optional<std::string> kubeconfig;    // serve, doctor
    std::optional<std::string> kube_context;  // serve, doctor
    std::optional<std::string> node_name;     // serve, doctor

    std::optional<std::string> containerd_config;  // doctor
    std::optional<std::string> image;              // doctor
    std::optional<std::string> timeout;            // doctor
};

int usage_error(const std::string& message) {
    std::fprintf(stderr, "acr-credential-proxy: %s\nRun 'acr-credential-proxy --help' for usage.\n", message.c_str());
    return exit_usage;
}

// Returns an exit status when parsing ends the program, nullopt to go on.
std::optional<int> parse_args(const std::vector<std::string_view>& args, cli_args& out) {
    for (std::size_t i = 0; i < args.size(); ++i) {
        const auto arg = args[i];
        auto value_of = [&](std::string_view flag) -> std::optional<std::string> {
            if (arg.size() > flag.size() && arg.substr(0, flag.size()) == flag && arg[flag.size()] == '=') {
                return std::string(arg.substr(flag.size() + 1));
            }
            if (arg == flag) {
                if (i + 1 >= args.size()) {
                    return std::nullopt;
                }
                return std::string(args[++i]);
            }
            return std::nullopt;
        };
        auto is_flag = [&](std::string_view flag) {
            return arg == flag ||
                   (arg.size() > flag.size() && arg.substr(0, flag.size() + 1) == std::string(flag) + "=");
        };
        if (out.command == "hosts" && (arg == "-h" || arg == "--help")) {
            out.rest.emplace_back(arg);
            continue;
        }
        if (arg == "-h" || arg == "--help" || arg == "help") {
            std::fwrite(usage_text.data(), 1, usage_text.size(), stdout);
            return 0;
        }
        if (is_flag("--config") || is_flag("--acr-configuration") || is_flag("--listen") || is_flag("--admin-listen")) {
            const auto flag = arg.substr(0, arg.find('='));
            auto v = value_of(flag);
            if (!v || v->empty()) {
                return usage_error(std::string(flag) + " needs a value");
            }
            if (flag == "--config") {
                out.load.config_file = *v;
            } else if (flag == "--acr-configuration") {
                out.load.acr_configuration_dir = *v;
            } else if (flag == "--listen") {
                out.listen = *v;
            } else {
                out.admin_listen = *v;
            }
            continue;
        }
        if (out.command == "hosts") {
            out.rest.emplace_back(arg);  // install|print|remove and their own options
            continue;
        }
        if (arg == "--reuse-port") {
            out.reuse_port = true;
            continue;
        }
        // Options with a value, each stored as given (checked later, per command).
        const std::pair<std::string_view, std::optional<std::string>*> value_flags[] = {
            {"--certs-dir", &out.certs_dir},   {"--dial-timeout", &out.dial_timeout},
            {"--kubeconfig", &out.kubeconfig}, {"--kube-context", &out.kube_context},
            {"--node-name", &out.node_name},   {"--containerd-config", &out.containerd_config},
            {"--image", &out.image},           {"--timeout", &out.timeout},
        };
        const auto* match = std::find_if(std::begin(value_flags), std::end(value_flags),
                                         [&](const auto& f) { return is_flag(f.first); });
        if (match != std::end(value_flags)) {
            auto v = value_of(match->first);
            if (!v || v->empty()) {
                return usage_error(std::string(match->first) + " needs a value");
            }
            *match->second = *v;
            continue;
        }
        if (!arg.empty() && arg[0] == '-') {
            return usage_error("unknown option '" + std::string(arg) + "'");
        }
        if (!out.command.empty()) {
            return usage_error("unexpected argument '" + std::string(arg) + "'");
        }
        out.command = std::string(arg);
    }
    if (out.command.empty()) {
        std::fwrite(usage_text.data(), 1, usage_text.size(), stderr);
        return exit_usage;
    }
    return std::nullopt;
}

void print_errors(const acp::config::config_error& e) {
    for (const auto& w : e.warnings()) {
        std::fprintf(stderr, "warning: %s\n", w.str().c_str());
    }
    for (const auto& d : e.errors()) {
        std::fprintf(stderr, "error: %s\n", d.str().c_str());
    }
    std::fprintf(stderr, "acr-credential-proxy: configuration invalid (%zu error%s); nothing started\n",
                 e.errors().size(), e.errors().size() == 1 ? "" : "s");
}

std::optional<acp::config::listen_address> parse_listen_flag(const std::optional<std::string>& v, const char* flag,
                                                             int& status) {
    if (!v) {
        return std::nullopt;
    }
    auto parsed = acp::config::parse_listen_address(*v);
    if (!parsed) {
        status = usage_error(std::string(flag) + " '" + *v +
                             "': expected HOST:PORT with an IP literal host "
                             "(e.g. 127.0.0.1:5005 or [::1]:5005)");
    }
    return parsed;
}

acp::config::kube_access_options kube_options(const cli_args& args) {
    acp::config::kube_access_options o;
    if (args.kubeconfig) {
        o.kubeconfig = *args.kubeconfig;
    }
    o.context = args.kube_context.value_or("");
    if (const char* h = std::getenv("KUBERNETES_SERVICE_HOST"); h != nullptr && *h != '\0') {
        o.service_host = h;
    }
    if (const char* p = std::getenv("KUBERNETES_SERVICE_PORT"); p != nullptr && *p != '\0') {
        o.service_port = p;
    }
    return o;
}

// `doctor` loads the configuration itself: an invalid one is its first ✗.
int run_doctor(const cli_args& args, const std::optional<acp::config::listen_address>& listen,
               const std::optional<acp::config::listen_address>& admin_listen) {
    acp::proxy::doctor_options opts;
    opts.load = args.load;
    opts.listen = listen;
    opts.admin_listen = admin_listen;
    if (args.certs_dir) {
        opts.certs_dir = *args.certs_dir;
    }
    if (args.containerd_config) {
        opts.containerd_config = *args.containerd_config;
    }
    opts.image = args.image;
    opts.kube = kube_options(args);
    opts.node_name = args.node_name;
    if (args.timeout) {
        const auto t = acp::config::parse_duration(*args.timeout);
        if (!t || t->count() <= 0) {
            return usage_error("--timeout '" + *args.timeout + "': expected a duration above 0 such as 500ms or 5s");
        }
        opts.timeout = *t;
    }
    // Diagnostics go to stdout as the checklist; only warnings and errors are logged (stderr).
    acp::logging::setup({.level = "warn", .format = acp::config::log_format::text});
    return acp::proxy::run_doctor(opts, std::cout);
}

int run(cli_args args) {
    if (args.command == "version") {
        std::printf("acr-credential-proxy %s\n", ACP_VERSION);
        return 0;
    }
    if (args.command != "serve" && args.command != "check-config" && args.command != "hosts" &&
        args.command != "doctor") {
        return usage_error("unknown command '" + args.command + "'");
    }
    if (args.command != "doctor" && (args.containerd_config || args.image || args.timeout)) {
        return usage_error(
            std::string(args.containerd_config ? "--containerd-config" : (args.image ? "--image" : "--timeout")) +
            " applies to doctor only");
    }
    if (args.command != "serve" && args.command != "doctor" &&
        (args.kubeconfig || args.kube_context || args.node_name)) {
        return usage_error(
            std::string(args.kubeconfig ? "--kubeconfig" : (args.kube_context ? "--kube-context" : "--node-name")) +
            " applies to serve and doctor only");
    }
    if (args.kube_context && !args.kubeconfig) {
        return usage_error("--kube-context needs --kubeconfig");
    }
    if (args.command == "doctor" && args.dial_timeout) {
        return usage_error("--dial-timeout applies to serve and hosts only");
    }
    if (args.command == "hosts") {
        // `--certs-dir DIR hosts install`: options before the command belong to it too.
        auto& rest = args.rest;
        if (args.dial_timeout) {
            rest.insert(rest.begin() + (rest.empty() ? 0 : 1), {"--dial-timeout", *args.dial_timeout});
        }
        if (args.certs_dir) {
            rest.insert(rest.begin() + (rest.empty() ? 0 : 1), {"--certs-dir", *args.certs_dir});
        }
    } else if (args.command != "serve" && args.reuse_port) {
        return usage_error("--reuse-port applies to serve only");
    } else if (args.command != "serve" && args.command != "doctor" && (args.certs_dir || args.dial_timeout)) {
        return usage_error(std::string(args.certs_dir ? "--certs-dir" : "--dial-timeout") +
                           " applies to serve and hosts only");
    }
    if (args.dial_timeout && !args.certs_dir && args.command == "serve") {
        return usage_error("--dial-timeout needs --certs-dir (it is written into the hosts.toml files)");
    }
    if (args.dial_timeout && !acp::hosts::is_go_duration(*args.dial_timeout)) {
        return usage_error("--dial-timeout '" + *args.dial_timeout +
                           "': expected a duration such as 200ms, 2s or 1m30s");
    }
    const bool hosts_without_config = args.command == "hosts" && (args.rest.empty() || args.rest[0] != "install") &&
                                      (args.rest.empty() || args.rest[0] != "print");
    if (hosts_without_config && args.load.config_file.empty() && args.load.acr_configuration_dir.empty()) {
        // `hosts remove` and `hosts --help` need no configuration.
        return acp::hosts::run_hosts_command(args.rest, acp::config::config{}, std::cout, std::cerr);
    }
    if (args.load.config_file.empty() && args.load.acr_configuration_dir.empty()) {
        return usage_error(args.command + " needs --config FILE or --acr-configuration DIR");
    }
    int status = 0;
    auto listen = parse_listen_flag(args.listen, "--listen", status);
    auto admin_listen = parse_listen_flag(args.admin_listen, "--admin-listen", status);
    if (status != 0) {
        return status;
    }
    if (args.command == "doctor") {
        return run_doctor(args, listen, admin_listen);
    }

    acp::config::load_result loaded;
    try {
        loaded = acp::config::load(args.load);
    } catch (const acp::config::config_error& e) {
        print_errors(e);
        return exit_usage;
    }
    auto cfg = std::make_shared<acp::config::config>(*loaded.cfg);
    if (listen) {
        cfg->listen = *listen;
    }
    if (admin_listen) {
        cfg->admin_listen = *admin_listen;
    }
    acp::logging::setup(cfg->log);
    for (const auto& w : loaded.warnings) {
        if (args.command == "check-config") {
            std::fprintf(stderr, "warning: %s\n", w.str().c_str());
        } else {
            acp::logging::logger("config")->warn("{}", w.str());
        }
    }

    if (args.command == "check-config") {
        std::cout << acp::config::render(*cfg);
        return 0;
    }
    if (args.command == "hosts") {
        return acp::hosts::run_hosts_command(args.rest, *cfg, std::cout, std::cerr);
    }
    return acp::proxy::serve(
        {.initial = cfg,
         .reload_from = args.load,
         .listen_override = listen,
         .admin_listen_override = admin_listen,
         .certs_dir = args.certs_dir ? std::optional<std::filesystem::path>(*args.certs_dir) : std::nullopt,
         .dial_timeout = args.dial_timeout,
         .reuse_port = args.reuse_port,
         .kube = kube_options(args),
         .node_name = args.node_name});
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string_view> args(argv + 1, argv + argc);
    cli_args parsed;
    if (auto done = parse_args(args, parsed)) {
        return *done;
    }
    try {
        return run(std::move(parsed));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "acr-credential-proxy: %s\n", e.what());
        return 1;
    }
}
