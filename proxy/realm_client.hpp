// The proxy's client for registry token realms: one GET per token fetch, on
// the data-path io_context (async DNS, connect, TLS, bounded read), with the
// TLS settings of the route whose registry sent the challenge.
//
// Owns: nothing between calls. A realm on an origin the data path reaches
// over HTTP/2 (the route's `http2`, the registry's own host) shares that
// connection (shared_upstreams); otherwise a fresh HTTP/1.1 connection per
// fetch: fetches are rare, one per scope and token lifetime, and
// single-flight in tokens/token_cache.
// Thread affinity: the io_context of the awaiting coroutine. Cancellation:
// bounded by timeouts.upstreamConnect and timeouts.upstreamHeaders; the
// token cache keeps the fetch alive for its other waiters.
#pragma once

#include "config/config.hpp"
#include "proxy/net.hpp"
#include "proxy/snapshot.hpp"
#include "tokens/auth_provider.hpp"

#include <boost/asio/ssl/context.hpp>

#include <memory>

namespace acp::proxy {

/// A realm fetcher for one route. `tls` is the route's client context (its
/// caFile / system bundle); for an http registry it is null and an https
/// realm is verified with `system_tls` (built off the event loop).
tokens::realm_fetch_fn make_realm_fetcher(std::shared_ptr<net::ssl::context> tls, bool verify_peer,
                                          std::shared_ptr<net::ssl::context> system_tls,
                                          config::timeout_config timeouts,
                                          config::http2_mode http2 = config::http2_mode::off,
                                          std::shared_ptr<const shared_upstreams> shared = nullptr);

}  // namespace acp::proxy
