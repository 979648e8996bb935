// How the proxy reaches the API server (issue 10): kubeconfig files as kubectl
// and kubeadm write them (kubelet.conf with client-certificate files, token
// users, several contexts and --kube-context, *-data fields, JSON), the users
// it refuses (exec, auth-provider, basic), in-cluster discovery, and the node
// name. Errors are one line, name the key and never show a credential.
#include "config/kube_access.hpp"

#include "config_test_support.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

using namespace acp::config;
using acp::config::testing::joined;
using acp::config::testing::temp_dir;

namespace {

const std::string token_value = "kube-token-NEVER-SHOWN-0123456789abcdef";
const std::string password_value = "kube-password-NEVER-SHOWN-42";
const std::string key_pem = "-----BEGIN EC PRIVATE KEY-----\nKEYSECRETNEVERSHOWN\n-----END EC PRIVATE KEY-----\n";
const std::string cert_pem = "-----BEGIN CERTIFICATE-----\nMIIBclient\n-----END CERTIFICATE-----\n";
const std::string ca_pem = "-----BEGIN CERTIFICATE-----\nMIIBcluster\n-----END CERTIFICATE-----\n";

std::string b64(std::string_view in) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const auto byte = [&](std::size_t i) -> std::uint32_t {
        return i < in.size() ? static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) : 0U;
    };
    std::string out;
    for (std::size_t i = 0; i < in.size(); i += 3) {
        const auto v = (byte(i) << 16U) | (byte(i + 1) << 8U) | byte(i + 2);
        out += alphabet[(v >> 18U) & 63U];
        out += alphabet[(v >> 12U) & 63U];
        out += i + 1 < in.size() ? alphabet[(v >> 6U) & 63U] : '=';
        out += i + 2 < in.size() ? alphabet[v & 63U] : '=';
    }
    return out;
}

// Replaces every @NAME@ placeholder.
std::string fill(std::string text) {
    const std::vector<std::pair<std::string, std::string>> subst{
        {"@TOKEN@", token_value},      {"@PASSWORD@", password_value}, {"@KEYDATA@", b64(key_pem)},
        {"@CERTDATA@", b64(cert_pem)}, {"@CADATA@", b64(ca_pem)},
    };
    for (const auto& [from, to] : subst) {
        for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
            text.replace(at, from.size(), to);
        }
    }
    return text;
}

void check_clean_errors(const std::vector<std::string>& errors) {
    for (const auto& e : errors) {
        INFO(e);
        CHECK(e.find('\n') == std::string::npos);
        CHECK(e.find(token_value) == std::string::npos);
        CHECK(e.find(password_value) == std::string::npos);
        CHECK(e.find("KEYSECRETNEVERSHOWN") == std::string::npos);
        CHECK(e.find(b64(key_pem).substr(0, 24)) == std::string::npos);
        CHECK(e.size() <= 400);
    }
    CHECK(errors.size() <= 16);
}

// kubeadm's kubelet.conf: client certificate and key in one rotating file.
const char* const kubelet_conf = R"(apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: @CADATA@
    server: https://192.168.0.10:6443
  name: default-cluster
contexts:
- context:
    cluster: default-cluster
    namespace: default
    user: default-auth
  name: default-context
current-context: default-context
kind: Config
preferences: {}
users:
- name: default-auth
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
)";

// Two clusters and contexts, relative paths, a token user and a tokenFile user.
const char* const multi_context = R"(apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod-cluster
  cluster:
    server: https://prod.example.com/
    certificate-authority: pki/prod-ca.crt
- name: lab-cluster
  cluster:
    server: https://[fd00::1]:6443/k8s/clusters/c-1/
    insecure-skip-tls-verify: true
- name: local
  cluster:
    server: http://127.0.0.1:8080
contexts:
- name: prod
  context: {cluster: prod-cluster, user: proxy-token, namespace: kube-system}
- name: lab
  context: {cluster: lab-cluster, user: proxy-file}
- name: local
  context: {cluster: local, user: proxy-both}
users:
- name: proxy-token
  user:
    token: @TOKEN@
- name: proxy-file
  user:
    tokenFile: tokens/proxy
- name: proxy-both
  user:
    token: @TOKEN@
    tokenFile: /run/secrets/proxy-token
)";

struct want_access {
    std::string server{};
    std::string ca_pem{};
    std::string ca_file{};
    bool insecure = false;
    std::string token{};
    std::string token_file{};
    std::string cert_pem{};
    std::string cert_file{};
    std::string key_pem{};
    std::string key_file{};
    std::string tls_server_name{};
    std::string source{};
};

struct ok_case {
    const char* scenario;
    std::string text;
    std::string context;
    want_access want;
};

}  // namespace

TEST_CASE("kubeconfig: kubectl-style files give the API server, trust and credentials", "[kube_access]") {
    const std::vector<ok_case> cases{
        {"kubeadm kubelet.conf: CA data, client certificate and key files",
         kubelet_conf,
         "",
         {.server = "https://192.168.0.10:6443",
          .ca_pem = ca_pem,
          .cert_file = "/var/lib/kubelet/pki/kubelet-client-current.pem",
          .key_file = "/var/lib/kubelet/pki/kubelet-client-current.pem",
          .source = "kubeconfig (context \"default-context\")"}},
        {"current-context: a token user, relative CA resolved against the kubeconfig's directory",
         multi_context,
         "",
         {.server = "https://prod.example.com:443",
          .ca_file = "/etc/kubernetes/pki/prod-ca.crt",
          .token = token_value,
          .source = "kubeconfig (context \"prod\")"}},
        {"--kube-context lab: IPv6 server with a path, insecure, relative tokenFile",
         multi_context,
         "lab",
         {.server = "https://[fd00::1]:6443/k8s/clusters/c-1",
          .insecure = true,
          .token_file = "/etc/kubernetes/tokens/proxy",
          .source = "kubeconfig (context \"lab\")"}},
        {"--kube-context local: plain http, tokenFile wins over token (client-go)",
         multi_context,
         "local",
         {.server = "http://127.0.0.1:8080",
          .token_file = "/run/secrets/proxy-token",
          .source = "kubeconfig (context \"local\")"}},
        {"data fields: client certificate and key inline, data wins over a file, tls-server-name",
         R"(clusters:
- name: c
  cluster:
    server: HTTPS://API.Example.com:443
    certificate-authority: /ignored/ca.crt
    certificate-authority-data: @CADATA@
    tls-server-name: Kubernetes.Default.svc
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
users:
- name: u
  user:
    client-certificate-data: @CERTDATA@
    client-key-data: @KEYDATA@
)",
         "",
         {.server = "https://api.example.com:443",
          .ca_pem = ca_pem,
          .cert_pem = cert_pem,
          .key_pem = key_pem,
          .tls_server_name = "kubernetes.default.svc",
          .source = "kubeconfig (context \"x\")"}},
        {"JSON kubeconfig (kubectl config view -o json)",
         R"({"kind":"Config","apiVersion":"v1","current-context":"j",
 "clusters":[{"name":"c","cluster":{"server":"https://10.96.0.1","certificate-authority":"ca.pem"}}],
 "contexts":[{"name":"j","context":{"cluster":"c","user":"u"}}],
 "users":[{"name":"u","user":{"token":"@TOKEN@"}}]})",
         "",
         {.server = "https://10.96.0.1:443",
          .ca_file = "/etc/kubernetes/ca.pem",
          .token = token_value,
          .source = "kubeconfig (context \"j\")"}},
        {"base64 data wrapped over lines (a YAML block scalar)",
         "clusters:\n- name: c\n  cluster:\n    server: https://h:1\n    certificate-authority-data: |\n      " +
             b64(ca_pem).substr(0, 40) + "\n      " + b64(ca_pem).substr(40) +
             "\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\nusers: [{name: u, user: "
             "{token: abcdefgh}}]\n",
         "",
         {.server = "https://h:1", .ca_pem = ca_pem, .token = "abcdefgh", .source = "kubeconfig (context \"x\")"}},
    };
    for (const auto& c : cases) {
        SECTION(c.scenario) {
            const auto r = parse_kubeconfig(fill(c.text), "/etc/kubernetes", c.context);
            INFO(joined(r.errors));
            REQUIRE(r.errors.empty());
            REQUIRE(r.access);
            const auto& a = *r.access;
            CHECK(a.server == c.want.server);
            CHECK(a.ca_pem == c.want.ca_pem);
            CHECK(a.ca_file == c.want.ca_file);
            CHECK(a.insecure_skip_tls_verify == c.want.insecure);
            CHECK(a.bearer_token.reveal() == c.want.token);
            CHECK(a.token_file == c.want.token_file);
            CHECK(a.client_cert_pem == c.want.cert_pem);
            CHECK(a.client_cert_file == c.want.cert_file);
            CHECK(a.client_key_pem.reveal() == c.want.key_pem);
            CHECK(a.client_key_file == c.want.key_file);
            CHECK(a.tls_server_name == c.want.tls_server_name);
            CHECK(a.source == c.want.source);
        }
    }
}

namespace {

struct error_case {
    const char* scenario;
    std::string text;
    std::string context;
    std::vector<std::string> phrases;  // each must appear in one error line
};

std::string with_user(const std::string& user_body) {
    return "clusters: [{name: c, cluster: {server: 'https://10.0.0.1:6443'}}]\n"
           "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
           "current-context: x\n"
           "users:\n- name: u\n  user:\n" +
           user_body;
}

std::string with_cluster(const std::string& cluster_body) {
    return "clusters:\n- name: c\n  cluster:\n" + cluster_body +
           "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
           "current-context: x\n"
           "users: [{name: u, user: {token: @TOKEN@}}]\n";
}

}  // namespace

TEST_CASE("kubeconfig: refused with one line naming the key, never a credential", "[kube_access]") {
    const std::vector<error_case> cases{
        {"empty file", "", "", {"empty: expected a kubeconfig"}},
        {"not YAML", "clusters: [\n  {name: c", "", {"not valid YAML or JSON at line"}},
        {"a list, not a kubeconfig", "- a\n- b\n", "", {"expected a kubeconfig mapping", "got a list"}},
        {"a ConfigMap passed by mistake",
         "kind: ConfigMap\n" + with_user("    token: @TOKEN@\n"),
         "",
         {"kind: expected Config, got \"ConfigMap\""}},
        {"no current-context and no --kube-context",
         "contexts: [{name: a, context: {}}, {name: b, context: {}}]\n",
         "",
         {"current-context: not set and no --kube-context given (contexts: \"a\", \"b\")"}},
        {"--kube-context names no context",
         multi_context,
         "staging",
         {"--kube-context: no context named \"staging\" in contexts (have: \"lab\", \"local\", \"prod\")"}},
        {"current-context names no context",
         "current-context: gone\ncontexts: []\n",
         "",
         {"current-context: no context named \"gone\" in contexts (have: none)"}},
        {"context names a missing cluster and user",
         "current-context: x\ncontexts: [{name: x, context: {cluster: nope, user: nobody}}]\n",
         "",
         {"contexts[x].context.cluster: no cluster named \"nope\" in clusters (have: none)",
          "contexts[x].context.user: no user named \"nobody\" in users (have: none)"}},
        {"context without a user",
         "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
         "clusters: [{name: c, cluster: {server: 'https://a:1'}}]\n",
         "",
         {"contexts[x].context.user: missing", "a token or a client certificate"}},
        {"exec credential plugin (EKS, GKE, AKS style)",
         with_user("    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: aws\n"),
         "",
         {"users[u].user.exec: credential plugins are not supported: the proxy needs a bearer token (token / "
          "tokenFile) or a client certificate (client-certificate / client-key)"}},
        {"auth-provider",
         with_user("    auth-provider:\n      name: oidc\n      config: {id-token: @TOKEN@}\n"),
         "",
         {"users[u].user.auth-provider: auth providers are not supported", "bearer token"}},
        {"username and password",
         with_user("    username: admin\n    password: @PASSWORD@\n"),
         "",
         {"users[u].user.username: basic authentication (username / password) is not supported", "token"}},
        {"password alone", with_user("    password: @PASSWORD@\n"), "", {"users[u].user.password: basic"}},
        {"impersonation",
         with_user("    token: @TOKEN@\n    as: system:admin\n"),
         "",
         {"users[u].user.as: impersonation"}},
        {"user with no credentials", with_user("    {}\n"), "", {"users[u].user: no credentials: the proxy needs"}},
        {"token with a space in it",
         with_user("    token: \"@TOKEN@ x\"\n"),
         "",
         {"users[u].user.token: not a bearer token"}},
        {"token is a mapping",
         with_user("    token: {a: @TOKEN@}\n"),
         "",
         {"users[u].user.token: expected a string, got a mapping"}},
        {"client-key-data is not base64",
         with_user("    client-certificate-data: @CERTDATA@\n    client-key-data: \"@KEYDATA@!\"\n"),
         "",
         {"users[u].user.client-key-data: not valid base64"}},
        {"client-key-data decodes to no PEM",
         with_user("    client-certificate-data: @CERTDATA@\n    client-key-data: " + b64("just bytes of a key") +
                   "\n"),
         "",
         {"users[u].user.client-key-data: decoded, it holds no PEM block"}},
        {"client-key-data with bad padding",
         with_user("    client-certificate-data: @CERTDATA@\n    client-key-data: QUJD=\n"),
         "",
         {"users[u].user.client-key-data: not valid base64"}},
        {"certificate without key",
         with_user("    client-certificate: /pki/c.crt\n"),
         "",
         {"users[u].user.client-key: missing: client-certificate(-data) needs client-key(-data)"}},
        {"key without certificate",
         with_user("    client-key-data: @KEYDATA@\n"),
         "",
         {"users[u].user.client-certificate: missing"}},
        {"server missing",
         with_cluster("    certificate-authority: ca\n"),
         "",
         {"clusters[c].cluster.server: missing"}},
        {"server not http(s)",
         with_cluster("    server: ftp://10.0.0.1\n"),
         "",
         {"clusters[c].cluster.server: expected an http:// or https:// URL with a host, got \"ftp://10.0.0.1\""}},
        {"server with a password in it",
         with_cluster("    server: https://admin:@PASSWORD@@10.0.0.1:6443\n"),
         "",
         {"clusters[c].cluster.server: user information in the URL is not supported"}},
        {"insecure together with a CA",
         with_cluster(
             "    server: https://a:1\n    certificate-authority-data: @CADATA@\n    insecure-skip-tls-verify: true\n"),
         "",
         {"clusters[c].cluster.insecure-skip-tls-verify: true together with certificate-authority(-data)"}},
        {"insecure not a bool",
         with_cluster("    server: https://a:1\n    insecure-skip-tls-verify: maybe\n"),
         "",
         {"clusters[c].cluster.insecure-skip-tls-verify: expected true or false, got \"maybe\""}},
        {"CA data not base64",
         with_cluster("    server: https://a:1\n    certificate-authority-data: '%%%%'\n"),
         "",
         {"clusters[c].cluster.certificate-authority-data: not valid base64"}},
        {"proxy-url",
         with_cluster("    server: https://a:1\n    proxy-url: http://proxy:3128\n"),
         "",
         {"proxy-url: not supported"}},
        {"clusters is a string",
         "clusters: nope\ncurrent-context: x\n",
         "",
         {"clusters: expected a list, got a string"}},
        {"two users with one name",
         with_user("    token: @TOKEN@\n- name: u\n  user: {token: other-token}\n"),
         "",
         {"users[u]: a second entry named \"u\""}},
        {"entry without a name",
         "current-context: x\ncontexts: [{context: {cluster: c}}]\n",
         "",
         {"contexts[0].name: missing"}},
        {"many problems: at most 16 lines",
         [] {
             std::string t = "current-context: x\nusers:\n";
             for (int i = 0; i < 40; ++i) {
                 t += "- {name: dup, user: {}}\n";
             }
             return t;
         }(),
         "",
         {"users[dup]: a second entry named \"dup\"", "and more problems (only the first 15 are shown)"}},
        {"larger than the bound", std::string(max_kubeconfig_bytes + 1, '#'), "", {"larger than 1024 KiB"}},
    };
    for (const auto& c : cases) {
        SECTION(c.scenario) {
            const auto r = parse_kubeconfig(fill(c.text), "/etc/kubernetes", c.context);
            INFO(joined(r.errors));
            CHECK_FALSE(r.access);
            REQUIRE_FALSE(r.errors.empty());
            for (const auto& phrase : c.phrases) {
                INFO(phrase);
                CHECK(std::any_of(r.errors.begin(), r.errors.end(),
                                  [&](const std::string& e) { return e.find(phrase) != std::string::npos; }));
            }
            check_clean_errors(r.errors);
        }
    }
}

TEST_CASE("kubeconfig file: read, relative paths against its directory, referenced files checked", "[kube_access]") {
    const temp_dir dir;
    dir.write("kube/pki/client.crt", cert_pem);
    dir.write("kube/pki/client.key", key_pem);
    dir.write("kube/ca.crt", ca_pem);
    dir.write("kube/token", token_value + "\n");
    dir.write("kube/empty-token", "\n");
    const auto conf = dir.path() / "kube" / "proxy.conf";
    const auto prefix = "kubeconfig " + conf.string() + ": ";
    const std::string base =
        R"(clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443', certificate-authority: ca.crt}}]
contexts: [{name: cert, context: {cluster: c, user: cert}}, {name: tok, context: {cluster: c, user: tok}},
           {name: empty, context: {cluster: c, user: empty}}, {name: gone, context: {cluster: c, user: gone}}]
current-context: cert
users:
- {name: cert, user: {client-certificate: pki/client.crt, client-key: pki/client.key}}
- {name: tok, user: {tokenFile: token}}
- {name: empty, user: {tokenFile: empty-token}}
- {name: gone, user: {client-certificate: pki/client.crt, client-key: pki/missing.key}}
)";
    dir.write("kube/proxy.conf", base);

    SECTION("client certificate files next to the kubeconfig") {
        const auto r = load_kube_access({.kubeconfig = conf});
        INFO(joined(r.errors));
        REQUIRE(r.access);
        CHECK(r.access->server == "https://127.0.0.1:6443");
        CHECK(r.access->ca_file == (dir.path() / "kube" / "ca.crt").string());
        CHECK(r.access->client_cert_file == (dir.path() / "kube" / "pki" / "client.crt").string());
        CHECK(r.access->client_key_file == (dir.path() / "kube" / "pki" / "client.key").string());
        CHECK(r.access->source == "kubeconfig " + conf.string() + " (context \"cert\")");
    }
    SECTION("a token file: only its path is kept (re-read on every connect)") {
        const auto r = load_kube_access({.kubeconfig = conf, .context = "tok"});
        INFO(joined(r.errors));
        REQUIRE(r.access);
        CHECK(r.access->token_file == (dir.path() / "kube" / "token").string());
        CHECK(r.access->bearer_token.empty());
    }
    SECTION("an empty token file is refused naming it") {
        const auto r = load_kube_access({.kubeconfig = conf, .context = "empty"});
        CHECK_FALSE(r.access);
        CHECK(joined(r.errors) ==
              prefix + "token file " + (dir.path() / "kube" / "empty-token").string() + " is empty\n");
    }
    SECTION("a missing client key is refused naming it") {
        const auto r = load_kube_access({.kubeconfig = conf, .context = "gone"});
        CHECK_FALSE(r.access);
        CHECK(joined(r.errors) == prefix + "client-key " + (dir.path() / "kube" / "pki" / "missing.key").string() +
                                      ": cannot read: No such file or directory\n");
    }
    SECTION("parse errors carry the file name") {
        const auto r = load_kube_access({.kubeconfig = conf, .context = "nope"});
        CHECK(joined(r.errors) == prefix +
                                      "--kube-context: no context named \"nope\" in contexts (have: \"cert\", "
                                      "\"empty\", \"gone\", \"tok\")\n");
    }
    SECTION("a missing kubeconfig") {
        const auto missing = dir.path() / "nope.conf";
        const auto r = load_kube_access({.kubeconfig = missing});
        CHECK_FALSE(r.access);
        CHECK(joined(r.errors) == "kubeconfig " + missing.string() + ": cannot read: No such file or directory\n");
    }
    SECTION("a relative --kubeconfig resolves its relative paths against its own directory") {
        const auto cwd = std::filesystem::current_path();
        std::filesystem::current_path(dir.path());
        const auto r = load_kube_access({.kubeconfig = std::filesystem::path("kube/proxy.conf"), .context = "tok"});
        std::filesystem::current_path(cwd);
        INFO(joined(r.errors));
        REQUIRE(r.access);
        CHECK(r.access->token_file == (dir.path() / "kube" / "token").string());
    }
}

TEST_CASE("in-cluster: the service address, the ServiceAccount token and CA kubelet mounts", "[kube_access]") {
    const temp_dir dir;
    const auto sa = dir.path() / "serviceaccount";
    dir.write("serviceaccount/token", token_value);
    dir.write("serviceaccount/ca.crt", ca_pem);
    dir.write("empty/token", "");
    dir.write("empty/ca.crt", ca_pem);
    dir.write("noca/token", token_value);

    struct in_cluster_case {
        const char* scenario;
        std::optional<std::string> host;
        std::optional<std::string> port;
        std::filesystem::path dir;
        std::string server;  // empty: refused
        std::string error;
    };
    const std::vector<in_cluster_case> cases{
        {"IPv4 service", "10.96.0.1", "443", sa, "https://10.96.0.1:443", ""},
        {"IPv6 service gets brackets", "fd00:10:96::1", "443", sa, "https://[fd00:10:96::1]:443", ""},
        {"not in a pod", std::nullopt, std::nullopt, sa, "",
         "scope needs the Kubernetes API: no --kubeconfig and KUBERNETES_SERVICE_HOST is not set (not running in a "
         "pod)\n"},
        {"no port", "10.96.0.1", std::nullopt, sa, "",
         "in-cluster: KUBERNETES_SERVICE_PORT is not set (KUBERNETES_SERVICE_HOST is)\n"},
        {"bad port", "10.96.0.1", "https", sa, "", "in-cluster: KUBERNETES_SERVICE_PORT is not a port: \"https\"\n"},
        {"empty token", "10.96.0.1", "443", dir.path() / "empty", "",
         "in-cluster: token file " + (dir.path() / "empty" / "token").string() + " is empty\n"},
        {"no CA", "10.96.0.1", "443", dir.path() / "noca", "",
         "in-cluster: CA file " + (dir.path() / "noca" / "ca.crt").string() +
             ": cannot read: No such file or directory\n"},
        {"no token", "10.96.0.1", "443", dir.path() / "absent", "",
         "in-cluster: token file " + (dir.path() / "absent" / "token").string() +
             ": cannot read: No such file or directory\n"
             "in-cluster: CA file " +
             (dir.path() / "absent" / "ca.crt").string() + ": cannot read: No such file or directory\n"},
    };
    for (const auto& c : cases) {
        SECTION(c.scenario) {
            const auto r =
                load_kube_access({.serviceaccount_dir = c.dir, .service_host = c.host, .service_port = c.port});
            CHECK(joined(r.errors) == c.error);
            if (c.server.empty()) {
                CHECK_FALSE(r.access);
            } else {
                REQUIRE(r.access);
                CHECK(r.access->server == c.server);
                CHECK(r.access->source == "in-cluster");
                CHECK(r.access->token_file == (c.dir / "token").string());
                CHECK(r.access->ca_file == (c.dir / "ca.crt").string());
                CHECK(r.access->bearer_token.empty());
            }
        }
    }
}

TEST_CASE("node name: --node-name, then NODE_NAME, then the host name", "[kube_access]") {
    struct node_case {
        const char* scenario;
        std::optional<std::string_view> flag;
        std::optional<std::string_view> env;
        std::string_view host;
        std::string name;
        std::string from;
        std::string error;
    };
    const std::vector<node_case> cases{
        {"flag wins", "node-a", "node-b", "host", "node-a", "--node-name", ""},
        {"downward API", std::nullopt, "cn-hangzhou.10.0.0.12", "host", "cn-hangzhou.10.0.0.12", "NODE_NAME", ""},
        {"empty NODE_NAME falls back to the host name", std::nullopt, "", "Worker-1", "worker-1", "host name", ""},
        {"host name lower-cased", std::nullopt, std::nullopt, "Worker-1.Example", "worker-1.example", "host name", ""},
        {"empty flag", "", "node-b", "host", "", "--node-name",
         "--node-name is empty: the proxy needs this node's name to watch its pods (--node-name)"},
        {"upper-case flag is not a node name", "Node-A", std::nullopt, "host", "Node-A", "--node-name",
         "--node-name \"Node-A\" is not a Kubernetes node name (a lower-case DNS subdomain); give --node-name"},
        {"underscore host name", std::nullopt, std::nullopt, "my_host", "my_host", "host name",
         "host name \"my_host\" is not a Kubernetes node name (a lower-case DNS subdomain); give --node-name"},
        {"NODE_NAME with a space", std::nullopt, "a b", "host", "a b", "NODE_NAME",
         "NODE_NAME \"a b\" is not a Kubernetes node name (a lower-case DNS subdomain); give --node-name"},
    };
    for (const auto& c : cases) {
        SECTION(c.scenario) {
            const auto r = choose_node_name(c.flag, c.env, c.host);
            CHECK(r.name == c.name);
            CHECK(r.from == c.from);
            CHECK(r.error == c.error);
        }
    }
}
