#include "hosts/atomic_file.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace acp::hosts::atomic_file {

namespace {

std::string failure(const std::filesystem::path& path, std::string_view what, int err) {
    return path.string() + ": " + std::string(what) + ": " + std::generic_category().message(err);
}

// Makes a rename or unlink in `dir` durable.
result sync_dir(const std::filesystem::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return failure(dir, "cannot open directory to sync it", errno);
    }
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0 && err != EINVAL) {  // some file systems cannot sync directories
        return failure(dir, "cannot sync directory", err);
    }
    return std::nullopt;
}

std::filesystem::path dir_of(const std::filesystem::path& path) {
    auto dir = path.parent_path();
    return dir.empty() ? std::filesystem::path(".") : dir;
}

}  // namespace

std::optional<ownership> ownership_of(const std::filesystem::path& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        return std::nullopt;
    }
    return ownership{static_cast<mode_t>(st.st_mode & 07777), st.st_uid, st.st_gid};
}

result read(const std::filesystem::path& path, std::string& out, std::size_t limit) {
    out.clear();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return failure(path, "cannot open", errno);
    }
    char buf[8192];
    for (;;) {
        const auto n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            return failure(path, "cannot read", err);
        }
        if (n == 0) {
            break;
        }
        out.append(buf, static_cast<std::size_t>(n));
        if (out.size() > limit) {
            ::close(fd);
            return path.string() + ": larger than " + std::to_string(limit) + " bytes; not a hosts.toml";
        }
    }
    ::close(fd);
    return std::nullopt;
}

result write(const std::filesystem::path& path, std::string_view content, std::optional<ownership> like) {
    const auto dir = dir_of(path);
    std::string tmp = (dir / ("." + path.filename().string() + ".tmp-XXXXXX")).string();
    const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
    if (fd < 0) {
        return failure(dir, "cannot create a temporary file", errno);
    }
    auto fail = [&](std::string_view what, int err) {
        ::close(fd);
        ::unlink(tmp.c_str());
        return failure(path, what, err);
    };
    if (::fchmod(fd, like ? like->mode : 0644) != 0) {
        return fail("cannot set the file mode", errno);
    }
    if (like && ::geteuid() == 0 && ::fchown(fd, like->uid, like->gid) != 0) {
        return fail("cannot set the owner", errno);
    }
    std::size_t done = 0;
    while (done < content.size()) {
        const auto n = ::write(fd, content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return fail("cannot write", errno);
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
        return fail("cannot sync", errno);
    }
    if (::close(fd) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        return failure(path, "cannot close", err);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        return failure(path, "cannot replace", err);
    }
    return sync_dir(dir);
}

result rename(const std::filesystem::path& from, const std::filesystem::path& to) {
    if (::rename(from.c_str(), to.c_str()) != 0) {
        return failure(to, "cannot rename " + from.string() + " to it", errno);
    }
    return sync_dir(dir_of(to));
}

result remove(const std::filesystem::path& path) {
    if (::unlink(path.c_str()) != 0) {
        if (errno == ENOENT) {
            return std::nullopt;
        }
        return failure(path, "cannot remove", errno);
    }
    return sync_dir(dir_of(path));
}

bool exists(const std::filesystem::path& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace acp::hosts::atomic_file
