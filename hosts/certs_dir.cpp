#include "hosts/certs_dir.hpp"

#include "hosts/atomic_file.hpp"

#include <algorithm>
#include <cerrno>
#include <set>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace acp::hosts {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t max_file_size = 1 << 20;  // a hosts.toml is a few hundred bytes

struct paths {
    fs::path dir;
    fs::path file;
    fs::path backup;
    fs::path state;
};

paths paths_for(const fs::path& certs_dir, std::string_view domain) {
    const auto dir = certs_dir / std::string(domain);
    return {dir, dir / std::string(hosts_file_name), dir / std::string(backup_file_name),
            dir / std::string(state_file_name)};
}

enum class kind { missing, regular, symlink, other, unreadable };

kind kind_of(const fs::path& p, int& err) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) {
        err = errno;
        return errno == ENOENT ? kind::missing : kind::unreadable;
    }
    if (S_ISLNK(st.st_mode)) {
        return kind::symlink;
    }
    return S_ISREG(st.st_mode) ? kind::regular : kind::other;
}

bool is_blank(std::string_view s) {
    return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// Re-reads the file just before changing it: someone else may have written it since the plan.
atomic_file::result unchanged_since_plan(const file_change& c) {
    int err = 0;
    const auto k = kind_of(c.path, err);
    if (c.original.empty() && k == kind::missing) {
        return std::nullopt;
    }
    std::string now;
    if (k != kind::regular || atomic_file::read(c.path, now, max_file_size) || now != c.original) {
        return c.path.string() + ": changed while installing; left as it is now";
    }
    return std::nullopt;
}

// A managed directory whose domain is no longer wanted: how to undo our change.
file_change plan_undo(const fs::path& certs_dir, const std::string& domain) {
    const auto p = paths_for(certs_dir, domain);
    file_change c;
    c.domain = domain;
    c.path = p.file;
    c.configured = false;
    const bool has_backup = atomic_file::exists(p.backup);
    std::string backup;
    if (has_backup) {
        if (auto e = atomic_file::read(p.backup, backup, max_file_size)) {
            c.reason = *e;
            return c;
        }
    }
    int err = 0;
    switch (kind_of(p.file, err)) {
        case kind::missing:
            c.what = has_backup ? action::restore : action::remove;
            c.content = backup;
            return c;
        case kind::symlink:
            c.reason = p.file.string() + ": is a symbolic link; left untouched";
            return c;
        case kind::other:
            c.reason = p.file.string() + ": is not a regular file; left untouched";
            return c;
        case kind::unreadable:
            c.reason = p.file.string() + ": " + std::generic_category().message(err) + "; left untouched";
            return c;
        case kind::regular:
            break;
    }
    if (auto e = atomic_file::read(p.file, c.original, max_file_size)) {
        c.reason = *e;
        return c;
    }
    const auto s = strip_managed(c.original);
    if (!s.managed) {
        c.reason = p.file.string() + ": no longer carries the acr-credential-proxy marker; left untouched" +
                   (has_backup ? " (the original stays at " + p.backup.string() + ")" : std::string());
        return c;
    }
    if (s.error) {
        c.reason = p.file.string() + ": " + *s.error + "; left untouched";
        return c;
    }
    if (has_backup) {
        // Restore byte for byte unless the user edited outside our block since.
        std::vector<std::string> as_installed = {backup, backup + "\n"};
        const auto r = render(domain, managed_proxy_url(c.original).value_or(""), backup);
        if (r.status == render_status::ok) {
            as_installed.push_back(r.user_text);
        }
        // A blank user part: the managed file was deleted and re-created since; the original still wins.
        if (is_blank(s.user_text) ||
            std::find(as_installed.begin(), as_installed.end(), s.user_text) != as_installed.end()) {
            c.what = action::restore;
            c.content = backup;
            return c;
        }
        c.what = action::strip;
        c.content = s.user_text;
        c.notes.push_back(p.file.string() +
                          ": edited since install; removing only the managed block (the original "
                          "from before install stays at " +
                          p.backup.string() + ")");
        return c;
    }
    if (is_blank(s.user_text)) {
        c.what = action::remove;
        return c;
    }
    c.what = action::strip;
    c.content = s.user_text;
    c.notes.push_back(p.file.string() + ": lines were added since install; removing only the managed block");
    return c;
}

// Directories under certs_dir that hold one of our files.
std::vector<std::string> managed_domains(const fs::path& certs_dir, std::vector<std::string>& errors) {
    std::vector<std::string> out;
    std::error_code ec;
    fs::directory_iterator it(certs_dir, ec);
    if (ec) {
        if (ec != std::errc::no_such_file_or_directory) {
            errors.push_back(certs_dir.string() + ": cannot list: " + ec.message());
        }
        return out;
    }
    for (; it != fs::directory_iterator(); it.increment(ec)) {
        if (ec) {
            errors.push_back(certs_dir.string() + ": cannot list: " + ec.message());
            break;
        }
        std::error_code dir_ec;
        if (!it->is_directory(dir_ec)) {
            continue;
        }
        const auto name = it->path().filename().string();
        const auto p = paths_for(certs_dir, name);
        bool ours = atomic_file::exists(p.backup) || atomic_file::exists(p.state);
        int err = 0;
        if (!ours && kind_of(p.file, err) == kind::regular) {
            std::string text;
            ours = !atomic_file::read(p.file, text, max_file_size) && is_managed(text);
        }
        if (ours) {
            out.push_back(name);
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

file_change plan_one(const fs::path& certs_dir, const std::string& domain, const std::string& proxy,
                     const render_options& opts) {
    const auto p = paths_for(certs_dir, domain);
    file_change c;
    c.domain = domain;
    c.path = p.file;
    int err = 0;
    switch (kind_of(p.file, err)) {
        case kind::missing: {
            int dir_err = 0;
            const auto dir_kind = kind_of(p.dir, dir_err);
            std::error_code ec;
            if (dir_kind != kind::missing && !fs::is_directory(p.dir, ec)) {
                c.reason = p.dir.string() + ": exists and is not a directory; left untouched";
                return c;
            }
            c.what = action::create;
            c.create_dir = dir_kind == kind::missing;
            c.content = render(domain, proxy, std::nullopt, opts).content;
            return c;
        }
        case kind::symlink:
            c.reason = p.file.string() + ": is a symbolic link; left untouched (replace it with a file to merge into)";
            return c;
        case kind::other:
            c.reason = p.file.string() + ": is not a regular file; left untouched";
            return c;
        case kind::unreadable:
            c.reason = p.file.string() + ": " + std::generic_category().message(err) + "; left untouched";
            return c;
        case kind::regular:
            break;
    }
    if (auto e = atomic_file::read(p.file, c.original, max_file_size)) {
        c.reason = *e + "; left untouched";
        return c;
    }
    const auto r = render(domain, proxy, c.original, opts);
    if (r.status != render_status::ok) {
        c.reason = p.file.string() + ": " + r.reason + "; left untouched";
        return c;
    }
    for (const auto& n : r.notes) {
        c.notes.push_back(p.file.string() + ": " + n + "; the original is kept in " + p.backup.string());
    }
    c.content = r.content;
    if (is_managed(c.original)) {
        c.what = c.content == c.original ? action::unchanged : action::update;
        return c;
    }
    c.what = action::merge;
    std::string old_backup;
    if (atomic_file::exists(p.backup) &&
        (atomic_file::read(p.backup, old_backup, max_file_size) || old_backup != c.original)) {
        c.replace_backup = true;
        c.notes.push_back(p.backup.string() + ": an older backup that no longer matches " + p.file.string() +
                          " is replaced by a copy of the current file");
    }
    return c;
}

atomic_file::result apply_create(const fs::path& certs_dir, const file_change& c) {
    const auto p = paths_for(certs_dir, c.domain);
    bool made_dir = false;
    if (c.create_dir) {
        std::error_code ec;
        fs::create_directories(certs_dir, ec);
        if (ec) {
            return certs_dir.string() + ": cannot create: " + ec.message();
        }
        if (::mkdir(p.dir.c_str(), 0755) != 0) {
            if (errno != EEXIST) {
                return p.dir.string() + ": cannot create: " + std::generic_category().message(errno);
            }
        } else {
            made_dir = true;
        }
    }
    auto undo_dir = [&] {
        if (made_dir) {
            ::rmdir(p.dir.c_str());
        }
    };
    const bool new_state = !atomic_file::exists(p.state) && !atomic_file::exists(p.backup);
    if (new_state) {
        if (auto e = atomic_file::write(p.state, made_dir ? "directory\n" : "file\n")) {
            undo_dir();
            return e;
        }
    }
    if (auto e = atomic_file::write(p.file, c.content)) {
        if (new_state) {
            atomic_file::remove(p.state);
        }
        undo_dir();
        return e;
    }
    return std::nullopt;
}

atomic_file::result apply_merge(const fs::path& certs_dir, const file_change& c) {
    const auto p = paths_for(certs_dir, c.domain);
    const auto owner = atomic_file::ownership_of(p.file);
    const bool new_backup = !atomic_file::exists(p.backup);
    if (new_backup || c.replace_backup) {
        if (auto e = atomic_file::write(p.backup, c.original, owner)) {
            return e;
        }
    }
    if (auto e = atomic_file::write(p.file, c.content, owner)) {
        if (new_backup) {
            atomic_file::remove(p.backup);
        }
        return e;
    }
    return std::nullopt;
}

atomic_file::result apply_remove(const fs::path& certs_dir, const file_change& c, std::vector<std::string>& notes) {
    const auto p = paths_for(certs_dir, c.domain);
    if (auto e = atomic_file::remove(p.file)) {
        return e;
    }
    std::string state;
    const bool made_dir = !atomic_file::read(p.state, state, 64) && state == "directory\n";
    if (auto e = atomic_file::remove(p.state)) {
        return e;
    }
    if (made_dir && ::rmdir(p.dir.c_str()) != 0 && errno != ENOENT) {
        notes.push_back(p.dir.string() + ": kept: " + std::generic_category().message(errno));
    }
    return std::nullopt;
}

atomic_file::result apply(const fs::path& certs_dir, file_change& c) {
    const auto p = paths_for(certs_dir, c.domain);
    switch (c.what) {
        case action::unchanged:
        case action::skip:
            return std::nullopt;
        case action::create:
            if (atomic_file::exists(p.file)) {
                return p.file.string() + ": appeared while installing; left as it is";
            }
            return apply_create(certs_dir, c);
        default:
            break;
    }
    if (auto e = unchanged_since_plan(c)) {
        return e;
    }
    switch (c.what) {
        case action::merge:
            return apply_merge(certs_dir, c);
        case action::update:
            return atomic_file::write(p.file, c.content, atomic_file::ownership_of(p.file));
        case action::restore:
            if (auto e = atomic_file::rename(p.backup, p.file)) {
                return e;
            }
            return atomic_file::remove(p.state);
        case action::strip:
            if (auto e = atomic_file::write(p.file, c.content, atomic_file::ownership_of(p.file))) {
                return e;
            }
            return atomic_file::remove(p.state);
        case action::remove:
            return apply_remove(certs_dir, c, c.notes);
        default:
            return std::nullopt;
    }
}

report apply_all(report r) {
    for (auto& c : r.files) {
        if (auto e = apply(r.certs_dir, c)) {
            c.error = *e;
        }
    }
    return r;
}

}  // namespace

std::string_view to_string(action a) {
    switch (a) {
        case action::create:
            return "create";
        case action::merge:
            return "merge";
        case action::update:
            return "update";
        case action::unchanged:
            return "unchanged";
        case action::restore:
            return "restore";
        case action::strip:
            return "strip";
        case action::remove:
            return "remove";
        case action::skip:
            return "skip";
    }
    return "skip";
}

bool report::ok() const {
    return errors.empty() && std::none_of(files.begin(), files.end(), [](const file_change& c) {
               return c.what == action::skip || !c.error.empty();
           });
}

report plan(const fs::path& certs_dir, const std::vector<std::string>& domains, const config::listen_address& listen,
            const render_options& opts) {
    report r;
    r.certs_dir = certs_dir;
    if (opts.dial_timeout && !is_go_duration(*opts.dial_timeout)) {
        r.errors.push_back("dial timeout '" + *opts.dial_timeout + "': expected a duration such as 200ms or 2s");
        return r;
    }
    std::vector<std::string> wanted;
    for (const auto& d : domains) {
        const auto n = normalize_domain(d);
        if (!n) {
            r.errors.push_back("'" + d + "': not a registry host[:port] containerd has a hosts directory for; skipped");
        } else if (std::find(wanted.begin(), wanted.end(), *n) == wanted.end()) {
            wanted.push_back(*n);
        }
    }
    const auto proxy = proxy_url(listen);
    for (const auto& d : wanted) {
        r.files.push_back(plan_one(certs_dir, d, proxy, opts));
    }
    for (const auto& d : managed_domains(certs_dir, r.errors)) {
        if (std::find(wanted.begin(), wanted.end(), d) == wanted.end()) {
            r.files.push_back(plan_undo(certs_dir, d));
        }
    }
    return r;
}

report install(const fs::path& certs_dir, const std::vector<std::string>& domains, const config::listen_address& listen,
               const render_options& opts) {
    return apply_all(plan(certs_dir, domains, listen, opts));
}

report plan_remove(const fs::path& certs_dir) {
    report r;
    r.certs_dir = certs_dir;
    for (const auto& d : managed_domains(certs_dir, r.errors)) {
        r.files.push_back(plan_undo(certs_dir, d));
    }
    return r;
}

report remove(const fs::path& certs_dir) {
    return apply_all(plan_remove(certs_dir));
}

std::vector<std::string> config_domains(const config::config& cfg) {
    std::vector<std::string> out;
    auto add = [&](const std::string& d) {
        if (std::find(out.begin(), out.end(), d) == out.end()) {
            out.push_back(d);
        }
    };
    for (const auto& inst : cfg.acr_instances) {
        for (const auto& d : inst.domains) {
            add(d);
        }
    }
    for (const auto& reg : cfg.registries) {
        add(reg.host);
    }
    return out;
}

}  // namespace acp::hosts
