// libFuzzer target: the add-on's `acr-configuration` ConfigMap, both forms.
//   - Input starting with "@@": a mounted directory's files, as records
//     "@@<key>\n<content>" (each key one file), through load_configmap(), the
//     pure part the directory reader shares (read_configmap_into).
//   - Any other input: a manifest file (configmap_manifest_data, then
//     load_configmap), and the input as the `acr-registry-info` file alone.
// Each loads on defaults and on top of a base YAML config. The same checks as
// yaml_config: only config_error escapes, no secret shown, render round-trips.
#include "tests/fuzz/config_fuzz_support.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <string>

// Declared for -Wmissing-declarations; libFuzzer (or fuzz_smoke_main.cpp) calls it.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::shared_ptr<const acp::config::config> base_config() {
    static const auto base = acp::config::load_yaml(R"(
registries:
  - host: registry.example.com
    auth: {type: basic, username: robot, passwordFile: /etc/acp/robot.pw}
acrInstances:
  - instanceId: cri-base000000000001
    regionId: cn-hangzhou
    domains: [base-registry.cn-hangzhou.cr.aliyuncs.com]
)",
                                                    "base.yaml", acp::fuzz::config_env())
                                 .cfg;
    return base;
}

std::map<std::string, std::string> directory_files(std::string_view input) {
    std::map<std::string, std::string> files;
    std::size_t pos = 0;
    while (pos < input.size() && input.substr(pos, 2) == "@@") {
        const auto end = input.find("\n@@", pos);
        const auto record =
            input.substr(pos + 2, end == std::string_view::npos ? std::string_view::npos : end - pos - 2);
        const auto nl = record.find('\n');
        const auto key = std::string(record.substr(0, nl));
        files[key] = nl == std::string_view::npos ? std::string() : std::string(record.substr(nl + 1));
        if (end == std::string_view::npos) {
            break;
        }
        pos = end + 1;
    }
    return files;
}

void load(const std::map<std::string, std::string>& data, std::string_view input) {
    for (const auto& base : {std::shared_ptr<const acp::config::config>(), base_config()}) {
        try {
            const auto r = acp::config::load_configmap(data, "/etc/acr-configuration", acp::fuzz::config_env(), base);
            acp::fuzz::check_accepted(r, input);
        } catch (const acp::config::config_error& e) {
            acp::fuzz::check_rejected(e, input);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto input = acp::fuzz::as_text(data, size);
    if (input.substr(0, 2) == "@@") {
        load(directory_files(input), input);
        return 0;
    }
    load({{"acr-registry-info", std::string(input)}}, input);
    std::map<std::string, std::string> manifest;
    try {
        manifest = acp::config::configmap_manifest_data(input, "configmap.yaml");
    } catch (const acp::config::config_error& e) {
        acp::fuzz::check_rejected(e, input);
        return 0;
    }
    load(manifest, input);
    return 0;
}
