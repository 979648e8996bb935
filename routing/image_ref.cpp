#include "routing/image_ref.hpp"

#include "config/values.hpp"
#include "routing/distribution_path.hpp"

#include <algorithm>

namespace acp::routing {
namespace {

// How a part of the input appears in an error: printable ASCII, at most 100
// characters (a pod spec's image string may be anything, of any length).
std::string shown(std::string_view text) {
    constexpr std::size_t limit = 100;
    std::string out;
    for (const char c : text.substr(0, limit)) {
        const auto u = static_cast<unsigned char>(c);
        out += (u >= 0x20 && u < 0x7f) ? c : '?';
    }
    if (text.size() > limit) {
        out += "...";
    }
    return out;
}

}  // namespace

std::string image_reference::str() const {
    std::string out = host + "/" + repository;
    if (!tag.empty()) {
        out += ":" + tag;
    }
    if (!digest.empty()) {
        out += "@" + digest;
    }
    return out;
}

image_reference_result parse_image_reference(std::string_view text) {
    auto bad = [&](const std::string& why) {
        return image_reference_result{std::nullopt, "'" + shown(text) + "' is not an image reference: " + why};
    };
    if (text.empty()) {
        return bad("it is empty");
    }
    if (std::any_of(text.begin(), text.end(), [](char c) {
            return static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f;
        })) {
        return bad("it contains spaces or control characters");
    }
    if (text.find("://") != std::string_view::npos) {
        return bad("no scheme, please: host[:port]/path[:tag][@digest]");
    }
    image_reference ref;
    std::string_view rest = text;
    if (const auto at = rest.find('@'); at != std::string_view::npos) {
        ref.digest = std::string(rest.substr(at + 1));
        rest = rest.substr(0, at);
        if (!is_valid_digest(ref.digest)) {
            return bad("the digest '" + shown(ref.digest) +
                       "' is not algorithm:hex (e.g. sha256 and 64 lower-case hex digits)");
        }
    }
    const auto last_slash = rest.rfind('/');
    if (const auto colon = rest.rfind(':');
        colon != std::string_view::npos && (last_slash == std::string_view::npos || colon > last_slash)) {
        ref.tag = std::string(rest.substr(colon + 1));
        rest = rest.substr(0, colon);
        if (!is_valid_tag(ref.tag)) {
            return bad("the tag '" + shown(ref.tag) + "' is not valid ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})");
        }
    }
    if (rest.empty()) {
        return bad("the name is empty");
    }
    // distribution/reference normalize.go splitDockerDomain: the first component
    // is a host when it has a '.' or ':', is "localhost", or has upper-case letters.
    std::string_view host;
    std::string_view path = rest;
    if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
        const auto first = rest.substr(0, slash);
        const bool is_host = first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
                             config::to_lower(first) != first;
        if (is_host) {
            host = first;
            path = rest.substr(slash + 1);
        }
    }
    if (!host.empty() && host.find_first_of(".:") == std::string_view::npos && host != "localhost") {
        // A host only by its capitals: containerd would dial it as written, but once
        // lower-cased (hosts are case-insensitive) it reads back as a Docker Hub
        // namespace, so the reference has no one normal form. Nobody's registry is
        // named like that; say what would make it a host.
        return bad("the first component '" + shown(host) +
                   "' is a registry host only because of its capital letters; write the host in lower case "
                   "with a '.' or ':port' (or use lower case for a Docker Hub namespace)");
    }
    if (!host.empty() && !is_valid_host(host)) {
        return bad("the registry host '" + shown(host) + "' is not host[:port]");
    }
    ref.host = host.empty() ? "docker.io" : config::to_lower(host);
    if (ref.host == "index.docker.io") {
        ref.host = "docker.io";
    }
    if (path.empty()) {
        return bad("the repository path is empty");
    }
    if (config::to_lower(path) != path) {
        return bad("repository names must be lower-case");
    }
    ref.repository = std::string(path);
    if (ref.host == "docker.io" && ref.repository.find('/') == std::string::npos) {
        ref.repository = "library/" + ref.repository;
    }
    if (ref.host.size() + 1 + ref.repository.size() > max_name_length) {
        return bad("the name is longer than 255 characters");
    }
    if (!is_valid_name(ref.repository)) {
        return bad("the repository path '" + shown(path) +
                   "' breaks the grammar (components of [a-z0-9] joined by '.', '_', '__' or '-', separated by '/')");
    }
    if (host.empty() && path.size() == 64 && std::all_of(path.begin(), path.end(), [](char c) {
            return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        })) {
        return bad("a 64-digit hexadecimal name is an image ID, not a repository");
    }
    if (ref.tag.empty() && ref.digest.empty()) {
        ref.tag = "latest";
    }
    return {std::move(ref), {}};
}

}  // namespace acp::routing
