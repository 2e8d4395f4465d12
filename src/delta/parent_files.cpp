#include "delta/parent_files.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "base/error.hpp"

namespace strata::delta {
namespace {

constexpr uint64_t readahead_step = 1u << 20;

Fd open_beneath(int tree_fd, const std::string& path) {
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    return Fd(static_cast<int>(syscall(SYS_openat2, tree_fd, path.c_str(), &how, sizeof how)));
}

std::string read_range(int fd, const std::string& path, uint64_t offset, uint64_t length) {
    std::string data(length, '\0');
    size_t done = 0;
    while (done < length) {
        const ssize_t n = pread(fd, data.data() + done, length - done, static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("read parent file", path);
        if (n == 0) throw Error("read parent file", path, "changed while read");
        done += static_cast<size_t>(n);
    }
    return data;
}

Fd duplicate(const Dir& tree) {
    Fd fd(::fcntl(tree.fd(), F_DUPFD_CLOEXEC, 0));
    if (!fd) throw_errno("open for reading ahead", tree.path().string());
    return fd;
}

}  // namespace

std::pair<Fd, uint64_t> open_parent_file(const Dir& tree, const std::string& path) {
    Fd fd = open_beneath(tree.fd(), path);
    if (!fd) throw_errno("open parent file", path);
    struct stat st {};
    check_errno(fstat(fd.get(), &st), "stat parent file", path);
    if (!S_ISREG(st.st_mode)) throw Error("read parent file", path, "not a regular file", Fault::InvalidInput);
    return {std::move(fd), static_cast<uint64_t>(st.st_size)};
}

std::string read_parent_range(const Dir& tree, const std::string& path, uint64_t offset, uint64_t length) {
    const auto [fd, size] = open_parent_file(tree, path);
    if (offset > size || length > size - offset)
        throw Error("read parent file", path, "shorter than the payload needs (a wrong or modified parent)");
    return read_range(fd.get(), path, offset, length);
}

std::string read_parent_file(const Dir& tree, const std::string& path, uint64_t max_bytes) {
    const auto [fd, size] = open_parent_file(tree, path);
    if (size > max_bytes)
        throw Error("read parent file", path, "larger than the payload allows (a wrong or modified parent)");
    return read_range(fd.get(), path, 0, size);
}

ParentReadahead::ParentReadahead(const Dir& tree) : tree_(duplicate(tree)), thread_([this] { run(); }) {}

ParentReadahead::~ParentReadahead() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

void ParentReadahead::want(uint64_t record, std::string path, uint64_t offset, uint64_t length) {
    {
        const std::lock_guard lock(mutex_);
        queue_.push_back({record, std::move(path), offset, length});
    }
    wake_.notify_one();
}

void ParentReadahead::reached(uint64_t record) {
    const std::lock_guard lock(mutex_);
    reached_ = record;
}

void ParentReadahead::run() {
    while (true) {
        Want next;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            next = std::move(queue_.front());
            queue_.pop_front();
            if (next.record < reached_) continue;
        }
        // readahead(2) only queues the reads; what blocks here is finding the file and its
        // extents, which is exactly what the decoder should not wait for.
        const Fd fd = open_beneath(tree_.get(), next.path);
        if (!fd) continue;
        struct stat st {};
        if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        const auto size = static_cast<uint64_t>(st.st_size);
        const uint64_t end = next.length == 0 ? size : std::min(size, next.offset + next.length);
        // The kernel reads at most its readahead window per call.
        for (uint64_t at = next.offset; at < end; at += readahead_step)
            ::readahead(fd.get(), static_cast<off64_t>(at), static_cast<size_t>(std::min(readahead_step, end - at)));
    }
}

}  // namespace strata::delta
