#include "base/fd.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <random>

#include "base/chandle.hpp"
#include "base/error.hpp"

namespace strata {

Fd& Fd::operator=(Fd&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = other.release();
    }
    return *this;
}

Fd::~Fd() {
    if (fd_ >= 0) ::close(fd_);
}

int Fd::release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
}

Dir Dir::open(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw_errno("open directory", path.string());
    return Dir(Fd(fd), path);
}

Dir Dir::open_dir(std::string_view name) const {
    const std::string n(name);
    const int fd = ::openat(fd_.get(), n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) throw_errno("open directory", path_of(name).string());
    return Dir(Fd(fd), path_of(name));
}

std::optional<Dir> Dir::try_open_dir(std::string_view name) const {
    const std::string n(name);
    const int fd = ::openat(fd_.get(), n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return std::nullopt;
        throw_errno("open directory", path_of(name).string());
    }
    return Dir(Fd(fd), path_of(name));
}

Dir Dir::make_dir(std::string_view name, mode_t mode) const {
    const std::string n(name);
    if (::mkdirat(fd_.get(), n.c_str(), mode) < 0 && errno != EEXIST)
        throw_errno("create directory", path_of(name).string());
    return open_dir(name);
}

Fd Dir::open_file(std::string_view name, int flags, mode_t mode) const {
    const std::string n(name);
    const int fd = ::openat(fd_.get(), n.c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) throw_errno("open", path_of(name).string());
    return Fd(fd);
}

std::optional<struct stat> Dir::stat(std::string_view name) const {
    const std::string n(name);
    struct stat st {};
    if (::fstatat(fd_.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) return std::nullopt;
        throw_errno("stat", path_of(name).string());
    }
    return st;
}

struct stat Dir::stat_self() const {
    struct stat st {};
    check_errno(::fstat(fd_.get(), &st), "stat", path_.string());
    return st;
}

std::vector<std::string> Dir::entries() const {
    // fdopendir takes ownership of its fd, so give it a duplicate and keep ours.
    const int dup = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 3);
    if (dup < 0) throw_errno("read directory", path_.string());
    CHandle<DIR, ::closedir> d(::fdopendir(dup));
    if (!d) {
        const int saved = errno;
        ::close(dup);
        throw Error("read directory", path_.string(), saved);
    }
    ::rewinddir(d.get());
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* e = ::readdir(d.get())) {
        const std::string_view n = e->d_name;
        if (n != "." && n != "..") names.emplace_back(n);
        errno = 0;
    }
    if (errno != 0) throw_errno("read directory", path_.string());
    return names;
}

void Dir::rename(std::string_view from, const Dir& to_dir, std::string_view to, bool no_replace) const {
    const std::string f(from), t(to);
    if (::renameat2(fd_.get(), f.c_str(), to_dir.fd(), t.c_str(), no_replace ? RENAME_NOREPLACE : 0) < 0)
        throw Error("rename '" + path_of(from).string() + "' to", to_dir.path_of(to).string(), errno);
}

void Dir::exchange(std::string_view name, const Dir& other_dir, std::string_view other) const {
    const std::string a(name), b(other);
    if (::renameat2(fd_.get(), a.c_str(), other_dir.fd(), b.c_str(), RENAME_EXCHANGE) < 0)
        throw Error("exchange '" + path_of(name).string() + "' with", other_dir.path_of(other).string(), errno);
}

void Dir::unlink(std::string_view name) const {
    const std::string n(name);
    check_errno(::unlinkat(fd_.get(), n.c_str(), 0), "remove", path_of(name).string());
}

void Dir::remove_dir(std::string_view name) const {
    const std::string n(name);
    check_errno(::unlinkat(fd_.get(), n.c_str(), AT_REMOVEDIR), "remove directory", path_of(name).string());
}

void Dir::sync() const {
    check_errno(::fsync(fd_.get()), "sync", path_.string());
}

void write_all(int fd, std::string_view data, std::string_view what) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("write", what);
        }
        data.remove_prefix(static_cast<size_t>(n));
    }
}

size_t read_full(int fd, char* buffer, size_t size, std::string_view what) {
    size_t done = 0;
    while (done < size) {
        const ssize_t n = ::read(fd, buffer + done, size - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("read", what);
        }
        if (n == 0) break;
        done += static_cast<size_t>(n);
    }
    return done;
}

AtomicFile::AtomicFile(const Dir& dir, std::string_view name, mode_t mode)
    : dir_(&dir), name_(name), temp_(".#" + std::string(name) + "." + std::to_string(std::random_device{}())),
      mode_(mode), fd_(dir.open_file(temp_, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode)) {}

AtomicFile::~AtomicFile() {
    if (!committed_) ::unlinkat(dir_->fd(), temp_.c_str(), 0);
}

void AtomicFile::commit() {
    // fchmod: the umask may have narrowed the mode given to open.
    check_errno(::fchmod(fd_.get(), mode_), "set mode of", temp_path());
    check_errno(::fsync(fd_.get()), "sync", temp_path());
    dir_->rename(temp_, *dir_, name_, /*no_replace=*/false);
    committed_ = true;
    dir_->sync();
}

void write_file_atomic(const Dir& dir, std::string_view name, std::string_view content, mode_t mode) {
    AtomicFile file(dir, name, mode);
    write_all(file.fd(), content, file.temp_path());
    file.commit();
}

std::string read_file(const Dir& dir, std::string_view name) {
    Fd fd = dir.open_file(name, O_RDONLY);
    std::string out;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("read", dir.path_of(name).string());
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

}  // namespace strata
