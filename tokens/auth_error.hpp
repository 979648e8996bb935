// Errors of the registry token flow, as error codes of their own category
// ("acp.tokens") so the proxy's one error → status mapping can tell them
// apart. The detail (which realm, which registry) goes to the log line the
// provider writes where it fails; the code's message is fit for a client.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace acp::tokens {

enum class auth_errc {
    credentials_unavailable = 1,  // no Basic credentials to log in with (yet): 503
    realm_refused,                // the challenge's realm may not receive credentials: 502
    realm_unreachable,            // DNS/connect/TLS failure towards the realm: 502
    realm_timeout,                // the realm did not answer in time: 504
    realm_rejected_credentials,   // the realm said 401/403 to our Basic credentials: 403
    realm_bad_response,           // the realm answered non-2xx or unparsable JSON: 502
    bad_challenge,                // the registry's WWW-Authenticate cannot be parsed: 502
    shutting_down,                // the proxy is stopping: 503
};

const boost::system::error_category& auth_category() noexcept;
boost::system::error_code make_error_code(auth_errc e) noexcept;

}  // namespace acp::tokens

namespace boost::system {
template <>
struct is_error_code_enum<acp::tokens::auth_errc> : std::true_type {};
}  // namespace boost::system
