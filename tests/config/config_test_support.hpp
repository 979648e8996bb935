// Test helpers for config/: an in-memory environment (files and variables),
// a temporary directory, and Kubernetes' ConfigMap volume layout.
#pragma once

#include "config/loader.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace acp::config::testing {

/// Files and environment variables the loaders see; nothing else exists.
struct fake_env {
    std::map<std::string, std::string> files;
    std::map<std::string, std::string> vars;

    [[nodiscard]] environment env() const {
        return {
            [this](const std::string& name) -> std::optional<std::string> {
                const auto it = vars.find(name);
                return it == vars.end() ? std::nullopt : std::optional(it->second);
            },
            [this](const std::string& path) -> std::optional<std::string> {
                const auto it = files.find(path);
                return it == files.end() ? std::nullopt : std::optional(it->second);
            },
        };
    }
};

inline const char* const test_ca_pem = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

/// A fresh directory under $TMPDIR, removed with everything in it.
class temp_dir {
public:
    temp_dir() {
        auto pattern = (std::filesystem::temp_directory_path() / "acp-config-test-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            FAIL("mkdtemp failed");
        }
        path_ = pattern;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

    void write(const std::filesystem::path& relative, const std::string& content) const {
        const auto p = path_ / relative;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p, std::ios::binary) << content;
    }

private:
    std::filesystem::path path_;
};

/// What the kubelet's atomic writer makes of a ConfigMap volume:
///   DIR/..2026_11_28_12_00_00.000000001/<key>   the files
///   DIR/..data -> ..2026_11_28_12_00_00.000000001
///   DIR/<key>  -> ..data/<key>
inline void write_configmap_volume(const temp_dir& dir, const std::map<std::string, std::string>& data) {
    const std::string stamp = "..2026_11_28_12_00_00.000000001";
    for (const auto& [key, value] : data) {
        dir.write(std::filesystem::path(stamp) / key, value);
    }
    std::filesystem::create_directory_symlink(stamp, dir.path() / "..data");
    for (const auto& [key, value] : data) {
        std::filesystem::create_symlink(std::filesystem::path("..data") / key, dir.path() / key);
    }
}

/// Every message of a load that failed (empty when it did not fail).
inline std::vector<std::string> errors_of(const std::function<void()>& load) {
    try {
        load();
    } catch (const config_error& e) {
        std::vector<std::string> out;
        for (const auto& d : e.errors()) {
            out.push_back(d.str());
        }
        return out;
    }
    return {};
}

inline std::string joined(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines) {
        out += l + "\n";
    }
    return out;
}

inline std::vector<std::string> strs(const std::vector<diagnostic>& ds) {
    std::vector<std::string> out;
    for (const auto& d : ds) {
        out.push_back(d.str());
    }
    return out;
}

}  // namespace acp::config::testing
