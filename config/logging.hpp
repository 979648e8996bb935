// Process-wide logging: one spdlog logger per subsystem, text or JSON lines.
//
// Owns: the sinks and the format. `setup()` is called once from main (and
// again on reload to change level/format); `logger()` is cheap and
// thread-safe afterwards. Secrets go through `redact()` before any log call.
#pragma once

#include "config/config.hpp"

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>

namespace acp::logging {

/// Subsystems with their own logger (the logger's name in every line).
inline constexpr std::string_view subsystems[] = {"main", "config", "routing", "tokens", "proxy", "access", "admin"};

/// Creates (or reconfigures) every subsystem logger on stderr.
void setup(const config::log_config& cfg);

/// The named subsystem logger; creates it with the current settings if needed.
std::shared_ptr<spdlog::logger> logger(std::string_view subsystem);

/// What may be logged of a secret: its length and nothing else.
std::string redact(std::string_view secret);

/// JSON string escaping for the json line format (also used by access logs).
std::string json_escape(std::string_view s);

}  // namespace acp::logging
