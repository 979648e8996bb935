#include "tokens/auth_error.hpp"

#include <string>

namespace acp::tokens {
namespace {

// boost::system::error_category's destructor is not virtual by design (categories are singletons).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class auth_category_impl final : public boost::system::error_category {
public:
    [[nodiscard]] const char* name() const noexcept override { return "acp.tokens"; }
    [[nodiscard]] std::string message(int ev) const override {
        switch (static_cast<auth_errc>(ev)) {
            case auth_errc::credentials_unavailable: return "registry credentials are not available";
            case auth_errc::realm_refused: return "the registry's token realm is not allowed to receive credentials";
            case auth_errc::realm_unreachable: return "the registry's token realm is unreachable";
            case auth_errc::realm_timeout: return "the registry's token realm timed out";
            case auth_errc::realm_rejected_credentials: return "the registry's token realm rejected the credentials";
            case auth_errc::realm_bad_response: return "the registry's token realm answered with an error";
            case auth_errc::bad_challenge: return "the registry sent a malformed authentication challenge";
            case auth_errc::shutting_down: return "the proxy is shutting down";
        }
        return "token flow error";
    }
};
#pragma GCC diagnostic pop

}  // namespace

const boost::system::error_category& auth_category() noexcept {
    static const auth_category_impl instance;
    return instance;
}

boost::system::error_code make_error_code(auth_errc e) noexcept {
    return {static_cast<int>(e), auth_category()};
}

}  // namespace acp::tokens
