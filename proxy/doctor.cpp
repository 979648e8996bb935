#include "proxy/doctor.hpp"

#include "acp_version.hpp"
#include "config/logging.hpp"
#include "config/values.hpp"
#include "hosts/hosts_toml.hpp"
#include "proxy/doctor_checks.hpp"
#include "proxy/doctor_probe.hpp"
#include "proxy/pod_watcher.hpp"
#include "proxy/snapshot.hpp"
#include "routing/route_table.hpp"
#include "tokens/acr_openapi.hpp"
#include "tokens/alibaba_endpoints.hpp"
#include "tokens/bearer_challenge.hpp"
#include "tokens/credential_chain.hpp"
#include "tokens/imds_client.hpp"
#include "tokens/registry_token.hpp"
#include "tokens/signing_primitives.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace acp::proxy {

namespace {

using doctor::fail;
using doctor::finding;
using doctor::pass;
using doctor::warn;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr std::string_view manifest_accept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) {
        s.pop_back();
    }
    return s;
}

/// "2026-01-02T03:04:05Z (in 59m59s)"
std::string expiry_text(tokens::time_point at, tokens::time_point now) {
    std::string out = tokens::iso8601_utc(at);
    if (at > now) {
        out += " (in " + config::format_duration(duration_cast<std::chrono::seconds>(at - now)) + ")";
    } else {
        out += " (expired " + config::format_duration(duration_cast<std::chrono::seconds>(now - at)) + " ago)";
    }
    return out;
}

std::string instance_label(const config::acr_instance& inst, std::size_t index) {
    if (!inst.instance_id.empty()) {
        return inst.instance_id;
    }
    return "personal/" + (inst.region_id.empty() ? std::to_string(index) : inst.region_id);
}

/// "<scheme>://<authority><path>"
std::string url_text(const config::endpoint_url& u) {
    return u.scheme + "://" + routing::authority_of(u) + u.path;
}

std::string query_escape_host(std::string_view host) {
    std::string out;
    for (const char c : host) {
        if (c == '[') {
            out += "%5B";
        } else if (c == ']') {
            out += "%5D";
        } else {
            out += c;
        }
    }
    return out;
}

/// The registry error JSON's first code and message ("" when not one).
std::string registry_error_text(std::string_view body) {
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("errors") || !j["errors"].is_array() || j["errors"].empty() ||
        !j["errors"][0].is_object()) {
        return {};
    }
    const auto& e = j["errors"][0];
    std::string out = e.value("code", std::string());
    const auto message = e.value("message", std::string());
    if (!message.empty()) {
        out += (out.empty() ? "" : ": ") + message;
    }
    if (e.contains("detail") && e["detail"].is_string() && !e["detail"].get<std::string>().empty()) {
        out += " (" + e["detail"].get<std::string>() + ")";
    }
    return tokens::scrub(out);
}

class runner {
public:
    runner(const doctor_options& opts, std::ostream& out) : opts_(opts), out_(out) {}

    int run() {
        out_ << "acr-credential-proxy doctor " ACP_VERSION "\n";
        if (!check_config()) {
            summary();
            return 2;
        }
        setup_alibaba();
        check_credential_source();
        check_instances();
        build_routes();
        check_domains();
        check_hosts_files();
        check_containerd();
        check_readiness();
        check_scope();
        if (opts_.image) {
            check_image(*opts_.image);
        }
        summary();
        return failed_ > 0 ? 1 : 0;
    }

private:
    struct instance_probe {
        std::string label;
        std::string region;
        std::shared_ptr<tokens::credential_provider> provider;
        std::vector<std::string> served;  // what the proxy serves for it
    };

    void emit(const finding& f) {
        out_ << doctor::render(f);
        out_.flush();
        switch (f.status) {
            case doctor::mark::pass:
                ++passed_;
                break;
            case doctor::mark::fail:
                ++failed_;
                break;
            case doctor::mark::warn:
                ++warned_;
                break;
        }
    }
    void emit(const std::vector<finding>& fs) {
        for (const auto& f : fs) {
            emit(f);
        }
    }

    void summary() {
        out_ << "\n"
             << passed_ << " passed, " << failed_ << " failed, " << warned_ << " warning" << (warned_ == 1 ? "" : "s")
             << "\n";
    }

    // 1. ---------------------------------------------------------------------------
    bool check_config() {
        const std::string named =
            !opts_.load.config_file.empty() ? opts_.load.config_file : opts_.load.acr_configuration_dir;
        config::load_result loaded;
        try {
            loaded = config::load(opts_.load, opts_.env);
        } catch (const config::config_error& e) {
            for (const auto& w : e.warnings()) {
                emit(warn("configuration: " + w.str()));
            }
            for (const auto& d : e.errors()) {
                emit(fail("configuration: " + d.str(), "correct " + (d.key.empty() ? std::string("it") : d.key) +
                                                           " in " + (d.file.empty() ? named : d.file) +
                                                           " (`acr-credential-proxy check-config` lists every error)"));
            }
            return false;
        } catch (const std::exception& e) {
            emit(fail("configuration " + named + ": " + e.what(), "make it readable, then run doctor again"));
            return false;
        }
        auto cfg = std::make_shared<config::config>(*loaded.cfg);
        if (opts_.listen) {
            cfg->listen = *opts_.listen;
        }
        if (opts_.admin_listen) {
            cfg->admin_listen = *opts_.admin_listen;
        }
        cfg_ = cfg;
        emit(pass("configuration " + cfg_->source + " is valid: " + std::to_string(cfg_->acr_instances.size()) +
                  " ACR instance" + (cfg_->acr_instances.size() == 1 ? "" : "s") + ", " +
                  std::to_string(cfg_->registries.size()) + " other registr" +
                  (cfg_->registries.size() == 1 ? "y" : "ies") + ", listen " + hosts::proxy_url(cfg_->listen)));
        for (const auto& w : loaded.warnings) {
            emit(warn("configuration: " + w.str()));
        }
        return true;
    }

    // 2. ---------------------------------------------------------------------------
    void setup_alibaba() {
        http_ = doctor::make_bounded_http_client(tokens::make_curl_http_client(), opts_.timeout);
        const auto& ali = cfg_->alibaba;
        // An aggregate holding references: braces, so no make_unique.
        ctx_ = std::unique_ptr<tokens::provider_context>(  // NOLINT(modernize-make-unique)
            new tokens::provider_context{*http_, clock_, *cfg_, opts_.env, nullptr, {}, {}});
        ctx_->sts_endpoint = [this] {
            return tokens::resolve_sts_endpoint(*cfg_, opts_.env, node_region());
        };
        tokens::imds_options io;
        io.endpoint = tokens::resolve_imds_endpoint(*cfg_, opts_.env);
        io.role_name = !ali.ecs_role_name.empty()
                           ? ali.ecs_role_name
                           : tokens::first_env(opts_.env, {"ALIBABA_CLOUD_ECS_METADATA"}).value_or("");
        io.imdsv1_disabled = ali.imdsv1_disabled || tokens::env_flag(opts_.env, "ALIBABA_CLOUD_IMDSV1_DISABLED");
        io.imdsv2_disabled = tokens::env_flag(opts_.env, "ALIBABA_CLOUD_IMDSV2_DISABLED");
        io.token_ttl = duration_cast<std::chrono::seconds>(ali.imds_token_ttl);
        io.connect_timeout = std::min(io.connect_timeout, opts_.timeout);
        io.timeout = std::min(io.timeout, opts_.timeout);
        imds_ = std::make_shared<tokens::imds_client>(*http_, clock_, io);
        api_ = std::make_unique<tokens::acr_openapi>(*http_, clock_, opts_.timeout);
    }

    std::string node_region() {
        if (!cfg_->alibaba.region_id.empty()) {
            return cfg_->alibaba.region_id;
        }
        if (node_region_) {
            return *node_region_;
        }
        if (cfg_->alibaba.ecs_metadata_disabled || tokens::env_flag(opts_.env, "ALIBABA_CLOUD_ECS_METADATA_DISABLED")) {
            node_region_error_ = "no regionId is configured and instance metadata is disabled";
            return {};
        }
        if (!node_region_error_.empty()) {
            return {};  // asked once already: one metadata timeout is enough
        }
        auto r = imds_->region_id();
        if (!r) {
            node_region_error_ =
                "no regionId is configured and the node's region could not be read: " + r.error().describe();
            return {};
        }
        node_region_ = r.value();
        return r.value();
    }

    void check_credential_source() {
        if (cfg_->acr_instances.empty()) {
            return;  // no Alibaba identity is needed
        }
        const auto choice = tokens::choose_base_source(*cfg_, opts_.env);
        const bool needed = std::any_of(cfg_->acr_instances.begin(), cfg_->acr_instances.end(),
                                        [](const config::acr_instance& i) { return i.rrsa_role_arn.empty(); });
        auto made = tokens::make_base_provider(*ctx_, choice, imds_);
        if (!made) {
            const auto text = "credential source: none: " + made.error().message;
            if (needed) {
                emit(fail(text, doctor::fix_for_api_error(made.error(), "")));
            } else {
                emit(warn(text + " (every ACR instance uses its own RRSA role, so this is not needed)"));
            }
            return;
        }
        base_ = made.value();
        const std::string chosen =
            base_->identity() + (choice.detail.empty() || choice.source == tokens::chain_choice::kind::environment
                                     ? std::string()
                                     : " [" + choice.detail + "]");
        auto cred = base_->get(std::chrono::seconds(0));
        if (!cred) {
            base_failed_ = true;
            emit(fail("credential source: " + chosen + ": " + cred.error().describe(),
                      doctor::fix_for_api_error(cred.error(), base_->identity())));
            return;
        }
        std::string life;
        if (cred->expiration) {
            life = "STS credential (" + cred->source + ") expires " + expiry_text(*cred->expiration, clock_.now());
        } else if (cred->is_sts()) {
            life = "STS credential (" + cred->source + "), expiry unknown";
        } else {
            life = "long-term AccessKey (" + cred->source + "), does not expire";
        }
        emit(pass("credential source: " + chosen +
                  " (first configured of: environment AccessKey, AccessKey files, RRSA, ECS RAM role): " + life));
    }

    // 3. ---------------------------------------------------------------------------
    std::shared_ptr<tokens::credential_provider> instance_provider(const config::acr_instance& inst) {
        // As the credential store builds them: the add-on's per-instance RRSA role
        // replaces the base identity; assumeRoleARN adds STS AssumeRole on top.
        auto provider = base_;
        if (const auto rrsa = tokens::instance_rrsa(inst, opts_.env)) {
            provider =
                tokens::make_oidc_provider(*ctx_, *rrsa, tokens::role_session_name(opts_.env, inst.role_session_name),
                                           tokens::sts_session_duration(cfg_->alibaba.sts_duration));
        }
        const auto assume = tokens::instance_assume_role(inst, opts_.env);
        if (provider && assume) {
            provider = tokens::make_assume_role_provider(*ctx_, provider, *assume);
        }
        return provider;
    }

    void check_instances() {
        for (std::size_t i = 0; i < cfg_->acr_instances.size(); ++i) {
            const auto& inst = cfg_->acr_instances[i];
            instance_probe p;
            p.label = instance_label(inst, i);
            p.served = inst.domains;
            const std::string what =
                inst.instance_id.empty() ? "ACR Personal Edition " + p.label : "ACR instance " + p.label;
            p.region = !inst.region_id.empty() ? inst.region_id : node_region();
            if (p.region.empty()) {
                emit(fail(what + ": " + node_region_error_,
                          "set acrInstances[" + std::to_string(i) + "].regionId (or alibaba.regionId)"));
                instances_.push_back(std::move(p));
                continue;
            }
            if (inst.instance_id.empty() && p.served.empty()) {
                p.served = tokens::personal_edition_domains(p.region);
            }
            p.provider = instance_provider(inst);
            if (!p.provider) {
                emit(fail(what + " (region " + p.region + "): no Alibaba Cloud credential (see the credential source)",
                          doctor::fix_for_api_error(
                              tokens::api_error{"credential chain", "NoCredentials", {}, 0, {}, {}}, "")));
                instances_.push_back(std::move(p));
                continue;
            }
            const auto identity = p.provider->identity();
            if (p.provider == base_ && base_failed_) {
                // Asking again would only repeat the failure above (and its timeout).
                emit(warn(what + " (region " + p.region + "): not checked: the credential source failed (above)",
                          "fix the credential source first"));
                instances_.push_back(std::move(p));
                continue;
            }
            const auto endpoint = tokens::resolve_acr_endpoint(*cfg_, p.region);
            auto cred = p.provider->get(std::chrono::seconds(0));
            if (!cred) {
                emit(fail(tokens::describe_instance_failure(inst.instance_id, p.region, identity, cred.error()),
                          doctor::fix_for_api_error(cred.error(), identity)));
                instances_.push_back(std::move(p));
                continue;
            }
            auto pw = inst.instance_id.empty()
                          ? api_->get_personal_authorization_token(endpoint, cred.value())
                          : api_->get_authorization_token(endpoint, inst.instance_id, cred.value());
            if (pw) {
                // The password cannot outlive the STS credential that obtained it (facts §1.2).
                auto expires = pw->expires_at;
                if (cred->expiration && *cred->expiration < expires) {
                    expires = *cred->expiration;
                }
                std::string text = what;
                text += " (region " + p.region + ", as " + identity + "): GetAuthorizationToken at ";
                text += tokens::url_origin(endpoint);
                text += ": temporary user " + pw->username;
                text += ", password expires " + expiry_text(expires, clock_.now());
                emit(pass(std::move(text)));
            } else {
                emit(fail(tokens::describe_instance_failure(inst.instance_id, p.region, identity, pw.error()),
                          doctor::fix_for_api_error(pw.error(), identity)));
            }
            if (!inst.instance_id.empty()) {
                auto listed = api_->list_instance_endpoint(endpoint, inst.instance_id, cred.value());
                if (listed) {
                    emit(doctor::compare_domains(p.label, inst.domains, listed.value()));
                    if (inst.domains.empty()) {
                        for (const auto& d : listed.value()) {
                            if (std::find(p.served.begin(), p.served.end(), d.domain) == p.served.end()) {
                                p.served.push_back(d.domain);
                            }
                        }
                    }
                } else {
                    const auto text =
                        tokens::describe_instance_failure(inst.instance_id, p.region, identity, listed.error());
                    const auto fix = doctor::fix_for_api_error(listed.error(), identity);
                    if (inst.domains.empty()) {
                        emit(fail(text + "; no domains are configured, so the proxy serves nothing for it", fix));
                    } else {
                        emit(warn(text + "; its configured domains are served without it", fix));
                    }
                }
            }
            instances_.push_back(std::move(p));
        }
    }

    // 4. ---------------------------------------------------------------------------
    void build_routes() {
        auto served = std::make_shared<config::config>(*cfg_);
        for (std::size_t i = 0; i < served->acr_instances.size() && i < instances_.size(); ++i) {
            served->acr_instances[i].domains = instances_[i].served;
        }
        routes_ = routing::route_table(served);
        for (const auto& inst : cfg_->acr_instances) {
            for (const auto& d : inst.domains) {
                configured_.insert(config::to_lower(d));
            }
        }
        for (const auto& reg : cfg_->registries) {
            configured_.insert(config::to_lower(reg.host));
        }
        // ACR domains first, then the other registries, as configured.
        for (const auto& r : routes_.routes()) {
            if (r.kind == routing::route_kind::acr_instance) {
                served_.push_back(&r);
            }
        }
        for (const auto& r : routes_.routes()) {
            if (r.kind == routing::route_kind::registry) {
                served_.push_back(&r);
            }
        }
        if (served_.empty()) {
            emit(warn("no registry domain is served: nothing for containerd to pull through the proxy",
                      "configure acrInstances[].domains (or discoverable instances) or registries[]"));
        }
    }

    std::shared_ptr<net::ssl::context> tls_for(const std::string& ca_file, bool insecure, std::string& error) {
        try {
            return make_client_tls_context(ca_file, insecure);
        } catch (const std::exception& e) {
            error = e.what();
            return nullptr;
        }
    }

    /// DNS for `host` unless it is an IP literal: "" on success (and `shown` says what), else the error.
    std::string dns(const std::string& host, std::string& shown) {
        if (doctor::is_ip_literal(host)) {
            shown = "IP address, no lookup";
            return {};
        }
        const auto found = doctor::resolve_bounded(host, opts_.timeout);
        if (!found.error.empty()) {
            return "cannot resolve " + host + ": " + found.error;
        }
        shown = "resolves to " + fmt::format("{}", fmt::join(found.addresses, ", "));
        return {};
    }

    /// A served domain nobody configured (ListInstanceEndpoint's, or Personal
    /// Edition's by region) may be meant for another network (a *-vpc name
    /// outside the VPC): not reaching it is a warning; a configured one, a ✗.
    finding unreachable(const routing::route& r, std::string text, std::string fix) {
        if (configured_.count(r.host) != 0) {
            return fail(std::move(text), std::move(fix));
        }
        return warn(std::move(text) + " (a discovered domain: images pulled by this name fail from this node)",
                    std::move(fix));
    }

    void check_domains() {
        for (const auto* r : served_) {
            check_domain(*r);
        }
    }

    void check_domain(const routing::route& r) {
        const bool overridden = cfg_->endpoint_overrides.count(r.host) != 0;
        const auto& up = r.upstream;
        const std::string dial = url_text(up);
        const std::string via = overridden ? "endpointOverrides \u2192 " + dial : dial;
        const std::string key = overridden ? "endpointOverrides[\"" + r.host + "\"]" : std::string();
        std::shared_ptr<net::ssl::context> tls;
        if (up.scheme == "https") {
            std::string error;
            tls = tls_for(r.ca_file, r.insecure_skip_verify, error);
            if (!tls) {
                emit(fail(r.host + ": " + error, "fix caFile for " + r.host));
                return;
            }
        }
        std::string shown;
        if (auto err = dns(up.host, shown); !err.empty()) {
            emit(unreachable(r, r.host + " (" + via + "): " + err,
                             overridden ? "fix " + key + " (the proxy dials that host)"
                                        : "make " + up.host +
                                              " resolvable from this node (DNS in /etc/resolv.conf; a *-vpc "
                                              "domain resolves only inside a VPC attached to the instance)"));
            return;
        }
        auto path = up.path;
        while (!path.empty() && path.back() == '/') {
            path.pop_back();
        }
        const auto ep = make_endpoint({up.scheme, up.host, up.port, "/"}, path, tls, !r.insecure_skip_verify);
        const auto got = doctor::probe_upstream(ep, path + "/v2/", opts_.timeout);
        if (!got.connected) {
            std::string fix;
            if (got.error.find("TLS") != std::string::npos && got.error.find("timed out") == std::string::npos) {
                fix = (r.kind == routing::route_kind::registry
                           ? "set caFile of registries[] " + r.host + " to the CA that signed the certificate of " +
                                 up.host
                           : "the system CA bundle (ca-certificates) must verify the certificate of " + up.host) +
                      "; the certificate must name " + up.host;
            } else if (overridden) {
                fix = "check " + key + " and that the registry listens there";
            } else {
                fix = "allow this node to reach " + routing::authority_of(up) +
                      " (security group, egress rules, the instance's network ACL)";
            }
            emit(unreachable(r, r.host + " (" + via + ", " + shown + "): " + got.error, fix));
            return;
        }
        const std::string transport =
            up.scheme == "https"
                ? (r.insecure_skip_verify ? "TLS handshake ok (insecureSkipVerify: certificate not checked)"
                                          : "TLS handshake ok, certificate valid for " + up.host)
                : "plain http, no TLS to check";
        if (!got.error.empty()) {
            emit(fail(r.host + " (" + via + "): connected, " + transport + ", but " + got.error,
                      "check that " + dial + " is a registry (the path of " +
                          (overridden ? key : std::string("the URL")) + ")"));
            return;
        }
        emit(pass(r.host + " (" + via + "): " + shown + ", connected, " + transport));
        check_realm(r, got, tls);
    }

    void check_realm(const routing::route& r, const doctor::upstream_probe& got,
                     const std::shared_ptr<net::ssl::context>& tls) {
        const std::string head = r.host + ": GET /v2/ \u2192 " + std::to_string(got.status);
        if (got.status == 200) {
            emit(pass(head + ", no authentication asked for"));
            return;
        }
        if (got.status != 401) {
            emit(warn(head + ", expected 401 with a token challenge (or 200)",
                      "check that the URL the proxy dials for " + r.host + " is the registry's API root"));
            return;
        }
        std::vector<std::string_view> values(got.www_authenticate.begin(), got.www_authenticate.end());
        const auto challenges = tokens::parse_challenges(values);
        const auto bearer = challenges ? tokens::find_bearer(*challenges) : std::nullopt;
        if (!bearer) {
            if (challenges && tokens::has_basic(*challenges)) {
                emit(pass(head + " with a Basic challenge (no token realm)"));
            } else {
                emit(warn(head + " without a usable Bearer challenge (WWW-Authenticate " +
                              (values.empty() ? std::string("missing") : "malformed") +
                              "): the token flow cannot start",
                          "check that the URL the proxy dials for " + r.host + " is the registry itself"));
            }
            return;
        }
        const auto realm = tokens::parse_realm_url(bearer->realm);
        if (!realm) {
            emit(fail(head + ", but its realm " + tokens::scrub(bearer->realm) + " is not an http(s) URL",
                      "the registry's token service is misconfigured; report it to the registry's operator"));
            return;
        }
        const std::string realm_text =
            realm->scheme + "://" +
            (realm->host.find(':') != std::string::npos ? "[" + realm->host + "]" : realm->host) + ":" +
            std::to_string(realm->port);
        const std::string named = head + ", token realm " + realm_text +
                                  (bearer->service.empty() ? "" : " (service " + bearer->service + ")");
        const std::vector<std::string>* allow = nullptr;
        std::string allow_key;
        if (r.kind == routing::route_kind::acr_instance && r.acr != nullptr) {
            allow = &r.acr->realm_hosts;
            allow_key = "acrInstances[].realmHosts of " + r.acr->instance_id;
        } else if (r.registry != nullptr && r.registry->auth.kind != config::auth_kind::anonymous) {
            allow = &r.registry->realm_hosts;
            allow_key = "registries[].realmHosts of " + r.host;
        }
        if (allow != nullptr) {
            if (auto refusal = tokens::realm_refusal(*realm, *allow, r.host, r.upstream.scheme)) {
                emit(fail(named + ": the proxy will not send credentials there: " + *refusal,
                          "if " + realm->host + " really is this registry's token service, add it to " + allow_key));
                return;
            }
        }
        std::string shown;
        if (auto err = dns(realm->host, shown); !err.empty()) {
            emit(fail(named + ": " + err, "make " + realm->host + " resolvable from this node"));
            return;
        }
        std::shared_ptr<net::ssl::context> realm_tls;
        bool verify = true;
        if (realm->scheme == "https") {
            if (tls) {
                realm_tls = tls;  // the route's CA settings, as the proxy's realm client does
                verify = !r.insecure_skip_verify;
            } else {
                std::string error;
                realm_tls = tls_for("", false, error);
                if (!realm_tls) {
                    emit(fail(named + ": " + error, "install the system CA bundle (ca-certificates)"));
                    return;
                }
            }
        }
        const auto ep = make_endpoint({realm->scheme, realm->host, realm->port, "/"}, "", realm_tls, verify);
        const auto got_realm = doctor::probe_upstream(ep, {}, opts_.timeout);
        if (!got_realm.connected) {
            emit(fail(named + " (" + shown + "): " + got_realm.error,
                      "allow this node to reach " + realm->host + ":" + std::to_string(realm->port)));
            return;
        }
        emit(pass(named + ": " + shown + ", connected, " +
                  (realm->scheme == "https" ? "TLS handshake ok" : std::string("plain http, no TLS to check"))));
    }

    // 5. ---------------------------------------------------------------------------
    std::string install_command() const {
        std::string cmd = "acr-credential-proxy hosts install";
        if (!opts_.load.config_file.empty()) {
            cmd += " --config " + opts_.load.config_file;
        }
        if (!opts_.load.acr_configuration_dir.empty()) {
            cmd += " --acr-configuration " + opts_.load.acr_configuration_dir;
        }
        return cmd + " --certs-dir " + opts_.certs_dir.string();
    }

    void check_hosts_files() {
        const auto proxy = hosts::proxy_url(cfg_->listen);
        std::set<std::string> seen;
        for (const auto* r : served_) {
            const auto dir = hosts::normalize_domain(r->host);
            if (!dir) {
                emit(fail("hosts.toml for " + r->host + ": not a name containerd looks up",
                          "correct the domain in the configuration"));
                continue;
            }
            if (!seen.insert(*dir).second) {
                continue;
            }
            const auto path = opts_.certs_dir / *dir / "hosts.toml";
            std::optional<std::string> text;
            std::error_code ec;
            if (std::filesystem::exists(path, ec)) {
                std::ifstream in(path, std::ios::binary);
                if (!in) {
                    emit(fail("hosts.toml " + path.string() + ": cannot be read",
                              "run doctor as a user that can read " + opts_.certs_dir.string()));
                    continue;
                }
                std::ostringstream ss;
                ss << in.rdbuf();
                text = ss.str();
            }
            auto found = doctor::check_hosts_toml(r->host, path.string(), text, proxy, install_command());
            if (found.status == doctor::mark::fail && configured_.count(r->host) == 0) {
                // `hosts install` writes configured domains only; serve --certs-dir also discovered ones.
                found.fix = "run serve with --certs-dir " + opts_.certs_dir.string() +
                            " (it writes hosts.toml for discovered domains too), or add " + r->host +
                            " to acrInstances[].domains and run `" + install_command() + "`";
            }
            emit(found);
        }
    }

    // 6. ---------------------------------------------------------------------------
    void check_containerd() {
        const auto& path = opts_.containerd_config;
        std::optional<std::string> text;
        std::error_code ec;
        if (std::filesystem::exists(path, ec)) {
            std::ifstream in(path, std::ios::binary);
            if (!in) {
                emit(fail("containerd config " + path.string() + ": cannot be read",
                          "run doctor as root (or a user that can read it)"));
                return;
            }
            std::ostringstream ss;
            ss << in.rdbuf();
            text = ss.str();
        }
        emit(doctor::check_containerd_config(text, path.string(), opts_.certs_dir.string()));
    }

    // 7. ---------------------------------------------------------------------------
    tokens::http_outcome local_request(const std::string& method, const std::string& url,
                                       std::vector<std::pair<std::string, std::string>> headers = {}) {
        tokens::http_request req;
        req.method = method;
        req.url = url;
        req.headers = std::move(headers);
        req.bypass_proxy = true;  // loopback: never through an HTTP proxy
        req.timeout = opts_.timeout;
        req.connect_timeout = opts_.timeout;
        return http_->perform(req);
    }

    void check_readiness() {
        const auto url = hosts::proxy_url(cfg_->admin_listen) + "/readyz";
        const auto got = local_request("GET", url);
        if (!got.response) {
            emit(fail("the running proxy: " + url + ": " + got.error,
                      "start the proxy (systemctl start acr-credential-proxy, or the DaemonSet pod on this node); "
                      "its admin endpoints listen on adminListen " +
                          hosts::proxy_url(cfg_->admin_listen).substr(7)));
            return;
        }
        const auto body = trim(got.response->body.substr(0, 2000));  // names reasons, never secrets
        const auto status = std::to_string(got.response->status);
        if (got.response->status == 200) {
            emit(pass("the running proxy: " + url + " \u2192 200 " + body));
            return;
        }
        emit(fail("the running proxy: " + url + " \u2192 " + status + " " + body,
                  "fix the cause it names (the credential and instance checks above say more), then run doctor "
                  "again"));
    }

    // 7b. the pull scope: the rule, and one list of this node's pods as the proxy would do it.
    void check_scope() {
        const auto& sc = cfg_->scope;
        const auto rule = routing::scope_rule::from(sc);
        if (!sc.enabled) {
            // A documented choice, not a fault: said plainly, as serve says it once at start-up.
            emit(
                pass("pull scope: off (no `scope` section): every pod on this node gets the node's credentials; "
                     "a `scope:` section limits them to chosen namespaces and ServiceAccounts (docs/scope.md)"));
            return;
        }
        emit(pass("pull scope: " + rule.describe_namespaces() + "; " + rule.describe_service_accounts() +
                  "; waitForPod " + std::to_string(sc.wait_for_pod.count()) + " ms"));
        auto access = config::load_kube_access(opts_.kube);
        if (!access.access) {
            emit(fail("pull scope: the Kubernetes API: " + fmt::format("{}", fmt::join(access.errors, "; ")),
                      "run in the DaemonSet (in-cluster access) or pass --kubeconfig FILE; the proxy refuses to "
                      "start with a scope it cannot enforce"));
            return;
        }
        const auto node = config::node_name_of_this_node(opts_.node_name);
        if (!node.error.empty()) {
            emit(fail("pull scope: " + node.error, "pass --node-name NAME (the Kubernetes node name)"));
            return;
        }
        pod_watcher_options wo;
        wo.access = std::move(*access.access);
        wo.node_name = node.name;
        wo.rule = rule;
        wo.connect_timeout = opts_.timeout;
        wo.list_timeout = opts_.timeout;
        auto watcher = std::make_unique<pod_watcher>(std::move(wo));
        const auto& a = watcher->options().access;
        if (auto err = watcher->list_now(std::chrono::milliseconds(0)); !err.empty()) {
            emit(fail("pull scope: listing the pods of node " + node.name + " (" + node.from + ") from " + a.server +
                          " (" + a.source + "): " + err,
                      "grant the proxy's identity get/list/watch on pods (deploy/kubernetes has the ClusterRole), "
                      "check the token or client certificate and that the API server is reachable"));
            return;
        }
        const auto index = watcher->holder().load();
        emit(pass("pull scope: node " + node.name + " (" + node.from + "): " + std::to_string(index->pods_indexed()) +
                  " pod(s), " + std::to_string(index->references_indexed()) + " in-scope image reference(s), from " +
                  a.server));
        scope_ = std::move(watcher);
    }

    // With a pull scope: which pods on this node reference the image, and what the proxy decides.
    void check_image_scope(const routing::image_reference& ref) {
        if (!cfg_->scope.enabled || !scope_) {
            return;
        }
        const auto index = scope_->holder().load();
        const auto pods = index->pods_referencing(ref.host, ref.repository);
        std::vector<std::string> names;
        for (const auto* p : pods) {
            if (names.size() == 5) {
                names.push_back("and " + std::to_string(pods.size() - 5) + " more");
                break;
            }
            names.push_back(p->id() + " (ServiceAccount " + p->service_account + ", " +
                            (index->rule().allows(*p) ? "in scope" : "out of scope") + ")");
        }
        const auto d = index->decide(ref.host, ref.repository);
        const std::string what = "image " + ref.str() + ": pull scope";
        switch (d.verdict) {
            case routing::scope_verdict::allowed:
                emit(pass(what + ": allowed, " + d.reason + "; referenced by " +
                          fmt::format("{}", fmt::join(names, ", "))));
                break;
            case routing::scope_verdict::denied:
                emit(fail(
                    what + ": denied, " + d.reason + "; referenced by " + fmt::format("{}", fmt::join(names, ", ")),
                    "the proxy answers 404 and containerd pulls from the registry itself with the pod's own "
                    "imagePullSecrets; to give it the node's credentials add the namespace to "
                    "watch-namespace / scope.namespaces, or the ServiceAccount to service-account / "
                    "scope.serviceAccounts"));
                break;
            case routing::scope_verdict::unknown:
                emit(warn(what + ": " + d.reason +
                          "; a pull now waits up to waitForPod for such a pod, then gets 404 (containerd then "
                          "falls back to the registry itself)"));
                break;
        }
    }

    // 8. ---------------------------------------------------------------------------
    void check_image(const std::string& text) {
        const auto parsed = doctor::parse_image_reference(text);
        std::string example = "team/app:v1";
        if (!served_.empty()) {
            example = served_.front()->host + "/team/app:v1";
        }
        if (!parsed.ref) {
            emit(fail("image: " + parsed.error, "write it as host[:port]/path[:tag][@digest], e.g. " + example));
            return;
        }
        const auto& ref = *parsed.ref;
        const auto* route = routes_.find(ref.host);
        if (route == nullptr) {
            std::vector<std::string> names;
            for (const auto* r : served_) {
                names.push_back(r->host);
            }
            emit(fail("image " + ref.str() + ": its registry " + ref.host +
                          " is not a domain this proxy serves (the add-on's \"image address does not match the "
                          "domain\"); served: " +
                          (names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "))),
                      names.empty()
                          ? "configure " + ref.host + " in acrInstances[].domains or registries[]"
                          : "pull it by a served domain (e.g. " + names.front() + "/" + ref.repository + ":" +
                                (ref.tag.empty() ? std::string("TAG") : ref.tag) + "), or add " + ref.host +
                                " to acrInstances[].domains (or registries[]) and run `" + install_command() + "`"));
            return;
        }
        emit(pass("image " + ref.str() + ": " + ref.host + " is served (" +
                  (route->kind == routing::route_kind::acr_instance && route->acr != nullptr
                       ? "ACR instance " + (route->acr->instance_id.empty() ? std::string("Personal Edition")
                                                                            : route->acr->instance_id)
                       : std::string("registries[]")) +
                  ")"));
        check_image_scope(ref);
        const auto url = hosts::proxy_url(cfg_->listen) + "/v2/" + ref.repository + "/manifests/" + ref.reference() +
                         "?ns=" + query_escape_host(ref.host);
        const std::vector<std::pair<std::string, std::string>> accept = {{"Accept", std::string(manifest_accept)}};
        const auto head = local_request("HEAD", url, accept);
        const std::string what = "image " + ref.str() + ": manifest HEAD through the proxy (" + url + ")";
        if (!head.response) {
            emit(fail(what + ": " + head.error, "start the proxy (see the readiness check above)"));
            return;
        }
        const auto& res = *head.response;
        if (res.status == 200) {
            emit(pass(what + " \u2192 200, " + res.header("docker-content-digest").value_or("no digest header") + ", " +
                      res.header("content-type").value_or("no media type")));
            return;
        }
        // HEAD has no body: a GET says why (registry error JSON; the proxy's own names the cause).
        const auto get = local_request("GET", url, accept);
        std::string why;
        if (get.response) {
            if (get.response->status == 200) {
                emit(warn(what + " \u2192 " + std::to_string(res.status) + ", but GET \u2192 200 (" +
                          get.response->header("docker-content-digest").value_or("no digest header") + ")"));
                return;
            }
            why = registry_error_text(get.response->body);
        }
        const std::string head_text = what + " \u2192 " + std::to_string(res.status) + (why.empty() ? "" : ": " + why);
        std::string fix;
        switch (res.status) {
            case 404:
                if (why.find("MANIFEST_UNKNOWN") != std::string::npos ||
                    why.find("NAME_UNKNOWN") != std::string::npos || why.empty()) {
                    fix = "the repository or tag does not exist on " + ref.host + ": check the name and tag " +
                          (ref.digest.empty() ? "'" + ref.tag + "'" : "(digest " + ref.digest + ")") + ", or push it";
                } else {
                    fix =
                        "the proxy answered 404 itself (see its message): it serves only configured registries "
                        "(and, with a pull scope, images that in-scope pods on this node reference)";
                }
                break;
            case 401:
            case 403:
                fix =
                    "grant the node's identity cr:PullRepository on this repository (the message names the "
                    "instance and identity)";
                break;
            case 503:
                fix = "the proxy has no credentials for " + ref.host +
                      ": fix the credential and instance checks above (see /readyz)";
                break;
            case 502:
            case 504:
                fix = "the proxy cannot reach " + ref.host + ": fix the reachability check above";
                break;
            default:
                fix = "see the status and message above, and the proxy's log";
                break;
        }
        emit(fail(head_text, fix));
    }

    const doctor_options& opts_;
    std::ostream& out_;
    int passed_ = 0;
    int failed_ = 0;
    int warned_ = 0;

    std::shared_ptr<const config::config> cfg_;
    tokens::system_clock_source clock_;
    std::unique_ptr<tokens::http_client> http_;
    std::unique_ptr<tokens::provider_context> ctx_;
    std::shared_ptr<tokens::imds_client> imds_;
    std::unique_ptr<tokens::acr_openapi> api_;
    std::optional<std::string> node_region_;
    std::string node_region_error_;
    std::shared_ptr<tokens::credential_provider> base_;
    bool base_failed_ = false;  // base_ could not produce a credential
    std::vector<instance_probe> instances_;
    routing::route_table routes_;
    std::vector<const routing::route*> served_;
    std::set<std::string> configured_;    // domains named in the configuration (lower-case)
    std::unique_ptr<pod_watcher> scope_;  // listed once when a scope is configured
};

}  // namespace

int run_doctor(const doctor_options& opts, std::ostream& out) {
    runner r(opts, out);
    return r.run();
}

}  // namespace acp::proxy
