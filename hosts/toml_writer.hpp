// Writing TOML text from toml++ nodes: keys, values and whole documents in
// standard form (tables as [headers], entries in source order).
//
// Owns: nothing but formatting. Internal to hosts/ (the public API is
// hosts_toml.hpp). Thread affinity: none; pure functions. No async calls.
#pragma once

#include <string>
#include <string_view>
#include <toml++/toml.h>
#include <utility>
#include <vector>

namespace acp::hosts::toml_writer {

/// A basic string literal: "…" with TOML escapes.
std::string quote(std::string_view s);

/// A key: bare when it is [A-Za-z0-9_-]+, quoted otherwise.
std::string key(std::string_view k);

/// A value on one line (arrays and tables inline).
std::string value(const toml::node& n);

/// A table's entries ordered by where they were written (parse order), so a
/// re-rendered file keeps the user's order ([host] order matters to containerd).
std::vector<std::pair<const toml::key*, const toml::node*>> in_source_order(const toml::table& t);

/// `root` in standard form: root values first, then every table as a [header]
/// in source order. The `host` table and its entries are always written as
/// [host."…"] headers (never inline or dotted), leaving out `drop_host`.
/// Comments are not kept (the parser does not keep them).
std::string normalized_document(const toml::table& root, std::string_view drop_host, std::string_view nl);

}  // namespace acp::hosts::toml_writer
