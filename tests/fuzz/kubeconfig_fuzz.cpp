// libFuzzer target: parse_kubeconfig (config/kube_access.hpp) on any bytes,
// with the current-context and with --kube-context "prod".
//
// Secrets come in through placeholders, replaced before parsing:
//   @TOKEN@     a bearer token          @PASSWORD@  a basic-auth password
//   @KEYDATA@   base64 of a PEM key     @KEY@       the key's secret line
// Checks: nothing escapes as an exception; access xor errors; every error is
// one line of at most 400 characters, at most 16 of them; and no error shows
// a secret that sits only under a key that holds credentials (token,
// password, client-key-data, id-token …; found by walking the document) — a
// placeholder the input also puts elsewhere (a name, the server) may be shown
// there, as any name is.
#include "config/kube_access.hpp"
#include "tests/fuzz/fuzz_support.hpp"

#include <yaml-cpp/yaml.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

constexpr std::string_view token = "FuzzKubeBearerTokenNeverShown0123";
constexpr std::string_view password = "FuzzKubePasswordNeverShown4567";
constexpr std::string_view key_secret = "FuzzKubeClientKeyNeverShown89ab";
// base64 of "-----BEGIN EC PRIVATE KEY-----\nFuzzKubeClientKeyNeverShown89ab\n-----END EC PRIVATE KEY-----\n"
constexpr std::string_view key_data =
    "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCkZ1enpLdWJlQ2xpZW50S2V5TmV2ZXJTaG93bjg5YWIKLS0tLS1FTkQgRUMgUFJJVkFURSBLRV"
    "ktLS0tLQo=";

struct placeholder {
    std::string_view marker;
    std::string_view value;
    std::vector<std::string_view> shown_as;  // what an error must not contain
};

const std::array<placeholder, 4>& placeholders() {
    static const std::array<placeholder, 4> p{{
        {"@TOKEN@", token, {token}},
        {"@PASSWORD@", password, {password}},
        {"@KEYDATA@", key_data, {key_data.substr(0, 40), key_secret}},
        {"@KEY@", key_secret, {key_secret}},
    }};
    return p;
}

// Where each scalar of the document sits: under a key that holds a
// credential, or anywhere else (keys included). Bounded: a document of many
// aliases is not walked in full (then no secret is looked for).
struct scalar_places {
    std::vector<std::string> credential;
    std::vector<std::string> other;
    std::size_t visited = 0;
    bool complete = true;
};

bool is_credential_key(std::string_view key) {
    static constexpr std::array<std::string_view, 6> keys{"token",    "password",      "client-key-data",
                                                          "id-token", "refresh-token", "client-secret"};
    for (const auto k : keys) {
        if (key == k) {
            return true;
        }
    }
    return false;
}

void walk(const YAML::Node& n, bool credential, int depth, scalar_places& out) {
    if (++out.visited > 20000 || depth > 200) {
        out.complete = false;
        return;
    }
    if (n.IsScalar()) {
        (credential ? out.credential : out.other).push_back(n.Scalar());
    } else if (n.IsSequence()) {
        for (const auto& item : n) {
            walk(item, false, depth + 1, out);
        }
    } else if (n.IsMap()) {
        for (const auto& kv : n) {
            walk(kv.first, false, depth + 1, out);
            walk(kv.second, kv.first.IsScalar() && is_credential_key(kv.first.Scalar()), depth + 1, out);
        }
    }
}

struct filled {
    std::string text;
    std::vector<std::string_view> secrets;  // values to look for in errors
};

filled fill(std::string_view input) {
    filled out;
    out.text = std::string(input);
    for (const auto& p : placeholders()) {
        for (auto at = out.text.find(p.marker); at != std::string::npos;
             at = out.text.find(p.marker, at + p.value.size())) {
            out.text.replace(at, p.marker.size(), p.value);
        }
    }
    scalar_places places;
    try {
        walk(YAML::Load(out.text), false, 0, places);
    } catch (const YAML::Exception&) {
        return out;  // not YAML: parse_kubeconfig reports only where it failed
    }
    if (!places.complete) {
        return out;
    }
    const auto in_any = [](const std::vector<std::string>& values, std::string_view needle) {
        for (const auto& v : values) {
            if (v.find(needle) != std::string::npos) {
                return true;
            }
        }
        return false;
    };
    for (const auto& p : placeholders()) {
        // Any form of it written out in the input (say, in a name) may be shown as the input's own text.
        bool carried = input.find(p.value) != std::string_view::npos;
        for (const auto form : p.shown_as) {
            carried = carried || input.find(form) != std::string_view::npos || in_any(places.other, form);
        }
        if (!carried && in_any(places.credential, p.value) && !in_any(places.other, p.value)) {
            out.secrets.insert(out.secrets.end(), p.shown_as.begin(), p.shown_as.end());
        }
    }
    return out;
}

void check(const acp::config::kubeconfig_result& r, const filled& f) {
    acp::fuzz::require(r.access.has_value() == r.errors.empty());
    acp::fuzz::require(r.errors.size() <= 16);
    for (const auto& e : r.errors) {
        acp::fuzz::require(!e.empty() && e.size() <= 400);
        acp::fuzz::require(!acp::fuzz::has_control(e));
        for (const auto s : f.secrets) {
            acp::fuzz::require(e.find(s) == std::string::npos);
        }
    }
    if (r.access) {
        acp::fuzz::require(!r.access->server.empty());
        acp::fuzz::require(!acp::fuzz::has_control(r.access->server));
        acp::fuzz::require(r.access->server.back() != '/');
        for (const auto s : f.secrets) {
            acp::fuzz::require(r.access->source.find(s) == std::string::npos);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto f = fill(acp::fuzz::as_text(data, size));
    for (const std::string_view context : {std::string_view(), std::string_view("prod")}) {
        check(acp::config::parse_kubeconfig(f.text, "/etc/kubernetes", context), f);
    }
    return 0;
}
