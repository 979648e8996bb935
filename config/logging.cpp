#include "config/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>

namespace acp::logging {
namespace {

std::mutex setup_mutex;
config::log_config current;  // guarded by setup_mutex
spdlog::sink_ptr shared_sink;

// Renders the message payload as a JSON string, so a line is one JSON object.
class json_message_flag final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
        const auto escaped = json_escape(std::string_view(msg.payload.data(), msg.payload.size()));
        dest.append(escaped.data(), escaped.data() + escaped.size());
    }
    [[nodiscard]] std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<json_message_flag>();
    }
};

std::unique_ptr<spdlog::formatter> make_formatter(config::log_format format) {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    if (format == config::log_format::json) {
        f->add_flag<json_message_flag>('*').set_pattern(
            R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","logger":"%n","msg":%*})");
    } else {
        f->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %-5l %n: %v");
    }
    return f;
}

spdlog::level::level_enum level_of(const std::string& name) {
    return spdlog::level::from_str(name);  // unknown names map to off; config validation rejects them
}

std::shared_ptr<spdlog::logger> make_or_update(std::string_view name) {
    auto l = spdlog::get(std::string(name));
    if (!l) {
        l = std::make_shared<spdlog::logger>(std::string(name), shared_sink);
        spdlog::register_logger(l);
    }
    l->set_level(level_of(current.level));
    return l;
}

void ensure_sink() {
    if (!shared_sink) {
        shared_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    }
    shared_sink->set_formatter(make_formatter(current.format));
}

}  // namespace

void setup(const config::log_config& cfg) {
    std::lock_guard lock(setup_mutex);
    current = cfg;
    ensure_sink();
    spdlog::flush_on(spdlog::level::trace);
    for (auto name : subsystems) {
        make_or_update(name);
    }
}

std::shared_ptr<spdlog::logger> logger(std::string_view subsystem) {
    if (auto l = spdlog::get(std::string(subsystem))) {
        return l;
    }
    std::lock_guard lock(setup_mutex);
    ensure_sink();
    return make_or_update(subsystem);
}

std::string redact(std::string_view secret) {
    return secret.empty() ? "<empty>" : "<redacted " + std::to_string(secret.size()) + " bytes>";
}

std::string json_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out.push_back('"');
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (u < 0x20) {
                static constexpr char hex[] = "0123456789abcdef";
                out += "\\u00";
                out.push_back(hex[u >> 4U]);
                out.push_back(hex[u & 0xFU]);
            } else {
                out.push_back(c);
            }
        }
    }
    out.push_back('"');
    return out;
}

}  // namespace acp::logging
