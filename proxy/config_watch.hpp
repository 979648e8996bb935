// Watches the config file's directory and/or the ConfigMap directory with
// inotify and reports relevant changes. Directories, not files: editors
// replace files by rename, and Kubernetes swaps a `..data` symlink.
//
// Owns: the inotify descriptor (an asio stream_descriptor, read
// asynchronously on the io_context). Thread affinity: that io_context.
// Cancellation: next_change() honours the awaiting coroutine's cancellation.
#pragma once

#include "proxy/net.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>

#include <string>
#include <vector>

namespace acp::proxy {

class config_watch {
public:
    /// Watches the directory of `config_file` (events for its name or
    /// `..data`) and `configmap_dir` (any key or `..data`); either may be empty.
    config_watch(const net::any_io_executor& ex, const std::string& config_file, const std::string& configmap_dir);

    [[nodiscard]] bool active() const noexcept { return fd_.is_open() && !watches_.empty(); }

    /// Completes after the next relevant change (ec: the read failed or was cancelled).
    net::awaitable<error_code> next_change();

    void close() noexcept;

private:
    struct watch {
        int wd = -1;
        std::string only_name;  // "": any name in the directory is relevant
    };
    bool relevant(int wd, std::string_view name) const;
    bool scan(std::size_t n) const;  // any relevant event in the first n bytes of buffer_

    net::posix::stream_descriptor fd_;
    std::vector<watch> watches_;
    std::vector<char> buffer_;
};

}  // namespace acp::proxy
