// POSIX file helpers for the certs.d directory: bounded reads, atomic
// replacement (temp file in the same directory + fsync + rename + directory
// fsync) and removals that reach the disk.
//
// Owns: nothing; every error is returned as one line naming the path and the
// reason ("PATH: cannot …: strerror"). Thread affinity: none. Blocking I/O:
// for the CLI and the control path, never the data path.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace acp::hosts::atomic_file {

/// An error line, or nullopt on success.
using result = std::optional<std::string>;

struct ownership {
    mode_t mode = 0644;
    uid_t uid = 0;
    gid_t gid = 0;
};

/// The mode and owner of an existing file (following symlinks), nullopt if it cannot be stat'ed.
std::optional<ownership> ownership_of(const std::filesystem::path& path);

/// Reads a regular file of at most `limit` bytes into `out`.
result read(const std::filesystem::path& path, std::string& out, std::size_t limit);

/// Replaces `path` with `content` atomically: readers see the old or the new
/// bytes, never a mix; on failure the old file is untouched and no temporary
/// file is left behind. `like`: mode and (when running as root) owner to give
/// the new file; a new file gets 0644 otherwise.
result write(const std::filesystem::path& path, std::string_view content, std::optional<ownership> like = std::nullopt);

/// rename(2) plus an fsync of the directory.
result rename(const std::filesystem::path& from, const std::filesystem::path& to);

/// unlink(2) plus an fsync of the directory; a missing file is not an error.
result remove(const std::filesystem::path& path);

/// True when `path` exists (without following a final symlink).
bool exists(const std::filesystem::path& path);

}  // namespace acp::hosts::atomic_file
