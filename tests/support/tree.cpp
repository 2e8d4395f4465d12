#include "support/tree.hpp"

#include <acl/libacl.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/acl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "base/chandle.hpp"
#include "base/error.hpp"
#include "base/escape.hpp"
#include "base/fd.hpp"

namespace strata::test {
namespace {

// ---------------------------------------------------------------------------------------------
// Shared helpers

// A path that reaches `rel` below the directory `dirfd` without following a final symlink when
// used with the l*xattr calls, and that stays short however deep the tree is.
std::string proc_path(int dirfd, std::string_view rel) {
    std::string p = "/proc/self/fd/" + std::to_string(dirfd) + "/";
    p += rel.empty() ? std::string_view(".") : rel;
    return p;
}

uint64_t fnv1a(std::string_view text, uint64_t seed) {
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (const char c : text) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

Fd open_checked(int dirfd, std::string_view rel, int flags, std::string_view what, mode_t mode = 0) {
    const std::string r(rel.empty() ? std::string_view(".") : rel);
    const int fd = ::openat(dirfd, r.c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) throw_errno(what, r);
    return Fd(fd);
}

// Opens a directory for reading without updating its atime where we may (owner or CAP_FOWNER).
Fd open_dir_noatime(int dirfd, std::string_view rel) {
    const std::string r(rel.empty() ? std::string_view(".") : rel);
    int fd = ::openat(dirfd, r.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) fd = ::openat(dirfd, r.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) throw_errno("open directory", r);
    return Fd(fd);
}

std::vector<std::string> list_dir(int dirfd, std::string_view rel) {
    const int copy = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) throw_errno("duplicate directory fd", rel);
    CHandle<DIR, ::closedir> dir(::fdopendir(copy));
    if (!dir) {
        const int e = errno;
        ::close(copy);
        throw Error("read directory", rel, e);
    }
    ::rewinddir(dir.get());
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* d = ::readdir(dir.get())) {
        const std::string_view n = d->d_name;
        if (n != "." && n != "..") names.emplace_back(n);
        errno = 0;
    }
    if (errno != 0) throw_errno("read directory", rel);
    std::sort(names.begin(), names.end());
    return names;
}

std::string join_rel(std::string_view parent, std::string_view name) {
    if (parent.empty()) return std::string(name);
    std::string r(parent);
    r += '/';
    r += name;
    return r;
}

// ---------------------------------------------------------------------------------------------
// Fixture

constexpr std::string_view selinux_label("system_u:object_r:su_exec_t:s0\0", 31);

class Builder {
public:
    Builder(const std::filesystem::path& root, const FixtureOptions& options)
        : root_(Dir::open(root)), options_(options) {}

    int fd() const { return root_.fd(); }

    void dir(std::string_view rel, mode_t mode, uid_t uid = 0, gid_t gid = 0) {
        const std::string r(rel);
        if (::mkdirat(fd(), r.c_str(), 0700) < 0) throw_errno("mkdir", r);
        owner_and_mode(r, mode, uid, gid);
    }

    void file(std::string_view rel, std::string_view content, mode_t mode, uid_t uid = 0, gid_t gid = 0) {
        const std::string r(rel);
        const Fd f = open_checked(fd(), r, O_WRONLY | O_CREAT | O_EXCL, "create", 0600);
        write_all(f.get(), content, 0, r);
        check_errno(::fchown(f.get(), uid, gid), "chown", r);
        check_errno(::fchmod(f.get(), mode), "chmod", r);
    }

    // Deterministic bytes that depend only on the seed and the path.
    std::string random_bytes(std::string_view rel, size_t size) const {
        uint64_t state = fnv1a(rel, options_.seed);
        std::string out(size, '\0');
        for (size_t i = 0; i < size; i += 8) {
            const uint64_t v = splitmix64(state);
            std::memcpy(out.data() + i, &v, std::min<size_t>(8, size - i));
        }
        return out;
    }

    void symlink(std::string_view rel, std::string_view target, uid_t uid = 0, gid_t gid = 0) {
        const std::string r(rel);
        const std::string t(target);
        check_errno(::symlinkat(t.c_str(), fd(), r.c_str()), "symlink", r);
        check_errno(::fchownat(fd(), r.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW), "chown", r);
    }

    void hardlink(std::string_view existing, std::string_view rel) {
        const std::string e(existing);
        const std::string r(rel);
        check_errno(::linkat(fd(), e.c_str(), fd(), r.c_str(), 0), "link", r);
    }

    void node(std::string_view rel, mode_t type, dev_t dev, mode_t mode, uid_t uid = 0, gid_t gid = 0) {
        const std::string r(rel);
        check_errno(::mknodat(fd(), r.c_str(), type | 0600, dev), "mknod", r);
        owner_and_mode(r, mode, uid, gid);
    }

    void socket(std::string_view rel, mode_t mode) {
        const std::string r(rel);
        const Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!s) throw_errno("socket", r);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string p = proc_path(fd(), r);
        if (p.size() >= sizeof addr.sun_path) throw Error("bind", r, ENAMETOOLONG);
        std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
        check_errno(::bind(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), "bind", r);
        owner_and_mode(r, mode, 0, 0);
    }

    void xattr(std::string_view rel, const char* name, std::string_view value) {
        const std::string p = proc_path(fd(), rel);
        check_errno(::lsetxattr(p.c_str(), name, value.data(), value.size(), 0), std::string("set xattr ") + name,
                    rel);
    }

    void acl(std::string_view rel, acl_type_t type, const char* text) {
        CHandle<std::remove_pointer_t<acl_t>, ::acl_free> acl(::acl_from_text(text));
        if (!acl) throw_errno("parse ACL", text);
        const std::string p = proc_path(fd(), rel);
        check_errno(::acl_set_file(p.c_str(), type, acl.get()), "set ACL", rel);
    }

    // The sparse file: data at the start, in the middle and at the (unaligned) end.
    void sparse(std::string_view rel, uint64_t size) {
        if (size < (1u << 20)) throw Error("create", rel, "sparse_size must be at least 1 MiB");
        const std::string r(rel);
        const Fd f = open_checked(fd(), r, O_WRONLY | O_CREAT | O_EXCL, "create", 0600);
        check_errno(::ftruncate(f.get(), static_cast<off_t>(size)), "truncate", r);
        const std::string data = random_bytes(rel, 64 << 10);
        write_all(f.get(), data, 0, r);
        write_all(f.get(), data.substr(0, 12345), (size / 2) & ~uint64_t{4095}, r);
        write_all(f.get(), data.substr(0, 5000), size - 5000, r);
        check_errno(::fchmod(f.get(), 0644), "chmod", r);
    }

    // Sets atime and mtime of every entry from a hash of its path, children before their
    // directory so that nothing touches a directory's mtime afterwards.
    void stamp_times() {
        stamp_below(fd(), "");
        const auto ts = times_for("");
        check_errno(::futimens(fd(), ts.data()), "set times", ".");
    }

private:
    void owner_and_mode(const std::string& r, mode_t mode, uid_t uid, gid_t gid) {
        // chown first: it clears setuid/setgid bits (and capabilities) set before it.
        check_errno(::fchownat(fd(), r.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW), "chown", r);
        check_errno(::fchmodat(fd(), r.c_str(), mode, 0), "chmod", r);
    }

    static void write_all(int f, std::string_view data, uint64_t offset, std::string_view rel) {
        size_t done = 0;
        while (done < data.size()) {
            const ssize_t n = ::pwrite(f, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
            if (n < 0) throw_errno("write", rel);
            done += static_cast<size_t>(n);
        }
    }

    std::array<timespec, 2> times_for(std::string_view rel) const {
        uint64_t state = fnv1a(rel, options_.seed ^ 0x7133u);
        const uint64_t a = splitmix64(state);
        const uint64_t b = splitmix64(state);
        std::array<timespec, 2> ts{};
        ts[1].tv_sec = static_cast<time_t>(1'500'000'000 + a % 200'000'000);          // mtime
        ts[1].tv_nsec = static_cast<long>(b % 1'000'000'000);
        ts[0].tv_sec = ts[1].tv_sec + static_cast<time_t>(1 + (a >> 40) % 100'000);  // atime
        ts[0].tv_nsec = static_cast<long>((b >> 32) % 1'000'000'000);
        return ts;
    }

    void stamp_below(int dirfd, const std::string& rel) {
        for (const auto& name : list_dir(dirfd, rel)) {
            const std::string child = join_rel(rel, name);
            struct stat st {};
            check_errno(::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW), "stat", child);
            if (S_ISDIR(st.st_mode)) {
                const Fd sub = open_checked(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, "open directory");
                stamp_below(sub.get(), child);
            }
            const auto ts = times_for(child);
            check_errno(::utimensat(dirfd, name.c_str(), ts.data(), AT_SYMLINK_NOFOLLOW), "set times", child);
        }
    }

    Dir root_;
    FixtureOptions options_;
};

// struct vfs_cap_data, revision 2, little endian: cap_net_raw (13) permitted and effective.
std::string capability_net_raw() {
    const uint32_t words[5] = {0x02000000u | 0x1u /* VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE */,
                               1u << 13, 0, 0, 0};
    std::string v(sizeof words, '\0');
    for (size_t i = 0; i < 5; ++i)
        for (size_t k = 0; k < 4; ++k) v[i * 4 + k] = static_cast<char>((words[i] >> (8 * k)) & 0xffu);
    return v;
}

// ---------------------------------------------------------------------------------------------
// Comparison

class Report {
public:
    explicit Report(size_t max) : max_(max) {}
    bool stopped() const { return stopped_; }
    void add(std::string_view rel, std::string_view what) {
        if (stopped_) return;
        if (lines_.size() >= max_) {
            lines_.push_back("... (stopped after " + std::to_string(max_) + " differences)");
            stopped_ = true;
            return;
        }
        lines_.push_back((rel.empty() ? std::string(".") : escape(rel)) + ": " + std::string(what));
    }
    std::vector<std::string> take() { return std::move(lines_); }

private:
    size_t max_;
    bool stopped_ = false;
    std::vector<std::string> lines_;
};

const char* type_name(mode_t mode) {
    switch (mode & S_IFMT) {
    case S_IFREG: return "regular file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFCHR: return "char device";
    case S_IFBLK: return "block device";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    default: return "unknown type";
    }
}

std::string octal(mode_t mode) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%o", static_cast<unsigned>(mode));
    return buf;
}

std::string timestamp(const timespec& t) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%lld.%09ld", static_cast<long long>(t.tv_sec), t.tv_nsec);
    return buf;
}

std::string device(dev_t d) { return std::to_string(major(d)) + ":" + std::to_string(minor(d)); }

std::string shown(std::string_view value) {
    constexpr size_t max = 64;
    std::string e = escape(value.substr(0, max));
    if (value.size() > max) e += "... (" + std::to_string(value.size()) + " bytes)";
    return "'" + e + "'";
}

std::string read_link(int dirfd, const std::string& name, std::string_view rel) {
    std::string buf(256, '\0');
    for (;;) {
        const ssize_t n = ::readlinkat(dirfd, name.c_str(), buf.data(), buf.size());
        if (n < 0) throw_errno("read symlink", rel);
        if (static_cast<size_t>(n) < buf.size()) {
            buf.resize(static_cast<size_t>(n));
            return buf;
        }
        buf.resize(buf.size() * 2);
    }
}

using Xattrs = std::map<std::string, std::string>;

Xattrs read_xattrs(const std::string& path, std::string_view rel) {
    Xattrs out;
    std::string names;
    for (;;) {
        const ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
        if (n < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) return out;
        if (n < 0) throw_errno("list xattrs", rel);
        names.resize(static_cast<size_t>(n));
        const ssize_t m = ::llistxattr(path.c_str(), names.data(), names.size());
        if (m < 0 && errno == ERANGE) continue;
        if (m < 0) throw_errno("list xattrs", rel);
        names.resize(static_cast<size_t>(m));
        break;
    }
    for (size_t i = 0; i < names.size();) {
        const std::string name = names.c_str() + i;
        i += name.size() + 1;
        if (name.empty()) continue;
        std::string value;
        for (;;) {
            const ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
            if (n < 0) throw_errno("read xattr " + name, rel);
            value.resize(static_cast<size_t>(n));
            const ssize_t m = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
            if (m < 0 && errno == ERANGE) continue;
            if (m < 0) throw_errno("read xattr " + name, rel);
            value.resize(static_cast<size_t>(m));
            break;
        }
        out.emplace(name, std::move(value));
    }
    return out;
}

// A POSIX ACL as text ("u::rw-,u:1000:rw-,g::r--,m::rw-,o::r--"), or empty when not readable.
std::string acl_text(const std::string& path, std::string_view xattr_name) {
    const acl_type_t type = xattr_name == "system.posix_acl_default" ? ACL_TYPE_DEFAULT : ACL_TYPE_ACCESS;
    CHandle<std::remove_pointer_t<acl_t>, ::acl_free> acl(::acl_get_file(path.c_str(), type));
    if (!acl) return {};
    CHandle<char, ::acl_free> text(
        ::acl_to_any_text(acl.get(), nullptr, ',', TEXT_ABBREVIATE | TEXT_NUMERIC_IDS));
    return text ? std::string(text.get()) : std::string();
}

// [begin, end) byte ranges that hold data according to SEEK_DATA/SEEK_HOLE.
using Ranges = std::vector<std::pair<off_t, off_t>>;

Ranges data_ranges(int fd, off_t size, std::string_view rel) {
    Ranges r;
    off_t pos = 0;
    while (pos < size) {
        const off_t data = ::lseek(fd, pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO) break;
        if (data < 0 && (errno == EINVAL || errno == ENOTSUP || errno == EOPNOTSUPP)) return {{0, size}};
        if (data < 0) throw_errno("seek data", rel);
        if (data >= size) break;
        const off_t hole = ::lseek(fd, data, SEEK_HOLE);
        if (hole < 0) throw_errno("seek hole", rel);
        r.emplace_back(data, std::min(hole, size));
        pos = hole;
    }
    return r;
}

Ranges unite(const Ranges& a, const Ranges& b) {
    Ranges all(a);
    all.insert(all.end(), b.begin(), b.end());
    std::sort(all.begin(), all.end());
    Ranges out;
    for (const auto& r : all) {
        if (!out.empty() && r.first <= out.back().second) out.back().second = std::max(out.back().second, r.second);
        else out.push_back(r);
    }
    return out;
}

// Bytes of b not covered by a, and where the first of them is.
std::pair<off_t, off_t> uncovered(const Ranges& b, const Ranges& a) {
    off_t total = 0;
    off_t first = -1;
    for (const auto& [begin, end] : b) {
        off_t pos = begin;
        for (const auto& [ab, ae] : a) {
            if (ae <= pos) continue;
            if (ab >= end) break;
            if (ab > pos) {
                total += ab - pos;
                if (first < 0) first = pos;
            }
            pos = std::max(pos, ae);
            if (pos >= end) break;
        }
        if (pos < end) {
            total += end - pos;
            if (first < 0) first = pos;
        }
    }
    return {total, first};
}

using InodeKey = std::pair<dev_t, ino_t>;

class Comparer {
public:
    Comparer(const CompareOptions& options, Report& report) : options_(options), report_(report) {}

    void compare_root(int fa, int fb) {
        struct stat sa {};
        struct stat sb {};
        check_errno(::fstat(fa, &sa), "stat", "a");
        check_errno(::fstat(fb, &sb), "stat", "b");
        if (options_.compare_root) compare_attributes(fa, fb, "", "", sa, sb);
        compare_dir(fa, fb, "");
        compare_hardlinks();
    }

private:
    void compare_dir(int fa, int fb, const std::string& rel) {
        const auto na = list_dir(fa, rel);
        const auto nb = list_dir(fb, rel);
        size_t i = 0;
        size_t k = 0;
        while ((i < na.size() || k < nb.size()) && !report_.stopped()) {
            if (k == nb.size() || (i < na.size() && na[i] < nb[k])) {
                only_in(fa, na[i], rel, "a");
                ++i;
            } else if (i == na.size() || nb[k] < na[i]) {
                only_in(fb, nb[k], rel, "b");
                ++k;
            } else {
                compare_child(fa, fb, na[i], rel);
                ++i;
                ++k;
            }
        }
    }

    void only_in(int dirfd, const std::string& name, const std::string& rel, const char* side) {
        struct stat st {};
        const std::string child = join_rel(rel, name);
        check_errno(::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW), "stat", child);
        report_.add(child, std::string("only in ") + side + " (" + type_name(st.st_mode) + ")");
    }

    void compare_child(int fa, int fb, const std::string& name, const std::string& rel) {
        const std::string child = join_rel(rel, name);
        struct stat sa {};
        struct stat sb {};
        check_errno(::fstatat(fa, name.c_str(), &sa, AT_SYMLINK_NOFOLLOW), "stat a", child);
        check_errno(::fstatat(fb, name.c_str(), &sb, AT_SYMLINK_NOFOLLOW), "stat b", child);
        if (!compare_attributes(fa, fb, name, child, sa, sb)) return;
        if (S_ISDIR(sa.st_mode)) {
            const Fd da = open_dir_noatime(fa, name);
            const Fd db = open_dir_noatime(fb, name);
            compare_dir(da.get(), db.get(), child);
        } else {
            links_.push_back({child, {sa.st_dev, sa.st_ino}, {sb.st_dev, sb.st_ino}});
        }
    }

    // Returns false when the types differ and nothing else can be compared.
    bool compare_attributes(int fa, int fb, const std::string& name, const std::string& rel, const struct stat& sa,
                            const struct stat& sb) {
        if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT)) {
            report_.add(rel, std::string("type ") + type_name(sa.st_mode) + " != " + type_name(sb.st_mode));
            return false;
        }
        if (sa.st_mode != sb.st_mode) report_.add(rel, "mode " + octal(sa.st_mode) + " != " + octal(sb.st_mode));
        if (sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid)
            report_.add(rel, "owner " + std::to_string(sa.st_uid) + ":" + std::to_string(sa.st_gid) +
                                 " != " + std::to_string(sb.st_uid) + ":" + std::to_string(sb.st_gid));
        if ((S_ISREG(sa.st_mode) || S_ISLNK(sa.st_mode)) && sa.st_size != sb.st_size)
            report_.add(rel, "size " + std::to_string(sa.st_size) + " != " + std::to_string(sb.st_size));
        if ((S_ISCHR(sa.st_mode) || S_ISBLK(sa.st_mode)) && sa.st_rdev != sb.st_rdev)
            report_.add(rel, "rdev " + device(sa.st_rdev) + " != " + device(sb.st_rdev));
        if (sa.st_mtim.tv_sec != sb.st_mtim.tv_sec || sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec)
            report_.add(rel, "mtime " + timestamp(sa.st_mtim) + " != " + timestamp(sb.st_mtim));
        if (options_.compare_atime &&
            (sa.st_atim.tv_sec != sb.st_atim.tv_sec || sa.st_atim.tv_nsec != sb.st_atim.tv_nsec))
            report_.add(rel, "atime " + timestamp(sa.st_atim) + " != " + timestamp(sb.st_atim));
        if (S_ISLNK(sa.st_mode)) {
            const auto ta = read_link(fa, name, rel);
            const auto tb = read_link(fb, name, rel);
            if (ta != tb) report_.add(rel, "symlink target " + shown(ta) + " != " + shown(tb));
        }
        compare_xattrs(fa, fb, name, rel);
        if (S_ISREG(sa.st_mode) && sa.st_size == sb.st_size) compare_content(fa, fb, name, rel, sa.st_size);
        return true;
    }

    void compare_xattrs(int fa, int fb, const std::string& name, const std::string& rel) {
        const std::string pa = proc_path(fa, name);
        const std::string pb = proc_path(fb, name);
        const Xattrs xa = read_xattrs(pa, rel);
        const Xattrs xb = read_xattrs(pb, rel);
        for (const auto& [key, value] : xa) {
            const auto it = xb.find(key);
            if (it == xb.end()) {
                report_.add(rel, "xattr " + key + " only in a");
            } else if (it->second != value) {
                std::string va = shown(value);
                std::string vb = shown(it->second);
                if (key.rfind("system.posix_acl_", 0) == 0) {
                    const auto ta = acl_text(pa, key);
                    const auto tb = acl_text(pb, key);
                    if (!ta.empty() && !tb.empty()) {
                        va = ta;
                        vb = tb;
                    }
                }
                report_.add(rel, "xattr " + key + " " + va + " != " + vb);
            }
        }
        for (const auto& entry : xb)
            if (!xa.count(entry.first)) report_.add(rel, "xattr " + entry.first + " only in b");
    }

    void compare_content(int fa, int fb, const std::string& name, const std::string& rel, off_t size) {
        const int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC;
        int a = ::openat(fa, name.c_str(), flags | O_NOATIME);
        if (a < 0 && errno == EPERM) a = ::openat(fa, name.c_str(), flags);
        if (a < 0) throw_errno("open a", rel);
        const Fd file_a(a);
        int b = ::openat(fb, name.c_str(), flags | O_NOATIME);
        if (b < 0 && errno == EPERM) b = ::openat(fb, name.c_str(), flags);
        if (b < 0) throw_errno("open b", rel);
        const Fd file_b(b);

        const Ranges ra = data_ranges(file_a.get(), size, rel);
        const Ranges rb = data_ranges(file_b.get(), size, rel);
        // Where both have holes both read as zeros: only the data of either side needs reading.
        constexpr size_t chunk = 1 << 20;
        buf_a_.resize(chunk);
        buf_b_.resize(chunk);
        bool differs = false;
        for (const auto& [begin, end] : unite(ra, rb)) {
            for (off_t pos = begin; pos < end && !differs;) {
                const auto want = static_cast<size_t>(std::min<off_t>(end - pos, static_cast<off_t>(chunk)));
                read_exact(file_a.get(), buf_a_.data(), want, pos, rel);
                read_exact(file_b.get(), buf_b_.data(), want, pos, rel);
                if (std::memcmp(buf_a_.data(), buf_b_.data(), want) != 0) {
                    const auto at = std::mismatch(buf_a_.begin(), buf_a_.begin() + static_cast<ptrdiff_t>(want),
                                                  buf_b_.begin());
                    report_.add(rel, "content differs at byte " +
                                         std::to_string(pos + (at.first - buf_a_.begin())));
                    differs = true;
                }
                pos += static_cast<off_t>(want);
            }
            if (differs) break;
        }
        if (options_.expect_sparse) {
            const auto [extra, first] = uncovered(rb, ra);
            if (extra > 0)
                report_.add(rel, "not sparse: " + std::to_string(extra) + " bytes of data where a has holes, from byte " +
                                     std::to_string(first));
        }
    }

    static void read_exact(int fd, char* buf, size_t size, off_t offset, std::string_view rel) {
        size_t done = 0;
        while (done < size) {
            const ssize_t n = ::pread(fd, buf + done, size - done, offset + static_cast<off_t>(done));
            if (n < 0) throw_errno("read", rel);
            if (n == 0) throw Error("read", rel, "file shrank while comparing");
            done += static_cast<size_t>(n);
        }
    }

    // The names that share an inode in a must share one inode in b, with no other names.
    void compare_hardlinks() {
        std::map<InodeKey, std::vector<std::string>> ga;
        std::map<InodeKey, std::vector<std::string>> gb;
        for (const auto& l : links_) {
            ga[l.a].push_back(l.rel);
            gb[l.b].push_back(l.rel);
        }
        std::map<std::string, InodeKey> b_of;
        for (const auto& l : links_) b_of.emplace(l.rel, l.b);
        auto braces = [](const std::vector<std::string>& names) {
            std::string s = "{";
            for (size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + escape(names[i]);
            return s + "}";
        };
        std::vector<std::pair<std::string, std::string>> found;  // sorted by first name below
        std::set<std::string> seen;
        for (auto& [key, names] : ga) {
            std::sort(names.begin(), names.end());
            std::set<InodeKey> in_b;
            for (const auto& n : names) in_b.insert(b_of.at(n));
            if (in_b.size() == 1) {
                auto group_b = gb.at(*in_b.begin());
                std::sort(group_b.begin(), group_b.end());
                if (group_b == names) continue;
            }
            std::vector<std::vector<std::string>> groups_b;
            for (const auto& k : in_b) {
                groups_b.push_back(gb.at(k));
                std::sort(groups_b.back().begin(), groups_b.back().end());
            }
            std::sort(groups_b.begin(), groups_b.end());
            std::string what = "hardlinks " + braces(names) + " !=";
            for (const auto& g : groups_b) what += " " + braces(g);
            if (seen.insert(what).second) found.emplace_back(names.front(), what);
        }
        std::sort(found.begin(), found.end());
        for (const auto& [rel, what] : found) report_.add(rel, what);
    }

    struct Link {
        std::string rel;
        InodeKey a;
        InodeKey b;
    };

    const CompareOptions& options_;
    Report& report_;
    std::vector<Link> links_;
    std::vector<char> buf_a_;
    std::vector<char> buf_b_;
};

}  // namespace

bool selinux_xattr_supported(const std::filesystem::path& dir) {
    const Dir d = Dir::open(dir);
    // An unnamed O_TMPFILE leaves the directory (and its mtime) as it was; a named probe file
    // is the fallback, and the directory's times are put back after it.
    Fd f(::openat(d.fd(), ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
    if (!f) {
        const struct stat before = d.stat_self();
        const std::string name = ".selinux-probe-" + std::to_string(::getpid());
        f = open_checked(d.fd(), name, O_WRONLY | O_CREAT | O_EXCL, "create", 0600);
        ::unlinkat(d.fd(), name.c_str(), 0);
        const timespec ts[2] = {before.st_atim, before.st_mtim};
        ::futimens(d.fd(), ts);
    }
    const int r = ::fsetxattr(f.get(), "security.selinux", selinux_label.data(), selinux_label.size(), 0);
    if (r == 0) return true;
    if (errno == EOPNOTSUPP || errno == EINVAL || errno == EPERM || errno == EACCES) return false;
    throw_errno("set xattr security.selinux on a file in", dir.string());
}

void make_fixture_tree(const std::filesystem::path& root, FixtureOptions options) {
    with_context("make fixture tree", root.string(), [&] {
        Builder t(root, options);
        const bool selinux = selinux_xattr_supported(root);
        check_errno(::fchown(t.fd(), 0, 0), "chown", ".");
        check_errno(::fchmod(t.fd(), 0755), "chmod", ".");

        t.symlink("bin", "usr/bin");
        t.dir("etc", 0755);
        t.file("etc/hostname", "strata-fixture\n", 0644);
        t.file("etc/shadow", "root:*:19000:0:99999:7:::\n", 0640, 0, 42);
        t.file("etc/empty", "", 0644);
        t.file("etc/one-byte", "x", 0600);

        t.dir("usr", 0755);
        t.dir("usr/bin", 0755);
        t.dir("usr/sbin", 0755);
        t.file(fixture::setuid_binary, t.random_bytes(fixture::setuid_binary, 30000), 04755, 0, 0);
        t.file(fixture::capability_binary, t.random_bytes(fixture::capability_binary, 4096), 0755);
        t.xattr(fixture::capability_binary, "security.capability", capability_net_raw());
        t.file(fixture::hardlink_triple[0], t.random_bytes(fixture::hardlink_triple[0], 65537), 0755);
        t.hardlink(fixture::hardlink_triple[0], fixture::hardlink_triple[1]);
        t.hardlink(fixture::hardlink_triple[0], fixture::hardlink_triple[2]);
        if (selinux) t.xattr(fixture::setuid_binary, "security.selinux", selinux_label);

        t.dir("usr/lib", 0755);
        t.file("usr/lib/libfoo.so.1.2.3", t.random_bytes("usr/lib/libfoo.so.1.2.3", 4095), 0644);
        t.symlink("usr/lib/libfoo.so.1", "libfoo.so.1.2.3");
        t.dir("usr/lib/data", 0755);
        t.file(fixture::random_file, t.random_bytes(fixture::random_file, 1 << 20), 0644);
        t.sparse(fixture::sparse_file, options.sparse_size);
        t.file(fixture::hardlink_pair[0], "two names, one inode\n", 0644);
        t.hardlink(fixture::hardlink_pair[0], fixture::hardlink_pair[1]);

        t.dir("usr/share", 0755);
        t.dir(fixture::empty_dir, 0755);
        t.dir("usr/share/readonly", 0555);
        t.file("usr/share/readonly/README", "read only\n", 0444);
        t.dir("usr/share/games", 02775, 0, 42);
        t.file("usr/share/games/scores", "", 0664, 0, 42);
        t.symlink("usr/share/localtime", "/usr/share/zoneinfo/UTC");

        t.dir("var", 0755);
        t.dir("var/tmp", 01777);
        t.dir("root", 0700);
        t.file("root/.profile", "umask 077\n", 0600);
        t.dir("home", 0755);
        t.dir("home/user", 0700, 1000, 1000);
        t.file(fixture::user_file, "owned by 1000:1000\n", 0644, 1000, 1000);
        t.symlink("home/user/link", "notes.txt", 1000, 1000);
        t.dir("home/nobody", 0755, 65534, 65534);
        t.file("home/nobody/file", "owned by nobody\n", 0600, 65534, 65534);

        t.dir("dev", 0755);
        t.node(fixture::char_device, S_IFCHR, makedev(1, 3), 0666);
        t.node(fixture::block_device, S_IFBLK, makedev(7, 200), 0660, 0, 6);
        t.dir("run", 0755);
        t.node("run/fifo", S_IFIFO, 0, 0620, 0, 5);
        t.xattr("run/fifo", "trusted.strata-test", "on a fifo");
        t.socket("run/socket", 0755);

        t.dir("links", 0755);
        t.symlink(fixture::relative_symlink, "../etc/hostname");
        t.symlink("links/absolute", "/etc/hostname");
        t.symlink("links/dangling", "does/not/exist");
        t.symlink("links/to-dir", "../usr/lib");

        t.dir("names", 0755);
        t.file("names/with  spaces ", "spaces\n", 0644);
        t.file("names/ünïcødé-名前-🙂", "utf-8\n", 0644);
        t.file("names/--leading-dash", "dash\n", 0644);
        t.file("names/-", "-\n", 0644);
        t.file("names/new\nline", "newline\n", 0644);
        std::string long_name = "long-name-";
        long_name.resize(255, 'x');
        t.file("names/" + long_name, "255 bytes\n", 0644);

        std::string deep = "deep";
        t.dir(deep, 0755);
        for (int i = 1; i <= 20; ++i) {
            char level[8];
            std::snprintf(level, sizeof level, "/d%02d", i);
            deep += level;
            t.dir(deep, 0755);
        }
        t.file(deep + "/leaf", "20 levels down\n", 0644);

        t.dir("xattrs", 0755);
        t.xattr("xattrs", "user.dir", "on a directory");
        t.file(fixture::xattr_file, "has xattrs\n", 0644);
        t.xattr(fixture::xattr_file, "user.text", "plain text value");
        t.xattr(fixture::xattr_file, "user.binary", std::string_view("\x00\x01\xff\xfe" "a\x00\x80", 7));
        t.xattr(fixture::xattr_file, "user.empty", "");
        t.xattr(fixture::xattr_file, "trusted.strata-test", "trusted value");
        t.symlink("xattrs/symlink", "file");
        t.xattr("xattrs/symlink", "trusted.strata-test", "on a symlink");

        t.dir("acl", 0755);
        t.file(fixture::acl_file, "has an access ACL\n", 0664);
        t.acl(fixture::acl_file, ACL_TYPE_ACCESS, "u::rw-,u:1000:rw-,g::r--,m::rw-,o::r--");
        t.dir(fixture::acl_default_dir, 0775);
        t.acl(fixture::acl_default_dir, ACL_TYPE_ACCESS, "u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x");
        t.acl(fixture::acl_default_dir, ACL_TYPE_DEFAULT, "u::rwx,u:1000:rwx,g:42:r-x,g::r-x,m::rwx,o::---");
        // Created below the default ACL: inherits it (umask does not apply), no chmod afterwards.
        const std::string inherited = std::string(fixture::acl_default_dir) + "/inherited";
        open_checked(t.fd(), inherited, O_WRONLY | O_CREAT | O_EXCL, "create", 0640);
        check_errno(::mkdirat(t.fd(), (std::string(fixture::acl_default_dir) + "/subdir").c_str(), 0750), "mkdir",
                    "acl/default/subdir");

        t.stamp_times();
    });
}

std::vector<std::string> compare_trees(const std::filesystem::path& a, const std::filesystem::path& b,
                                       CompareOptions options) {
    Report report(options.max_differences);
    const Fd fa = open_dir_noatime(AT_FDCWD, a.string());
    const Fd fb = open_dir_noatime(AT_FDCWD, b.string());
    Comparer(options, report).compare_root(fa.get(), fb.get());
    return report.take();
}

std::string code_like(size_t records, uint32_t shift, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s;
    for (size_t i = 0; i < records; ++i) {
        const uint32_t address = static_cast<uint32_t>(i * 64 + shift);
        s += "\x48\x8b\x05";
        s.append(reinterpret_cast<const char*>(&address), 4);
        s += static_cast<char>(rng() % 8);
        s += "\xe8\x00\x00\x00\x00\xc3";
    }
    return s;
}

void write_kernel(const std::filesystem::path& tree, const std::string& kver, std::string_view vmlinuz,
                  std::string_view initrd) {
    const auto dir = tree / "lib/modules" / kver;
    std::filesystem::create_directories(dir);
    for (const auto& [name, text] : {std::pair{"vmlinuz", vmlinuz}, std::pair{"initrd.img", initrd}}) {
        std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
        out << text;
        if (!out.flush()) throw std::runtime_error("write " + (dir / name).string());
    }
}

uint64_t physical_at(const std::filesystem::path& file, uint64_t offset) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("open " + file.string() + ": " + std::strerror(errno));
    std::vector<std::byte> buffer(sizeof(fiemap) + sizeof(fiemap_extent));
    auto* map = reinterpret_cast<fiemap*>(buffer.data());
    map->fm_start = offset;
    map->fm_length = 1;
    map->fm_flags = FIEMAP_FLAG_SYNC;
    map->fm_extent_count = 1;
    const int rc = ::ioctl(fd, FS_IOC_FIEMAP, map);
    const int error = errno;
    ::close(fd);
    if (rc != 0) throw std::runtime_error("map extents of " + file.string() + ": " + std::strerror(error));
    if (map->fm_mapped_extents != 1) throw std::runtime_error(file.string() + ": no extent at " + std::to_string(offset));
    return map->fm_extents[0].fe_physical + (offset - map->fm_extents[0].fe_logical);
}

}  // namespace strata::test
