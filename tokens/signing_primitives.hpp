// Building blocks shared by the Alibaba Cloud request signers: hashing, HMAC,
// encodings and the one percent-encoding rule every signature uses.
//
// Owns: pure functions over OpenSSL 3 (EVP / HMAC one-shot APIs). No state,
// no thread affinity; every function is re-entrant.
#pragma once

#include "tokens/alibaba_clock.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace acp::tokens {

/// RFC 3986 percent-encoding: unreserved `A-Z a-z 0-9 - _ . ~` stay, every
/// other byte becomes `%XX` (upper-case hex). This is what the Alibaba SDKs
/// reach with url.QueryEscape + ("+"→"%20", "*"→"%2A", "%7E"→"~").
[[nodiscard]] std::string percent_encode(std::string_view in);

/// Inverse of percent_encode; '+' is left as is. nullopt on a bad escape.
[[nodiscard]] std::optional<std::string> percent_decode(std::string_view in);

/// %XX escapes decoded in either case; a malformed escape is kept as it is
/// (for looking inside text a server wrote, never for parsing).
[[nodiscard]] std::string percent_decode_lenient(std::string_view in);

[[nodiscard]] std::string hex_lower(std::string_view bytes);
[[nodiscard]] std::string to_base64(std::string_view bytes);

[[nodiscard]] std::string sha256(std::string_view data);  // raw 32 bytes
[[nodiscard]] std::string sha256_hex(std::string_view data);
[[nodiscard]] std::string hmac_sha256(std::string_view key, std::string_view data);  // raw 32 bytes
[[nodiscard]] std::string hmac_sha1(std::string_view key, std::string_view data);    // raw 20 bytes

/// 32 hex characters from the OpenSSL CSPRNG (x-acs-signature-nonce / SignatureNonce).
[[nodiscard]] std::string random_nonce();

/// "2006-01-02T15:04:05Z" (UTC, whole seconds), the format of x-acs-date,
/// Timestamp and the STS / IMDS Expiration fields.
[[nodiscard]] std::string iso8601_utc(time_point t);
[[nodiscard]] std::optional<time_point> parse_iso8601_utc(std::string_view s);

}  // namespace acp::tokens
