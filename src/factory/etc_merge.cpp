#include "factory/etc_merge.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <set>

#include "base/error.hpp"
#include "base/escape.hpp"

namespace strata::factory {
namespace {

// Temporaries live beside their targets (rename needs the same directory); the prefix lets scan()
// leave a crashed run's debris out of the comparison.
constexpr std::string_view temp_prefix = ".#strata.";

std::string etc_path(std::string_view rel) {
    return "/etc/" + std::string(rel);
}

std::string parent_of(std::string_view path) {
    const auto slash = path.rfind('/');
    return slash == std::string_view::npos ? std::string() : std::string(path.substr(0, slash));
}

std::string base_of(std::string_view path) {
    const auto slash = path.rfind('/');
    return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

bool is_under(std::string_view path, std::string_view ancestor) {
    return path.size() > ancestor.size() && path.starts_with(ancestor) && path[ancestor.size()] == '/';
}

// Tree order: '/' sorts before every other byte, so a directory's subtree directly follows it.
bool tree_order(std::string_view x, std::string_view y) {
    const size_t n = std::min(x.size(), y.size());
    for (size_t i = 0; i < n; ++i) {
        if (x[i] == y[i]) continue;
        const auto key = [](char c) { return c == '/' ? 0 : static_cast<unsigned char>(c) + 1; };
        return key(x[i]) < key(y[i]);
    }
    return x.size() < y.size();
}

bool is_dir(const std::optional<Fingerprint>& f) {
    return f && f->type == EntryType::Directory;
}

// ---- filesystem helpers ----------------------------------------------------------------------

// l*xattr() through the directory fd, so symlinks and device nodes need not be opened.
std::string proc_path(const Dir& dir, std::string_view name) {
    return "/proc/self/fd/" + std::to_string(dir.fd()) + "/" + std::string(name);
}

std::map<std::string, std::string> read_xattrs(const Dir& dir, std::string_view name) {
    const std::string p = proc_path(dir, name);
    const std::string shown = dir.path_of(name).string();
    std::map<std::string, std::string> out;
    std::vector<char> names;
    for (;;) {
        const ssize_t n = ::llistxattr(p.c_str(), nullptr, 0);
        if (n < 0 && (errno == ENOTSUP || errno == ENOSYS)) return out;
        check_errno(static_cast<int>(n), "list xattrs of", shown);
        names.resize(static_cast<size_t>(n));
        const ssize_t got = ::llistxattr(p.c_str(), names.data(), names.size());
        if (got < 0 && errno == ERANGE) continue;  // grew meanwhile
        check_errno(static_cast<int>(got), "list xattrs of", shown);
        names.resize(static_cast<size_t>(got));
        break;
    }
    for (size_t i = 0; i < names.size();) {
        const std::string key(names.data() + i);
        i += key.size() + 1;
        std::string value;
        for (;;) {
            const ssize_t n = ::lgetxattr(p.c_str(), key.c_str(), nullptr, 0);
            if (n < 0 && errno == ENODATA) break;  // removed meanwhile
            check_errno(static_cast<int>(n), "read xattr '" + key + "' of", shown);
            value.resize(static_cast<size_t>(n));
            const ssize_t got = ::lgetxattr(p.c_str(), key.c_str(), value.data(), value.size());
            if (got < 0 && errno == ERANGE) continue;
            check_errno(static_cast<int>(got), "read xattr '" + key + "' of", shown);
            value.resize(static_cast<size_t>(got));
            out.emplace(key, std::move(value));
            break;
        }
    }
    return out;
}

void write_xattrs(const Dir& dir, std::string_view name, const std::map<std::string, std::string>& want) {
    const std::string p = proc_path(dir, name);
    const std::string shown = dir.path_of(name).string();
    for (const auto& [key, value] : read_xattrs(dir, name))
        if (!want.contains(key))
            check_errno(::lremovexattr(p.c_str(), key.c_str()), "remove xattr '" + key + "' of", shown);
    for (const auto& [key, value] : want)
        check_errno(::lsetxattr(p.c_str(), key.c_str(), value.data(), value.size(), 0),
                    "set xattr '" + key + "' of", shown);
}

// Owner, xattrs, then mode: chown clears setuid/setgid, and an ACL xattr rewrites the group bits,
// so the mode goes last to end exactly as the source has it.
void copy_metadata(const struct stat& st, const std::map<std::string, std::string>& xattrs, const Dir& dir,
                   std::string_view name) {
    const std::string n(name);
    const std::string shown = dir.path_of(name).string();
    check_errno(::fchownat(dir.fd(), n.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW), "change owner of",
                shown);
    write_xattrs(dir, name, xattrs);
    if (!S_ISLNK(st.st_mode))
        check_errno(::fchmodat(dir.fd(), n.c_str(), st.st_mode & 07777, 0), "change mode of", shown);
}

void copy_data(int in, int out, const std::string& shown) {
    // A reflink where the filesystem can (the factory trees and /etc share one btrfs pool).
    if (::ioctl(out, FICLONE, in) == 0) return;
    for (;;) {
        const ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, size_t{1} << 30, 0);
        if (n == 0) return;
        if (n > 0) continue;
        if (errno == EINTR) continue;
        if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) break;
        throw_errno("copy data to", shown);
    }
    std::vector<char> buffer(size_t{1} << 16);
    for (;;) {
        const size_t n = read_full(in, buffer.data(), buffer.size(), shown);
        if (n == 0) return;
        write_all(out, std::string_view(buffer.data(), n), shown);
    }
}

// Copies src_dir/name to dst_dir/dst_name (which must not exist) with content, mode, owner and
// xattrs, recursively; everything written is fsynced.
void copy_entry(const Dir& src_dir, std::string_view name, const Dir& dst_dir, std::string_view dst_name) {
    const auto st = src_dir.stat(name);
    if (!st) throw Error("copy", src_dir.path_of(name).string(), ENOENT, Fault::NotFound);
    const auto xattrs = read_xattrs(src_dir, name);
    const std::string dst(dst_name);
    const std::string shown = dst_dir.path_of(dst_name).string();
    if (S_ISREG(st->st_mode)) {
        const Fd in = src_dir.open_file(name, O_RDONLY | O_NOFOLLOW);
        const Fd out = dst_dir.open_file(dst_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
        copy_data(in.get(), out.get(), shown);
        copy_metadata(*st, xattrs, dst_dir, dst_name);
        check_errno(::fsync(out.get()), "sync", shown);
    } else if (S_ISDIR(st->st_mode)) {
        check_errno(::mkdirat(dst_dir.fd(), dst.c_str(), 0700), "create directory", shown);
        const Dir from = src_dir.open_dir(name);
        const Dir to = dst_dir.open_dir(dst_name);
        for (const auto& child : from.entries()) copy_entry(from, child, to, child);
        copy_metadata(*st, xattrs, dst_dir, dst_name);
        to.sync();
    } else if (S_ISLNK(st->st_mode)) {
        std::string target(static_cast<size_t>(st->st_size) + 1, '\0');
        const std::string n(name);
        const ssize_t len = ::readlinkat(src_dir.fd(), n.c_str(), target.data(), target.size());
        check_errno(static_cast<int>(len), "read link", src_dir.path_of(name).string());
        target.resize(static_cast<size_t>(len));
        check_errno(::symlinkat(target.c_str(), dst_dir.fd(), dst.c_str()), "create symlink", shown);
        copy_metadata(*st, xattrs, dst_dir, dst_name);
    } else {
        check_errno(::mknodat(dst_dir.fd(), dst.c_str(), (st->st_mode & S_IFMT) | 0600, st->st_rdev),
                    "create node", shown);
        copy_metadata(*st, xattrs, dst_dir, dst_name);
    }
}

void remove_tree(const Dir& dir, std::string_view name) {
    const auto st = dir.stat(name);
    if (!st) return;
    if (S_ISDIR(st->st_mode)) {
        const Dir sub = dir.open_dir(name);
        for (const auto& child : sub.entries()) remove_tree(sub, child);
        dir.remove_dir(name);
    } else {
        dir.unlink(name);
    }
}

std::string temp_name() {
    static std::mt19937_64 generator{std::random_device{}()};
    char buffer[17];
    std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(generator()));
    return std::string(temp_prefix) + buffer;
}

// Directories of one tree, opened once by their path relative to its root ("" is the root).
class DirCache {
   public:
    explicit DirCache(const Dir& root) : root_(&root) {}
    // nullopt-like nullptr when a component is missing or not a directory.
    const Dir* find(const std::string& rel) {
        if (rel.empty()) return root_;
        if (const auto it = dirs_.find(rel); it != dirs_.end()) return &it->second;
        const Dir* parent = find(parent_of(rel));
        if (!parent) return nullptr;
        const auto st = parent->stat(base_of(rel));
        if (!st || !S_ISDIR(st->st_mode)) return nullptr;
        return &dirs_.emplace(rel, parent->open_dir(base_of(rel))).first->second;
    }

   private:
    const Dir* root_;
    std::map<std::string, Dir> dirs_;
};

// Entries staged under temporary names; whatever was not renamed in is removed again.
class Temporaries {
   public:
    Temporaries() = default;
    Temporaries(const Temporaries&) = delete;
    Temporaries& operator=(const Temporaries&) = delete;
    ~Temporaries() {
        for (const auto& t : items_) {
            if (t.done) continue;
            try {
                remove_tree(*t.dir, t.name);
            } catch (const Error&) {  // debris only: scan() leaves it out of every comparison
            }
        }
    }
    size_t stage(const Dir& src_dir, std::string_view src_name, const Dir& dst_dir) {
        items_.push_back({&dst_dir, temp_name(), false});
        copy_entry(src_dir, src_name, dst_dir, items_.back().name);
        return items_.size() - 1;
    }
    // Puts staged entry i at dst_dir/target: a plain rename, or an exchange where a directory and
    // a non-directory (or two directories) swap, after which the old entry is deleted.
    void install(size_t i, const std::string& target) {
        auto& t = items_[i];
        const auto old = t.dir->stat(target);
        const auto staged = t.dir->stat(t.name);
        if (old && (S_ISDIR(old->st_mode) || S_ISDIR(staged->st_mode))) {
            t.dir->exchange(t.name, *t.dir, target);
            remove_tree(*t.dir, t.name);
        } else {
            t.dir->rename(t.name, *t.dir, target, /*no_replace=*/false);
        }
        t.done = true;
    }

   private:
    struct Item {
        const Dir* dir;
        std::string name;
        bool done;
    };
    std::vector<Item> items_;
};

struct Probe {
    std::optional<Fingerprint> fp;
    off_t size = 0;
};

Probe probe(const Dir* dir, const std::string& name) {
    if (!dir) return {};
    const auto st = dir->stat(name);
    if (!st) return {};
    Fingerprint f;
    f.mode = st->st_mode & 07777;
    f.uid = st->st_uid;
    f.gid = st->st_gid;
    if (S_ISREG(st->st_mode)) {
        f.type = EntryType::File;
    } else if (S_ISDIR(st->st_mode)) {
        f.type = EntryType::Directory;
    } else if (S_ISLNK(st->st_mode)) {
        f.type = EntryType::Symlink;
        std::string target(static_cast<size_t>(st->st_size) + 1, '\0');
        const ssize_t len = ::readlinkat(dir->fd(), name.c_str(), target.data(), target.size());
        check_errno(static_cast<int>(len), "read link", dir->path_of(name).string());
        target.resize(static_cast<size_t>(len));
        f.content = std::move(target);
    } else {
        f.type = EntryType::Other;
        f.content = std::to_string(st->st_mode & S_IFMT) + ":" + std::to_string(major(st->st_rdev)) + ":" +
                    std::to_string(minor(st->st_rdev));
    }
    f.xattrs = read_xattrs(*dir, name);
    return {std::move(f), st->st_size};
}

// Compares two files as streams, a buffer at a time.
bool same_content(const Dir& x_dir, const Probe& x, const Dir& y_dir, const Probe& y,
                  const std::string& name) {
    if (x.size != y.size) return false;
    const Fd fx = x_dir.open_file(name, O_RDONLY | O_NOFOLLOW);
    const Fd fy = y_dir.open_file(name, O_RDONLY | O_NOFOLLOW);
    const std::string sx = x_dir.path_of(name).string(), sy = y_dir.path_of(name).string();
    std::vector<char> bx(size_t{1} << 16), by(size_t{1} << 16);
    for (;;) {
        const size_t nx = read_full(fx.get(), bx.data(), bx.size(), sx);
        const size_t ny = read_full(fy.get(), by.data(), by.size(), sy);
        if (nx != ny || std::memcmp(bx.data(), by.data(), nx) != 0) return false;
        if (nx == 0) return true;
    }
}

bool is_file(const Probe& p) {
    return p.fp && p.fp->type == EntryType::File;
}

void walk(const Dir* a, const Dir* b, const Dir* e, const std::string& prefix, std::vector<PathState>& out) {
    std::set<std::string> names;
    for (const Dir* d : {a, b, e})
        if (d)
            for (auto& n : d->entries())
                if (!std::string_view(n).starts_with(temp_prefix)) names.insert(std::move(n));
    for (const auto& name : names) {
        Probe pa = probe(a, name), pb = probe(b, name), pe = probe(e, name);
        // Content tokens: equal exactly when the contents are.
        if (is_file(pa)) pa.fp->content = "a";
        if (is_file(pb)) pb.fp->content = is_file(pa) && same_content(*a, pa, *b, pb, name) ? "a" : "b";
        if (is_file(pe)) {
            if (is_file(pa) && same_content(*a, pa, *e, pe, name))
                pe.fp->content = "a";
            else if (is_file(pb) && pb.fp->content == "b" && same_content(*b, pb, *e, pe, name))
                pe.fp->content = "b";
            else
                pe.fp->content = "e";
        }
        const std::string path = prefix.empty() ? name : prefix + "/" + name;
        const bool descend = is_dir(pa.fp) || is_dir(pb.fp) || is_dir(pe.fp);
        out.push_back({path, std::move(pa.fp), std::move(pb.fp), std::move(pe.fp)});
        if (!descend) continue;
        const PathState& s = out.back();
        std::optional<Dir> da, db, de;
        if (is_dir(s.a)) da = a->open_dir(name);
        if (is_dir(s.b)) db = b->open_dir(name);
        if (is_dir(s.e)) de = e->open_dir(name);
        walk(da ? &*da : nullptr, db ? &*db : nullptr, de ? &*de : nullptr, path, out);
    }
}

}  // namespace

std::string_view to_string(EntryType type) {
    switch (type) {
        case EntryType::File:
            return "file";
        case EntryType::Directory:
            return "directory";
        case EntryType::Symlink:
            return "symlink";
        case EntryType::Other:
            return "other";
    }
    return "?";
}

std::string_view to_string(Verdict verdict) {
    switch (verdict) {
        case Verdict::Unchanged:
            return "unchanged";
        case Verdict::VendorChanged:
            return "vendor-changed";
        case Verdict::AdminChanged:
            return "admin-changed";
        case Verdict::Conflict:
            return "conflict";
        case Verdict::Added:
            return "added";
        case Verdict::Removed:
            return "removed";
    }
    return "?";
}

std::string_view to_string(Action action) {
    switch (action) {
        case Action::None:
            return "none";
        case Action::Keep:
            return "keep";
        case Action::Update:
            return "update";
        case Action::Add:
            return "add";
        case Action::Remove:
            return "remove";
        case Action::WriteNew:
            return "write-new";
    }
    return "?";
}

Decision decide(const std::optional<Fingerprint>& a, const std::optional<Fingerprint>& b,
                const std::optional<Fingerprint>& e) {
    using enum Verdict;
    if (!e) {
        // Absent in /etc: tmpfiles copies what is missing at boot, so there is nothing to merge.
        if (!a && !b) return {Unchanged, Action::None};
        if (!a) return {Added, Action::Add};
        if (!b) return {Removed, Action::None};
        return {*a == *b ? Unchanged : VendorChanged, Action::None};
    }
    // Two directories in conflict differ in their own attributes only; their contents are
    // separate paths. A copy of the whole directory beside it would say nothing more.
    const Action conflict = b && !(b->type == EntryType::Directory && e->type == EntryType::Directory)
                                ? Action::WriteNew
                                : Action::Keep;
    if (!a && !b) return {AdminChanged, Action::Keep};
    if (!a) return *b == *e ? Decision{Unchanged, Action::None} : Decision{Conflict, conflict};
    if (!b) return *a == *e ? Decision{Removed, Action::Remove} : Decision{Conflict, Action::Keep};
    if (*a == *b) return *e == *a ? Decision{Unchanged, Action::None} : Decision{AdminChanged, Action::Keep};
    if (*e == *a) return {VendorChanged, Action::Update};
    if (*e == *b) return {Unchanged, Action::None};
    return {Conflict, conflict};
}

std::vector<Change> plan(std::vector<PathState> states, bool populated) {
    std::sort(states.begin(), states.end(),
              [](const PathState& x, const PathState& y) { return tree_order(x.path, y.path); });
    std::vector<Change> out;
    out.reserve(states.size());
    for (const auto& s : states) {
        const auto d = decide(s.a, s.b, s.e);
        out.push_back({s.path, d.verdict, populated ? d.action : Action::None});
    }
    if (!populated) return out;

    // A directory of /etc goes (removed, or replaced by a non-directory) only when everything in
    // it goes too; anything the admin keeps in it makes the directory a conflict. Deepest first,
    // so a kept entry blocks every directory above it.
    for (size_t i = states.size(); i-- > 0;) {
        auto& c = out[i];
        const auto& s = states[i];
        const bool dir_goes =
            is_dir(s.e) && (c.action == Action::Remove || (c.action == Action::Update && !is_dir(s.b)));
        if (!dir_goes) continue;
        bool blocked = false;
        for (size_t j = i + 1; j < states.size() && is_under(states[j].path, s.path); ++j)
            if (states[j].e && out[j].action != Action::Remove) blocked = true;
        if (blocked) c = {c.path, Verdict::Conflict, s.b ? Action::WriteNew : Action::Keep};
    }

    // An added entry appears only where its directory is (or will be) in /etc; elsewhere the
    // admin removed the directory, or boot fills it.
    std::set<std::string> dirs_after{""};
    for (size_t i = 0; i < states.size(); ++i) {
        auto& c = out[i];
        const auto& s = states[i];
        if (c.action == Action::Add && !dirs_after.contains(parent_of(s.path))) c.action = Action::None;
        const bool dir_stays =
            is_dir(s.e) && c.action != Action::Remove && !(c.action == Action::Update && !is_dir(s.b));
        const bool dir_comes = (c.action == Action::Add || c.action == Action::Update) && is_dir(s.b);
        if (dir_stays || dir_comes) dirs_after.insert(s.path);
    }
    return out;
}

Summary summarize(const std::vector<Change>& changes) {
    Summary s;
    for (const auto& c : changes) {
        switch (c.verdict) {
            case Verdict::Unchanged:
                ++s.unchanged;
                break;
            case Verdict::VendorChanged:
                ++s.vendor_changed;
                break;
            case Verdict::AdminChanged:
                ++s.admin_changed;
                break;
            case Verdict::Conflict:
                ++s.conflicts;
                s.conflict_paths.push_back(c.path);
                break;
            case Verdict::Added:
                ++s.added;
                break;
            case Verdict::Removed:
                ++s.removed;
                break;
        }
    }
    return s;
}

std::vector<PathState> scan(const Trees& trees) {
    std::vector<PathState> out;
    walk(&trees.a, &trees.b, trees.e, "", out);
    return out;
}

bool populated(const Dir* etc) {
    return etc && !etc->entries().empty();
}

void apply(const Trees& trees, const std::vector<Change>& changes) {
    if (!trees.e) return;
    DirCache e_dirs(*trees.e), b_dirs(trees.b);
    Temporaries temps;
    struct Step {
        const Change* change;
        const Dir* parent;  // in /etc
        std::optional<size_t> staged;
    };
    std::vector<Step> steps;
    std::string covered;  // a subtree that an earlier step replaces or removes as a whole
    bool have_covered = false;

    // Stage: every entry B brings is copied complete before /etc changes at all.
    for (const auto& c : changes) {
        if (have_covered && is_under(c.path, covered)) continue;
        if (c.action == Action::None || c.action == Action::Keep) continue;
        const std::string name = base_of(c.path);
        const Dir* parent = e_dirs.find(parent_of(c.path));
        if (!parent)
            throw Error("merge", etc_path(c.path), "its directory is missing in /etc", Fault::NotFound);
        Step step{&c, parent, std::nullopt};
        const auto e_st = parent->stat(name);
        const bool e_dir = e_st && S_ISDIR(e_st->st_mode);
        bool b_dir = false;
        if (c.action != Action::Remove) {
            const Dir* source = b_dirs.find(parent_of(c.path));
            const auto b_st = source ? source->stat(name) : std::nullopt;
            if (!b_st)
                throw Error("merge", etc_path(c.path), "gone from the new factory tree", Fault::NotFound);
            b_dir = S_ISDIR(b_st->st_mode);
            // A directory that stays a directory only takes B's attributes; its contents are
            // separate steps.
            if (!(c.action == Action::Update && e_dir && b_dir))
                step.staged = with_context("merge", etc_path(c.path),
                                           [&] { return temps.stage(*source, name, *parent); });
        }
        const bool whole = c.action == Action::Remove || c.action == Action::Add ||
                           (c.action == Action::Update && !(e_dir && b_dir));
        if (whole) {
            covered = c.path;
            have_covered = true;
        }
        steps.push_back(std::move(step));
    }

    // Commit: renames, in tree order.
    std::set<const Dir*> touched;
    for (const auto& step : steps) {
        const auto& c = *step.change;
        const std::string name = base_of(c.path);
        with_context("merge", etc_path(c.path), [&] {
            switch (c.action) {
                case Action::Add:
                case Action::Update:
                    if (step.staged) {
                        temps.install(*step.staged, name);
                    } else {
                        const Dir* source = b_dirs.find(parent_of(c.path));
                        copy_metadata(*source->stat(name), read_xattrs(*source, name), *step.parent, name);
                    }
                    break;
                case Action::WriteNew:
                    temps.install(*step.staged, name + std::string(new_suffix));
                    break;
                case Action::Remove:
                    remove_tree(*step.parent, name);
                    break;
                case Action::None:
                case Action::Keep:
                    break;
            }
        });
        touched.insert(step.parent);
    }
    for (const Dir* d : touched) d->sync();
}

std::string etc_relative_path(std::string_view path) {
    const auto refuse = [&](std::string_view why) {
        return Error("", "", "path '" + escape(path) + "' " + std::string(why), Fault::InvalidInput);
    };
    std::string_view rest = path;
    if (rest.starts_with('/')) {
        if (rest != "/etc" && !rest.starts_with("/etc/")) throw refuse("is not under /etc");
        rest.remove_prefix(4);
    }
    std::string out;
    while (!rest.empty()) {
        const auto slash = rest.find('/');
        const std::string_view part = rest.substr(0, slash);
        rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
        if (part.empty() || part == ".") continue;
        if (part == "..") throw refuse("is not under /etc ('..' is not allowed)");
        if (!out.empty()) out += '/';
        out += part;
    }
    if (out.empty()) throw refuse("names /etc itself, not an entry in it");
    return out;
}

void copy_paths(const Dir& from_etc, const Dir& to_etc, const std::vector<std::string>& paths) {
    // A path below another given path is already part of its copy.
    std::vector<std::string> rel;
    for (const auto& p : paths) rel.push_back(etc_relative_path(p));
    std::sort(rel.begin(), rel.end(),
              [](const std::string& x, const std::string& y) { return tree_order(x, y); });
    rel.erase(std::unique(rel.begin(), rel.end()), rel.end());
    std::erase_if(rel, [&](const std::string& p) {
        return std::any_of(rel.begin(), rel.end(), [&](const std::string& q) { return is_under(p, q); });
    });

    DirCache from_dirs(from_etc), to_dirs(to_etc);
    struct Step {
        const Dir* source;
        const Dir* target;
        std::string name;
    };
    std::vector<Step> steps;
    for (const auto& p : rel) {
        const Dir* source = from_dirs.find(parent_of(p));
        if (!source || !source->stat(base_of(p)))
            throw Error("", "", "'" + escape(etc_path(p)) + "' does not exist in the source",
                        Fault::NotFound);
        const Dir* target = to_dirs.find(parent_of(p));
        if (!target)
            throw Error("", "", "the directory of '" + escape(etc_path(p)) + "' does not exist in the target",
                        Fault::NotFound);
        steps.push_back({source, target, base_of(p)});
    }
    Temporaries temps;
    std::vector<size_t> staged;
    for (const auto& s : steps) staged.push_back(temps.stage(*s.source, s.name, *s.target));
    for (size_t i = 0; i < steps.size(); ++i) temps.install(staged[i], steps[i].name);
    std::set<const Dir*> touched;
    for (const auto& s : steps) touched.insert(s.target);
    for (const Dir* d : touched) d->sync();
}

}  // namespace strata::factory
