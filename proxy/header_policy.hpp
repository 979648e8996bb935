// Which header fields cross the proxy (RFC 9110 §7.6.1): hop-by-hop fields
// never do, every end-to-end field does, with every repeated line kept in
// its order (containerd sends one `Accept` line per media type; collapsing
// them changes what a registry answers). Beast's fields container keeps the
// lines of one name together; order between different names carries no
// meaning in HTTP.
//
// Owns: pure functions over beast::http::fields. No thread affinity.
#pragma once

#include "proxy/net.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace acp::proxy {

/// Lower-cased field names listed in every `Connection` line.
std::vector<std::string> connection_tokens(const http::fields& f);

/// ASCII lower-case copy (field names, tokens).
std::string lower_ascii(std::string_view s);

/// `s` without leading and trailing spaces and tabs (RFC 9110 OWS).
std::string_view trim_ows(std::string_view s) noexcept;

/// Adds the lower-cased comma-separated tokens of one `Connection` value.
void add_connection_tokens(std::string_view value, std::vector<std::string>& out);

/// connection_tokens() for a plain list of fields with `name` and `value`
/// (the HTTP/2 codecs' field spans).
template <class Fields>
std::vector<std::string> connection_tokens_of(const Fields& fields) {
    std::vector<std::string> out;
    for (const auto& f : fields) {
        if (lower_ascii(f.name) == "connection") {
            add_connection_tokens(f.value, out);
        }
    }
    return out;
}

/// True for the fixed hop-by-hop names (any case): Connection, Keep-Alive,
/// Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE, Trailer,
/// Transfer-Encoding, Upgrade.
bool is_hop_by_hop(std::string_view name) noexcept;

/// Removes the hop-by-hop fields and those named in `Connection`, keeping the
/// order of everything else.
void strip_hop_by_hop(http::fields& f);

/// Copies the end-to-end fields of a downstream request onto an upstream one,
/// in order, except `Host` (set per hop by the caller) and the framing fields
/// (`Content-Length`, `Expect`): GET and HEAD carry no body.
void copy_request_fields(const http::fields& downstream, http::fields& upstream);

/// All values of one field, in order (e.g. every WWW-Authenticate line).
std::vector<std::string> field_values(const http::fields& f, http::field name);

}  // namespace acp::proxy
