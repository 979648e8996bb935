// Test driver: the `hosts` command without the main executable or a config file.
//
//   hosts_tool [--listen HOST:PORT] [--domain DOMAIN]... -- install|remove|print [hosts options]
//
// Each --domain becomes a registries[].host; everything after `--` goes to
// run_hosts_command unchanged. Used by ctr_hosts_dir_test.py.
#include "config/loader.hpp"
#include "hosts/command.hpp"

#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    acp::config::config cfg;
    std::vector<std::string> rest;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--") {
            rest.assign(argv + i + 1, argv + argc);
            break;
        }
        if (i + 1 >= argc) {
            std::cerr << "hosts_tool: " << arg << " needs a value\n";
            return 2;
        }
        const std::string value = argv[++i];
        if (arg == "--listen") {
            const auto listen = acp::config::parse_listen_address(value);
            if (!listen) {
                std::cerr << "hosts_tool: bad --listen '" << value << "'\n";
                return 2;
            }
            cfg.listen = *listen;
        } else if (arg == "--domain") {
            acp::config::registry reg;
            reg.host = value;
            cfg.registries.push_back(reg);
        } else {
            std::cerr << "hosts_tool: unknown option '" << arg << "'\n";
            return 2;
        }
    }
    return acp::hosts::run_hosts_command(rest, cfg, std::cout, std::cerr);
}
