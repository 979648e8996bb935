// Namespace aliases and the completion token used across proxy/ (as in the
// Beast examples). No state, no thread affinity.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>

namespace acp::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

/// For operations whose errors are expected and branched on: `auto [ec, n] = co_await op(..., use_nothrow);`
inline constexpr auto use_nothrow = net::as_tuple(net::use_awaitable);

}  // namespace acp::proxy
