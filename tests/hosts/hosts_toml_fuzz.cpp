// libFuzzer target for the hosts.toml core: any input must render without a
// crash, and whenever it renders, the result must be a managed file that
// parses, lists the proxy first, strips back to the kept user text and
// renders to itself again (idempotence). Seeds: tests/hosts/fuzz_corpus/.
// Also built without libFuzzer as hosts_fuzz_smoke (fuzz_smoke_main.cpp).
#include "hosts/hosts_toml.hpp"
#include "hosts/toml_writer.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

void require(bool ok) {
    if (!ok) {
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    constexpr std::string_view domain = "demo-registry.cn-hangzhou.cr.aliyuncs.com";
    constexpr std::string_view proxy = "http://127.0.0.1:5005";
    acp::hosts::render_options opts;
    opts.version = "0.0.0-fuzz";

    (void)acp::hosts::is_managed(text);
    (void)acp::hosts::managed_proxy_url(text);
    const auto s = acp::hosts::strip_managed(text);
    require(s.user_text.size() <= text.size());

    const auto r = acp::hosts::render(domain, proxy, text, opts);
    if (r.status != acp::hosts::render_status::ok) {
        require(r.content.empty() && !r.reason.empty());
        return 0;
    }
    require(acp::hosts::is_managed(r.content));
    const auto back = acp::hosts::strip_managed(r.content);
    require(!back.error && back.user_text == r.user_text);
    const auto doc = toml::parse(r.content);  // throws (and so fails) if not TOML
    const auto* host = doc.get_as<toml::table>("host");
    require(host != nullptr);
    const auto order = acp::hosts::toml_writer::in_source_order(*host);
    require(!order.empty() && order.front().first->str() == proxy);
    const auto again = acp::hosts::render(domain, proxy, r.content, opts);
    require(again.status == acp::hosts::render_status::ok && again.content == r.content);
    return 0;
}
