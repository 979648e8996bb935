#include "tokens/credential_chain.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace acp::tokens {

namespace {

std::string trim(std::string_view s) {
    const auto is_space = [](char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
    };
    while (!s.empty() && is_space(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && is_space(s.back())) {
        s.remove_suffix(1);
    }
    return std::string(s);
}

std::optional<std::string> read_text_file(const config::environment& env, const std::string& path) {
    if (env.read_file) {
        return env.read_file(path);
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void record(credential_gauges* gauges, const cloud_credential& c) {
    if (gauges != nullptr) {
        // A credential without expiry reports only its age.
        gauges->issued_at_ms.store(to_epoch_ms(c.obtained_at), std::memory_order_relaxed);
        gauges->expires_at_ms.store(c.expiration ? to_epoch_ms(*c.expiration) : 0, std::memory_order_relaxed);
    }
}

class static_provider final : public credential_provider {
public:
    static_provider(cloud_credential c, std::string identity) : c_(std::move(c)) { identity_ = std::move(identity); }
    api_result<cloud_credential> get(wall_clock::duration /*min_validity*/) override { return c_; }

private:
    cloud_credential c_;
};

class access_key_file_provider final : public credential_provider {
public:
    explicit access_key_file_provider(const provider_context& ctx) : ctx_(ctx) {
        identity_ = "AccessKey files (" + ctx.cfg.alibaba.access_key_id_file + ")";
    }

    api_result<cloud_credential> get(wall_clock::duration /*min_validity*/) override {
        const auto& a = ctx_.cfg.alibaba;
        const auto read = [&](const std::string& path) -> std::optional<std::string> {
            auto v = read_text_file(ctx_.env, path);
            if (!v) {
                return std::nullopt;
            }
            return trim(*v);
        };
        auto id = read(a.access_key_id_file);
        auto secret = read(a.access_key_secret_file);
        if (!id || !secret || id->empty() || secret->empty()) {
            return api_error{"AccessKey files",
                             "Unreadable",
                             "cannot read a non-empty AccessKey id from " + a.access_key_id_file + " and secret from " +
                                 a.access_key_secret_file,
                             0,
                             {},
                             {}};
        }
        cloud_credential c;
        c.access_key_id = std::move(*id);
        c.access_key_secret = config::secret(std::move(*secret));
        if (!a.security_token_file.empty()) {
            auto token = read(a.security_token_file);
            if (!token || token->empty()) {
                return api_error{"AccessKey files",
                                 "Unreadable",
                                 "cannot read a non-empty security token from " + a.security_token_file,
                                 0,
                                 {},
                                 {}};
            }
            c.security_token = config::secret(std::move(*token));
        }
        c.obtained_at = ctx_.clock.now();
        c.source = "access_key_files";
        return c;
    }

private:
    provider_context ctx_;
};

/// Shared caching for providers whose credential expires.
class caching_provider : public credential_provider {
public:
    api_result<cloud_credential> get(wall_clock::duration min_validity) final {
        if (cached_ && cached_->valid_for(now(), min_validity)) {
            return *cached_;
        }
        auto r = fetch(min_validity);
        if (!r) {
            // Still serve a cached credential that has not expired yet.
            if (cached_ && cached_->valid_for(now(), wall_clock::duration::zero())) {
                return *cached_;
            }
            return r;
        }
        cached_ = r.value();
        record(gauges_, *cached_);
        return r;
    }
    void invalidate() override { cached_.reset(); }

protected:
    caching_provider(const clock_source& clock, credential_gauges* gauges) : clock_(clock), gauges_(gauges) {}
    [[nodiscard]] time_point now() const { return clock_.now(); }
    virtual api_result<cloud_credential> fetch(wall_clock::duration min_validity) = 0;

private:
    const clock_source& clock_;
    credential_gauges* gauges_;
    std::optional<cloud_credential> cached_;
};

class oidc_provider final : public caching_provider {
public:
    oidc_provider(const provider_context& ctx, rrsa_settings rrsa, std::string session, std::chrono::seconds duration,
                  credential_gauges* gauges)
        : caching_provider(ctx.clock, gauges),
          ctx_(ctx),
          rrsa_(std::move(rrsa)),
          session_(std::move(session)),
          duration_(duration),
          sts_(ctx.http, ctx.clock, std::chrono::milliseconds(10000), ctx.metrics, ctx.nonce) {
        identity_ = "RRSA role " + rrsa_.role_arn;
    }

private:
    api_result<cloud_credential> fetch(wall_clock::duration /*min_validity*/) override {
        // The projected token rotates: read it fresh for every exchange.
        auto token = read_text_file(ctx_.env, rrsa_.token_file);
        if (!token || trim(*token).empty()) {
            return api_error{"AssumeRoleWithOIDC",
                             "OIDCTokenFileUnreadable",
                             "cannot read the OIDC token file " + rrsa_.token_file,
                             0,
                             {},
                             {}};
        }
        oidc_params p;
        p.role_arn = rrsa_.role_arn;
        p.oidc_provider_arn = rrsa_.oidc_provider_arn;
        p.oidc_token = config::secret(trim(*token));
        p.role_session_name = session_;
        p.duration = duration_;
        return sts_.assume_role_with_oidc(ctx_.sts_endpoint(), p);
    }

    provider_context ctx_;
    rrsa_settings rrsa_;
    std::string session_;
    std::chrono::seconds duration_;
    sts_client sts_;
};

class ecs_role_provider final : public caching_provider {
public:
    ecs_role_provider(std::shared_ptr<imds_client> imds, const clock_source& clock, credential_gauges* gauges)
        : caching_provider(clock, gauges), imds_(std::move(imds)) {
        identity_ = "ECS RAM role (instance metadata)";
    }

private:
    api_result<cloud_credential> fetch(wall_clock::duration /*min_validity*/) override {
        return imds_->role_credentials();
    }

    std::shared_ptr<imds_client> imds_;
};

class assume_role_provider final : public caching_provider {
public:
    assume_role_provider(const provider_context& ctx, std::shared_ptr<credential_provider> base,
                         assume_role_params params, credential_gauges* gauges)
        : caching_provider(ctx.clock, gauges),
          ctx_(ctx),
          base_(std::move(base)),
          params_(std::move(params)),
          sts_(ctx.http, ctx.clock, std::chrono::milliseconds(10000), ctx.metrics, ctx.nonce) {
        identity_ = "role " + params_.role_arn + " assumed by " + base_->identity();
    }

    void invalidate() override {
        caching_provider::invalidate();
        base_->invalidate();
    }

private:
    api_result<cloud_credential> fetch(wall_clock::duration min_validity) override {
        for (int attempt = 0; attempt < 2; ++attempt) {
            auto source = base_->get(min_validity);
            if (!source) {
                return source.error();
            }
            auto r = sts_.assume_role(ctx_.sts_endpoint(), source.value(), params_);
            if (r || attempt == 1 || !r.error().credential_rejected()) {
                return r;
            }
            base_->invalidate();  // the source credential went stale under us: fetch it again, once
        }
        return api_error{"AssumeRole", "Unreachable", {}, 0, {}, {}};
    }

    provider_context ctx_;
    std::shared_ptr<credential_provider> base_;
    assume_role_params params_;
    sts_client sts_;
};

}  // namespace

std::string_view to_string(chain_choice::kind k) {
    switch (k) {
        case chain_choice::kind::environment:
            return "environment";
        case chain_choice::kind::access_key_files:
            return "access_key_files";
        case chain_choice::kind::rrsa:
            return "rrsa";
        case chain_choice::kind::ecs_ram_role:
            return "ecs_ram_role";
        case chain_choice::kind::none:
            break;
    }
    return "none";
}

std::shared_ptr<credential_provider> make_static_provider(cloud_credential c, std::string identity) {
    return std::make_shared<static_provider>(std::move(c), std::move(identity));
}

std::shared_ptr<credential_provider> make_access_key_file_provider(const provider_context& ctx) {
    return std::make_shared<access_key_file_provider>(ctx);
}

std::shared_ptr<credential_provider> make_oidc_provider(const provider_context& ctx, rrsa_settings rrsa,
                                                        std::string session_name, std::chrono::seconds duration,
                                                        credential_gauges* gauges) {
    return std::make_shared<oidc_provider>(ctx, std::move(rrsa), std::move(session_name), duration, gauges);
}

std::shared_ptr<credential_provider> make_assume_role_provider(const provider_context& ctx,
                                                               std::shared_ptr<credential_provider> base,
                                                               assume_role_params params, credential_gauges* gauges) {
    return std::make_shared<assume_role_provider>(ctx, std::move(base), std::move(params), gauges);
}

chain_choice choose_base_source(const config::config& cfg, const config::environment& env) {
    if (auto ak = access_key_from_env(env)) {
        return {chain_choice::kind::environment, ak->id_variable};
    }
    if (!cfg.alibaba.access_key_id_file.empty() || !cfg.alibaba.access_key_secret_file.empty()) {
        return {chain_choice::kind::access_key_files, cfg.alibaba.access_key_id_file};
    }
    if (auto rrsa = rrsa_from_env(env)) {
        return {chain_choice::kind::rrsa, rrsa->role_arn};
    }
    if (cfg.alibaba.ecs_metadata_disabled || env_flag(env, "ALIBABA_CLOUD_ECS_METADATA_DISABLED")) {
        return {chain_choice::kind::none, "the ECS RAM role is disabled"};
    }
    const auto role = !cfg.alibaba.ecs_role_name.empty() ? cfg.alibaba.ecs_role_name
                                                         : first_env(env, {"ALIBABA_CLOUD_ECS_METADATA"}).value_or("");
    return {chain_choice::kind::ecs_ram_role, role};
}

api_result<std::shared_ptr<credential_provider>> make_base_provider(const provider_context& ctx,
                                                                    const chain_choice& choice,
                                                                    std::shared_ptr<imds_client> imds,
                                                                    credential_gauges* gauges) {
    switch (choice.source) {
        case chain_choice::kind::environment: {
            auto ak = access_key_from_env(ctx.env);
            if (!ak) {
                break;
            }
            cloud_credential c;
            c.access_key_id = std::move(ak->access_key_id);
            c.access_key_secret = std::move(ak->access_key_secret);
            c.security_token = std::move(ak->security_token);
            c.obtained_at = ctx.clock.now();
            c.source = "environment";
            if (gauges != nullptr) {
                record(gauges, c);
            }
            return make_static_provider(std::move(c), "environment AccessKey (" + ak->id_variable + ")");
        }
        case chain_choice::kind::access_key_files:
            return make_access_key_file_provider(ctx);
        case chain_choice::kind::rrsa: {
            auto rrsa = rrsa_from_env(ctx.env);
            if (!rrsa) {
                break;
            }
            const auto duration = std::chrono::duration_cast<std::chrono::seconds>(ctx.cfg.alibaba.sts_duration);
            return make_oidc_provider(ctx, std::move(*rrsa), role_session_name(ctx.env, ""),
                                      std::max(duration, std::chrono::seconds(900)), gauges);
        }
        case chain_choice::kind::ecs_ram_role:
            if (imds) {
                return make_ecs_role_provider(std::move(imds), ctx.clock, gauges);
            }
            break;
        case chain_choice::kind::none:
            break;
    }
    return api_error{"credential chain",
                     "NoCredentials",
                     "no Alibaba Cloud credential source is configured (" + choice.detail +
                         "): set ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET, AccessKey files, RRSA "
                         "(ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE) "
                         "or attach a RAM role to the ECS instance",
                     0,
                     {},
                     {}};
}

std::shared_ptr<credential_provider> make_ecs_role_provider(std::shared_ptr<imds_client> imds,
                                                            const clock_source& clock, credential_gauges* gauges) {
    return std::make_shared<ecs_role_provider>(std::move(imds), clock, gauges);
}

}  // namespace acp::tokens
