#include "config/kube_access.hpp"

#include "config/loader.hpp"
#include "config/values.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <system_error>
#include <unistd.h>
#include <utility>

// kubeconfig format: https://kubernetes.io/docs/reference/config-api/kubeconfig.v1/
// (client-go clientcmd/api/v1 types). In-cluster discovery follows client-go's
// rest.InClusterConfig.

namespace acp::config {
namespace {

constexpr std::size_t max_shown_names = 8;
constexpr std::size_t max_errors = 16;        // lines; the last says more were found
constexpr std::size_t max_error_chars = 400;  // per line

// A kubeconfig entry name for a key path: users[admin]. Odd names (long,
// control characters, brackets) fall back to the list index.
std::string entry_label(std::string_view list, const std::string& name, std::size_t index) {
    const bool plain = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u > 0x20 && u < 0x7f && c != '[' && c != ']';
    });
    return std::string(list) + "[" + (plain ? name : std::to_string(index)) + "]";
}

std::string node_kind(const YAML::Node& n) {
    switch (n.Type()) {
        case YAML::NodeType::Undefined:
        case YAML::NodeType::Null:
            return "nothing";
        case YAML::NodeType::Scalar:
            return "a string";
        case YAML::NodeType::Sequence:
            return "a list";
        case YAML::NodeType::Map:
            return "a mapping";
    }
    return "something else";
}

bool is_set(const YAML::Node& n) {
    return n.IsDefined() && !n.IsNull();
}

// Never throws: yaml-cpp's operator[] on a const node of another type throws.
YAML::Node member(const YAML::Node& map, std::string_view key) {
    if (!map.IsMap()) {
        return YAML::Node(YAML::NodeType::Undefined);
    }
    for (const auto& kv : map) {
        if (kv.first.IsScalar() && kv.first.Scalar() == key) {
            return kv.second;
        }
    }
    return YAML::Node(YAML::NodeType::Undefined);
}

bool has_control_or_space(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u <= 0x20 || u == 0x7f;
    });
}

bool has_control(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

class parser {
public:
    parser(const std::filesystem::path& base_dir, std::vector<std::string>& errors)
        : base_dir_(base_dir), errors_(errors) {}

    void error(const std::string& key, std::string_view message) {
        if (errors_.size() == max_errors) {
            errors_.back() = "and more problems (only the first " + std::to_string(max_errors - 1) + " are shown)";
            return;
        }
        if (errors_.size() > max_errors) {
            return;
        }
        auto line = key.empty() ? std::string(message) : key + ": " + std::string(message);
        if (line.size() > max_error_chars) {
            line.resize(max_error_chars - 3);
            line += "...";
        }
        errors_.push_back(std::move(line));
    }

    // A string value; nullopt when absent or null. Wrong types are errors
    // that never show the value (it may be a token).
    std::optional<std::string> string_at(const YAML::Node& map, std::string_view key, const std::string& path) {
        const auto n = member(map, key);
        if (!is_set(n)) {
            return std::nullopt;
        }
        if (!n.IsScalar()) {
            error(path + "." + std::string(key), "expected a string, got " + node_kind(n));
            return std::nullopt;
        }
        return n.Scalar();
    }

    std::optional<bool> bool_at(const YAML::Node& map, std::string_view key, const std::string& path) {
        const auto text = string_at(map, key, path);
        if (!text) {
            return std::nullopt;
        }
        // sigs.k8s.io/yaml (go-yaml v2) reads YAML 1.1 booleans.
        const auto v = to_lower(*text);
        if (v == "true" || v == "yes" || v == "on" || v == "y") {
            return true;
        }
        if (v == "false" || v == "no" || v == "off" || v == "n") {
            return false;
        }
        error(path + "." + std::string(key), "expected true or false, got " + quote(*text));
        return std::nullopt;
    }

    // A file path, resolved against the kubeconfig's directory as kubectl does.
    std::optional<std::string> path_at(const YAML::Node& map, std::string_view key, const std::string& path) {
        auto text = string_at(map, key, path);
        if (!text || text->empty()) {
            return std::nullopt;
        }
        if (has_control(*text)) {
            error(path + "." + std::string(key), "a file path with control characters");
            return std::nullopt;
        }
        std::filesystem::path p(*text);
        if (p.is_relative() && !base_dir_.empty()) {
            p = (base_dir_ / p).lexically_normal();
        }
        return p.string();
    }

    // A `*-data` field: base64 of PEM text (clientcmd's []byte fields).
    std::optional<std::string> pem_data_at(const YAML::Node& map, std::string_view key, const std::string& path) {
        const auto text = string_at(map, key, path);
        if (!text || text->empty()) {
            return std::nullopt;
        }
        const auto where = path + "." + std::string(key);
        auto decoded = base64_decode(*text);
        if (!decoded) {
            error(where, "not valid base64 (a *-data field holds the base64 of the PEM file)");
            return std::nullopt;
        }
        if (decoded->find("-----BEGIN ") == std::string::npos) {
            error(where, "decoded, it holds no PEM block (no -----BEGIN line)");
            return std::nullopt;
        }
        return decoded;
    }

    // RFC 4648 base64 with padding; line breaks and spaces are skipped
    // (Go's StdEncoding skips CR/LF; a pasted value may carry spaces too).
    static std::optional<std::string> base64_decode(std::string_view in) {
        std::string out;
        std::uint32_t acc = 0;
        int bits = 0;
        int pad = 0;
        std::size_t symbols = 0;
        for (const char c : in) {
            if (c == '\n' || c == '\r' || c == ' ' || c == '\t') {
                continue;
            }
            ++symbols;
            if (c == '=') {
                ++pad;
                continue;
            }
            if (pad > 0) {
                return std::nullopt;  // data after padding
            }
            int v = -1;
            if (c >= 'A' && c <= 'Z') {
                v = c - 'A';
            } else if (c >= 'a' && c <= 'z') {
                v = c - 'a' + 26;
            } else if (c >= '0' && c <= '9') {
                v = c - '0' + 52;
            } else if (c == '+') {
                v = 62;
            } else if (c == '/') {
                v = 63;
            } else {
                return std::nullopt;
            }
            acc = (acc << 6) | static_cast<std::uint32_t>(v);
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                out.push_back(static_cast<char>((acc >> bits) & 0xffU));
            }
        }
        if (symbols % 4 != 0 || pad > 2 || (pad > 0 && symbols == 0)) {
            return std::nullopt;
        }
        // The bits left over must be zero and match the padding (1 or 2 '=').
        if ((pad == 0 && bits != 0) || (pad == 1 && bits != 2) || (pad == 2 && bits != 4) ||
            (acc & ((1U << bits) - 1U)) != 0) {
            return std::nullopt;
        }
        return out;
    }

    // name -> (entry node, key path label), for clusters / contexts / users.
    struct entry {
        YAML::Node body;
        std::string label;
    };

    std::map<std::string, entry> entries(const YAML::Node& root, std::string_view list, std::string_view body_key) {
        std::map<std::string, entry> out;
        const auto n = member(root, list);
        if (!is_set(n)) {
            return out;
        }
        if (!n.IsSequence()) {
            error(std::string(list), "expected a list, got " + node_kind(n));
            return out;
        }
        std::size_t index = 0;
        for (const auto& item : n) {
            const auto at = std::string(list) + "[" + std::to_string(index) + "]";
            if (!item.IsMap()) {
                error(at, "expected a mapping with name and " + std::string(body_key) + ", got " + node_kind(item));
                ++index;
                continue;
            }
            const auto name = string_at(item, "name", at);
            if (!name || name->empty()) {
                error(at + ".name", "missing: every entry needs a name");
                ++index;
                continue;
            }
            const auto label = entry_label(list, *name, index);
            const auto body = member(item, body_key);
            if (is_set(body) && !body.IsMap()) {
                error(label + "." + std::string(body_key), "expected a mapping, got " + node_kind(body));
            } else if (!out.emplace(*name, entry{body, label}).second) {
                error(label, "a second entry named " + quote(*name) + "; expected each name once");
            }
            ++index;
        }
        return out;
    }

    static std::string names_of(const std::map<std::string, entry>& m) {
        if (m.empty()) {
            return "none";
        }
        std::string out;
        std::size_t shown = 0;
        for (const auto& [name, e] : m) {
            if (shown == max_shown_names) {
                out += ", and " + std::to_string(m.size() - shown) + " more";
                break;
            }
            out += (shown == 0 ? "" : ", ") + quote(name);
            ++shown;
        }
        return out;
    }

    void read_cluster(const entry& e, kube_access& a) {
        const auto path = e.label + ".cluster";
        const auto& c = e.body;
        const auto server = string_at(c, "server", path);
        if (!server || server->empty()) {
            error(path + ".server", "missing: the API server's URL (https://HOST:PORT)");
        } else {
            read_server(*server, path + ".server", a);
        }
        const auto ca_data = pem_data_at(c, "certificate-authority-data", path);
        const auto ca_file = path_at(c, "certificate-authority", path);
        if (ca_data) {
            a.ca_pem = *ca_data;  // clientcmd: the data wins over the file
        } else if (ca_file) {
            a.ca_file = *ca_file;
        }
        if (const auto insecure = bool_at(c, "insecure-skip-tls-verify", path); insecure && *insecure) {
            if (ca_data || ca_file) {
                error(path + ".insecure-skip-tls-verify",
                      "true together with certificate-authority(-data): choose one (kubectl refuses both too)");
            }
            a.insecure_skip_tls_verify = true;
        }
        if (const auto name = string_at(c, "tls-server-name", path); name && !name->empty()) {
            if (!normalize_host(*name) || name->find(':') != std::string::npos) {
                error(path + ".tls-server-name", "not a host name: " + quote(*name));
            } else {
                a.tls_server_name = to_lower(*name);
            }
        }
        if (const auto proxy = string_at(c, "proxy-url", path); proxy && !proxy->empty()) {
            error(path + ".proxy-url", "not supported: the proxy connects to the API server directly");
        }
    }

    void read_server(const std::string& text, const std::string& where, kube_access& a) {
        const auto sep = text.find("://");
        const auto authority_end = text.find('/', sep == std::string::npos ? 0 : sep + 3);
        if (sep != std::string::npos && text.substr(sep + 3, authority_end - sep - 3).find('@') != std::string::npos) {
            // Never echoed: user information may hold a password.
            error(where, "user information in the URL is not supported (give a token or a client certificate)");
            return;
        }
        const auto url = has_control(text) ? std::nullopt : parse_endpoint_url(text);
        if (!url) {
            error(where, "expected an http:// or https:// URL with a host, got " + quote(text));
            return;
        }
        auto path = url->path;
        while (!path.empty() && path.back() == '/') {
            path.pop_back();
        }
        const auto host = url->host.find(':') != std::string::npos ? "[" + url->host + "]" : url->host;
        a.server = url->scheme + "://" + host + ":" + std::to_string(url->port) + path;
    }

    void read_user(const entry& e, kube_access& a) {
        const auto path = e.label + ".user";
        const auto& u = e.body;
        const std::string needed =
            "the proxy needs a bearer token (token / tokenFile) or a client certificate "
            "(client-certificate / client-key)";
        bool refused = false;
        for (const std::string_view key : {"exec", "auth-provider"}) {
            if (is_set(member(u, key))) {
                error(path + "." + std::string(key), (key == "exec" ? "credential plugins" : "auth providers") +
                                                         std::string(" are not supported: ") + needed);
                refused = true;
            }
        }
        if (is_set(member(u, "username")) || is_set(member(u, "password"))) {
            error(path + (is_set(member(u, "username")) ? ".username" : ".password"),
                  "basic authentication (username / password) is not supported: " + needed);
            refused = true;
        }
        for (const std::string_view key : {"as", "as-uid", "as-groups", "as-user-extra"}) {
            if (is_set(member(u, key))) {
                error(path + "." + std::string(key), "impersonation is not supported: the proxy lists pods as itself");
                refused = true;
            }
        }

        if (auto token = string_at(u, "token", path); token && !token->empty()) {
            if (has_control_or_space(*token)) {
                error(path + ".token", "not a bearer token (expected visible ASCII without spaces)");
            } else {
                a.bearer_token = secret(std::move(*token));
            }
        }
        if (const auto file = path_at(u, "tokenFile", path)) {
            a.token_file = *file;
            a.bearer_token = secret();  // client-go: a token file wins (and is re-read)
        }
        if (const auto cert = pem_data_at(u, "client-certificate-data", path)) {
            a.client_cert_pem = *cert;
        } else if (const auto cert_file = path_at(u, "client-certificate", path)) {
            a.client_cert_file = *cert_file;
        }
        if (auto key = pem_data_at(u, "client-key-data", path)) {
            a.client_key_pem = secret(std::move(*key));
        } else if (const auto key_file = path_at(u, "client-key", path)) {
            a.client_key_file = *key_file;
        }
        const bool has_cert = !a.client_cert_pem.empty() || !a.client_cert_file.empty();
        const bool has_key = !a.client_key_pem.empty() || !a.client_key_file.empty();
        if (has_cert && !has_key) {
            error(path + ".client-key", "missing: client-certificate(-data) needs client-key(-data)");
        } else if (has_key && !has_cert) {
            error(path + ".client-certificate", "missing: client-key(-data) needs client-certificate(-data)");
        }
        if (!refused && !has_cert && !has_key && a.bearer_token.empty() && a.token_file.empty()) {
            error(path, "no credentials: " + needed);
        }
    }

    kubeconfig_result parse(std::string_view text, std::string_view wanted_context) {
        kubeconfig_result out;
        if (text.size() > max_kubeconfig_bytes) {
            error("", "larger than " + std::to_string(max_kubeconfig_bytes / 1024) + " KiB: not a kubeconfig");
            return out;
        }
        YAML::Node root;
        try {
            root = YAML::Load(std::string(text));
        } catch (const YAML::Exception& e) {
            auto message = std::string("not valid YAML or JSON");
            if (!e.mark.is_null()) {
                message += " at line " + std::to_string(e.mark.line + 1);
            }
            auto reason = e.msg.substr(0, 120);
            std::replace_if(
                reason.begin(), reason.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; },
                '?');
            error("", message + ": " + reason);
            return out;
        }
        if (!is_set(root)) {
            error("", "empty: expected a kubeconfig (clusters, contexts, users, current-context)");
            return out;
        }
        if (!root.IsMap()) {
            error("", "expected a kubeconfig mapping (clusters, contexts, users), got " + node_kind(root));
            return out;
        }
        if (const auto kind = string_at(root, "kind", ""); kind && *kind != "Config") {
            error("kind", "expected Config, got " + quote(*kind));
        }
        const auto clusters = entries(root, "clusters", "cluster");
        const auto contexts = entries(root, "contexts", "context");
        const auto users = entries(root, "users", "user");

        std::string context_name(wanted_context);
        std::string context_key = "--kube-context";
        if (context_name.empty()) {
            context_key = "current-context";
            if (const auto current = string_at(root, "current-context", ""); current) {
                context_name = *current;
            }
            if (context_name.empty()) {
                error("current-context", "not set and no --kube-context given (contexts: " + names_of(contexts) + ")");
                return out;
            }
        }
        const auto ctx = contexts.find(context_name);
        if (ctx == contexts.end()) {
            error(context_key,
                  "no context named " + quote(context_name) + " in contexts (have: " + names_of(contexts) + ")");
            return out;
        }
        const auto ctx_path = ctx->second.label + ".context";
        kube_access a;
        a.source = "kubeconfig (context " + quote(context_name) + ")";

        const auto cluster_name = string_at(ctx->second.body, "cluster", ctx_path);
        if (!cluster_name || cluster_name->empty()) {
            error(ctx_path + ".cluster", "missing: the context names no cluster");
        } else if (const auto c = clusters.find(*cluster_name); c == clusters.end()) {
            error(ctx_path + ".cluster",
                  "no cluster named " + quote(*cluster_name) + " in clusters (have: " + names_of(clusters) + ")");
        } else {
            read_cluster(c->second, a);
        }
        const auto user_name = string_at(ctx->second.body, "user", ctx_path);
        if (!user_name || user_name->empty()) {
            error(ctx_path + ".user",
                  "missing: the context names no user, and the proxy needs credentials to list pods "
                  "(a token or a client certificate)");
        } else if (const auto u = users.find(*user_name); u == users.end()) {
            error(ctx_path + ".user",
                  "no user named " + quote(*user_name) + " in users (have: " + names_of(users) + ")");
        } else {
            read_user(u->second, a);
        }
        if (errors_.empty()) {
            out.access = std::move(a);
        }
        return out;
    }

private:
    std::filesystem::path base_dir_;
    std::vector<std::string>& errors_;
};

std::string errno_text(int err) {
    return std::error_code(err, std::generic_category()).message();
}

// Reads a whole file of at most `limit` bytes; an error text otherwise.
struct file_read {
    std::optional<std::string> data;
    std::string error;
};
file_read read_bounded(const std::filesystem::path& path, std::size_t limit) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return {std::nullopt, "cannot read: " + errno_text(errno)};
    }
    std::string data;
    std::array<char, 8192> buf{};
    while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        data.append(buf.data(), static_cast<std::size_t>(in.gcount()));
        if (data.size() > limit) {
            return {std::nullopt, "larger than " + std::to_string(limit / 1024) + " KiB"};
        }
    }
    if (in.bad()) {
        return {std::nullopt, "cannot read: " + errno_text(errno)};
    }
    return {std::move(data), {}};
}

constexpr std::size_t max_credential_file_bytes = 1024 * 1024;

// The token file exists and holds a token now (it is re-read on every
// connect; an empty one means the kubelet has not written it yet).
void check_token_file(const std::string& path, const std::string& prefix, std::vector<std::string>& errors) {
    auto r = read_bounded(path, max_credential_file_bytes);
    if (!r.data) {
        errors.push_back(prefix + "token file " + path + ": " + r.error);
        return;
    }
    const secret token(std::move(*r.data));
    if (trim(token.reveal()).empty()) {
        errors.push_back(prefix + "token file " + path + " is empty");
    }
}

void check_readable(const std::string& path, std::string_view what, const std::string& prefix,
                    std::vector<std::string>& errors) {
    if (path.empty()) {
        return;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        errors.push_back(prefix + std::string(what) + " " + path + ": cannot read: " + errno_text(errno));
    }
}

bool is_port(std::string_view s) {
    if (s.empty() || s.size() > 5 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return false;
    }
    const auto v = std::stoul(std::string(s));
    return v >= 1 && v <= 65535;
}

kubeconfig_result in_cluster(const kube_access_options& opts) {
    kubeconfig_result out;
    if (!opts.service_host || opts.service_host->empty()) {
        out.errors.emplace_back(
            "scope needs the Kubernetes API: no --kubeconfig and KUBERNETES_SERVICE_HOST is not set (not running in "
            "a pod)");
        return out;
    }
    auto host = *opts.service_host;
    if (host.find(':') != std::string::npos && host.front() != '[') {
        host = "[" + host + "]";  // an IPv6 service IP
    }
    if (!normalize_host(host) || has_control(host)) {
        out.errors.push_back("in-cluster: KUBERNETES_SERVICE_HOST is not a host: " + quote(*opts.service_host));
    }
    if (!opts.service_port || opts.service_port->empty()) {
        out.errors.emplace_back("in-cluster: KUBERNETES_SERVICE_PORT is not set (KUBERNETES_SERVICE_HOST is)");
    } else if (!is_port(*opts.service_port)) {
        out.errors.push_back("in-cluster: KUBERNETES_SERVICE_PORT is not a port: " + quote(*opts.service_port));
    }
    kube_access a;
    a.source = "in-cluster";
    a.token_file = (opts.serviceaccount_dir / "token").string();
    a.ca_file = (opts.serviceaccount_dir / "ca.crt").string();
    check_token_file(a.token_file, "in-cluster: ", out.errors);
    check_readable(a.ca_file, "CA file", "in-cluster: ", out.errors);
    if (out.errors.empty()) {
        a.server = "https://" + to_lower(host) + ":" + *opts.service_port;
        out.access = std::move(a);
    }
    return out;
}

// Kubernetes' IsDNS1123Subdomain (node names): at most 253 characters, dot-
// separated labels of [a-z0-9-] starting and ending alphanumeric. Unlike a
// host name, an all-numeric last label is fine (ACK: cn-hangzhou.10.0.0.12).
bool is_node_name(std::string_view name) {
    if (name.empty() || name.size() > 253) {
        return false;
    }
    const auto alnum = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    };
    std::size_t start = 0;
    while (true) {
        const auto dot = name.find('.', start);
        const auto label = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.empty() || !alnum(label.front()) || !alnum(label.back()) ||
            !std::all_of(label.begin(), label.end(), [&](char c) { return alnum(c) || c == '-'; })) {
            return false;
        }
        if (dot == std::string_view::npos) {
            return true;
        }
        start = dot + 1;
    }
}

}  // namespace

kubeconfig_result parse_kubeconfig(std::string_view text, const std::filesystem::path& base_dir,
                                   std::string_view context) {
    kubeconfig_result out;
    try {
        parser p(base_dir, out.errors);
        auto r = p.parse(text, context);
        out.access = std::move(r.access);
    } catch (const YAML::Exception& e) {
        // Not expected (member() avoids throwing accessors); never lets input escape as an exception.
        out.access.reset();
        out.errors.emplace_back("cannot read the kubeconfig (yaml-cpp: " + std::to_string(e.msg.size()) +
                                "-character error)");
    }
    if (!out.errors.empty()) {
        out.access.reset();
    }
    return out;
}

kubeconfig_result load_kube_access(const kube_access_options& opts) {
    if (!opts.kubeconfig) {
        return in_cluster(opts);
    }
    const auto& file = *opts.kubeconfig;
    const auto prefix = "kubeconfig " + file.string() + ": ";
    kubeconfig_result out;
    const auto r = read_bounded(file, max_kubeconfig_bytes);
    if (!r.data) {
        out.errors.push_back(prefix + r.error);
        return out;
    }
    std::error_code ec;
    auto absolute = std::filesystem::absolute(file, ec);
    if (ec) {
        absolute = file;
    }
    out = parse_kubeconfig(*r.data, absolute.parent_path(), opts.context);
    for (auto& e : out.errors) {
        e = prefix + e;
    }
    if (!out.access) {
        return out;
    }
    auto& a = *out.access;
    a.source = "kubeconfig " + file.string() + a.source.substr(std::string_view("kubeconfig").size());
    if (!a.token_file.empty()) {
        check_token_file(a.token_file, prefix, out.errors);
    }
    check_readable(a.ca_file, "certificate-authority", prefix, out.errors);
    check_readable(a.client_cert_file, "client-certificate", prefix, out.errors);
    check_readable(a.client_key_file, "client-key", prefix, out.errors);
    if (!out.errors.empty()) {
        out.access.reset();
    }
    return out;
}

node_name_result choose_node_name(std::optional<std::string_view> flag, std::optional<std::string_view> env_node_name,
                                  std::string_view host_name) {
    node_name_result out;
    if (flag) {
        out.name = std::string(*flag);
        out.from = "--node-name";
    } else if (env_node_name && !env_node_name->empty()) {
        out.name = std::string(*env_node_name);
        out.from = "NODE_NAME";
    } else {
        out.name = to_lower(host_name);
        out.from = "host name";
    }
    if (out.name.empty()) {
        out.error = out.from + " is empty: the proxy needs this node's name to watch its pods (--node-name)";
    } else if (!is_node_name(out.name)) {
        out.error = out.from + " " + quote(out.name) +
                    " is not a Kubernetes node name (a lower-case DNS subdomain); give --node-name";
    }
    return out;
}

node_name_result node_name_of_this_node(const std::optional<std::string>& flag) {
    std::array<char, 256> host{};
    if (::gethostname(host.data(), host.size() - 1) != 0) {
        host[0] = '\0';
    }
    const char* env_node = std::getenv("NODE_NAME");
    return choose_node_name(
        flag ? std::optional<std::string_view>(*flag) : std::nullopt,
        env_node != nullptr && *env_node != '\0' ? std::optional<std::string_view>(env_node) : std::nullopt,
        host.data());
}

}  // namespace acp::config
