// The public entry points of config/loader.hpp: sources → stages → snapshot.
#include "config/loader.hpp"

#include "config/load_stages.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <system_error>

namespace acp::config {
namespace {

constexpr std::uintmax_t max_file_size = 16u << 20;  // no config file or secret is anywhere near this

std::string what_of(const std::vector<diagnostic>& errors) {
    std::string out;
    for (const auto& e : errors) {
        out += (out.empty() ? "" : "\n") + e.str();
    }
    return out.empty() ? "invalid configuration" : out;
}

std::optional<std::string> read_process_file(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        return std::nullopt;
    }
    const auto size = std::filesystem::file_size(path, ec);
    if (ec || size > max_file_size) {
        return std::nullopt;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    std::string content(static_cast<std::size_t>(size), '\0');
    in.read(content.data(), static_cast<std::streamsize>(size));
    if (in.bad()) {
        return std::nullopt;
    }
    content.resize(static_cast<std::size_t>(in.gcount()));
    return content;
}

}  // namespace

std::string diagnostic::str() const {
    std::string out;
    if (!file.empty()) {
        out += file;
        if (line > 0) {
            out += ":" + std::to_string(line);
        }
        out += ": ";
    }
    if (!key.empty()) {
        out += key + ": ";
    }
    return out + message;
}

config_error::config_error(std::vector<diagnostic> errors, std::vector<diagnostic> warnings)
    : std::runtime_error(what_of(errors)), errors_(std::move(errors)), warnings_(std::move(warnings)) {}

environment environment::process() {
    return {
        [](const std::string& name) -> std::optional<std::string> {
            const char* v = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe): startup and reload only
            if (v == nullptr) {
                return std::nullopt;
            }
            return std::string(v);
        },
        read_process_file,
    };
}

load_result load(const load_options& opts, const environment& env) {
    if (opts.config_file.empty() && opts.acr_configuration_dir.empty()) {
        throw config_error({{"", "", 0, "no configuration source; expected --config FILE or --acr-configuration DIR"}});
    }
    load_context ctx{env, {}, {}};
    config cfg;
    std::string sources;
    if (!opts.config_file.empty()) {
        sources = opts.config_file;
        if (const auto text = env.read_file(opts.config_file)) {
            read_yaml_into(cfg, *text, opts.config_file, ctx);
        } else {
            ctx.diags.error({opts.config_file, "", 0}, "cannot read the file; expected a readable YAML config file");
        }
    }
    if (const auto& path = opts.acr_configuration_dir; !path.empty()) {
        sources += (sources.empty() ? "" : ", ") + path;
        std::optional<configmap_entries> entries;
        std::error_code ec;
        if (std::filesystem::is_directory(path, ec)) {
            entries = read_configmap_directory(path, env, ctx.diags);
        } else if (const auto text = env.read_file(path)) {
            entries = read_configmap_manifest(*text, path, ctx.diags);
        } else {
            ctx.diags.error({path, "", 0},
                            "cannot read; expected a mounted ConfigMap directory or a ConfigMap manifest file");
        }
        if (entries) {
            read_configmap_into(cfg, *entries, path, ctx);
        }
    }
    cfg.source = sources;
    return finish(std::move(cfg), ctx);
}

load_result load_yaml(std::string_view text, std::string_view source, const environment& env) {
    load_context ctx{env, {}, {}};
    config cfg;
    cfg.source = std::string(source);
    read_yaml_into(cfg, text, cfg.source, ctx);
    return finish(std::move(cfg), ctx);
}

load_result load_configmap(const std::map<std::string, std::string>& data, std::string_view source,
                           const environment& env, std::shared_ptr<const config> base) {
    load_context ctx{env, {}, {}};
    config cfg = base ? *base : config{};
    if (base) {
        seed_origins(cfg, ctx.origins);
    }
    configmap_entries entries;
    for (const auto& [key, value] : data) {
        entries[key] = {value, std::string(source), 0};
    }
    read_configmap_into(cfg, entries, std::string(source), ctx);
    cfg.source = base && !base->source.empty() ? base->source + ", " + std::string(source) : std::string(source);
    return finish(std::move(cfg), ctx);
}

std::map<std::string, std::string> configmap_manifest_data(std::string_view yaml, std::string_view source) {
    diagnostics diags;
    const auto entries = read_configmap_manifest(yaml, std::string(source), diags);
    if (!entries) {
        throw config_error(diags.errors());
    }
    std::map<std::string, std::string> out;
    for (const auto& [key, e] : *entries) {
        out[key] = e.value;
    }
    return out;
}

}  // namespace acp::config
