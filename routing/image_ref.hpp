// Image references as a pod spec or a user writes them (`alpine`,
// `reg.example:5000/team/app:v1@sha256:…`), normalised the way containerd and
// kubelet do before they pull (github.com/distribution/reference, reference.go
// and normalize.go): a name without a registry host is on docker.io, a
// docker.io name without '/' is under library/, index.docker.io is docker.io,
// the registry host is lower-case, and the default tag is `latest`.
//
// The (host, repository) pair is what containerd then asks the mirror for:
// `GET /v2/<repository>/…?ns=<host>`.
//
// Owns: pure functions, no I/O; safe on any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace acp::routing {

/// A parsed, normalised image reference.
struct image_reference {
    std::string host;        // registry host[:port], lower-case ("docker.io" for familiar names)
    std::string repository;  // e.g. "library/alpine", "team/app"
    std::string tag;         // "latest" when neither a tag nor a digest is given; may be empty with a digest
    std::string digest;      // "sha256:…" or empty

    /// What a manifest request names: the digest when there is one, else the tag.
    [[nodiscard]] const std::string& reference() const { return digest.empty() ? tag : digest; }
    /// host/repository[:tag][@digest]
    [[nodiscard]] std::string str() const;
    bool operator==(const image_reference&) const = default;
};

struct image_reference_result {
    std::optional<image_reference> ref;
    std::string error;  // set when ref is nullopt: what is wrong, in one line
};

/// host[:port]/path[:tag][@digest] (docker reference grammar; IPv6 hosts in
/// brackets). Fails on upper-case repository names, bad tags or digests,
/// empty path components, 64-hex image IDs and names over 255 characters.
/// The error quotes `text` (printable ASCII, at most 100 characters).
[[nodiscard]] image_reference_result parse_image_reference(std::string_view text);

}  // namespace acp::routing
