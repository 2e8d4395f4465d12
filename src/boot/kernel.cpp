#include "boot/kernel.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>

#include <spdlog/spdlog.h>

#include "base/error.hpp"
#include "btrfs/subvolume.hpp"

namespace strata::boot {
namespace {

constexpr std::string_view initrd_names[] = {"initrd", "initrd.img", "initramfs.img"};
constexpr size_t buffer_size = 1 << 20;

bool valid_file_name(std::string_view name) {
    if (name.empty() || name.size() > 255 || name == "." || name == "..") return false;
    for (const char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
                        c == '_' || c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}

void check_name(std::string_view what, std::string_view name) {
    if (!valid_file_name(name))
        throw Error(what, name, "not a valid file name (only A-Z a-z 0-9 + _ . -, at most 255 characters)",
                    Fault::InvalidInput);
}

[[noreturn]] void not_found(const Dir& tree, const std::string& reason) {
    throw Error("find kernel in", tree.path().string(), reason, Fault::NotFound);
}

// A regular file in dir (not following a final symlink); nullopt when absent.
std::optional<struct stat> regular_file(const Dir& tree, const Dir& dir, std::string_view name) {
    const auto st = dir.stat(name);
    if (!st) return std::nullopt;
    if (!S_ISREG(st->st_mode))
        throw Error("find kernel in", tree.path().string(),
                    "'" + dir.path_of(name).string() + "' is not a regular file" +
                        (S_ISLNK(st->st_mode) ? " (symbolic links are not followed)" : ""),
                    Fault::InvalidInput);
    return st;
}

// True if the file at fd (from offset 0) has exactly the bytes of src (from offset 0).
bool same_content(int a, int b, uint64_t size, std::string_view what) {
    auto buf_a = std::make_unique<char[]>(buffer_size), buf_b = std::make_unique<char[]>(buffer_size);
    uint64_t offset = 0;
    while (offset < size) {
        const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer_size, size - offset));
        const ssize_t na = ::pread(a, buf_a.get(), want, static_cast<off_t>(offset));
        if (na < 0) throw_errno("read", what);
        const ssize_t nb = ::pread(b, buf_b.get(), want, static_cast<off_t>(offset));
        if (nb < 0) throw_errno("read", what);
        if (na != nb || na == 0 || std::memcmp(buf_a.get(), buf_b.get(), static_cast<size_t>(na)) != 0) return false;
        offset += static_cast<uint64_t>(na);
    }
    return true;
}

// Makes dir/name hold the bytes of src (size bytes). Returns the bytes written: 0 when the file
// was there already with the same content.
// A copy carries its source's mtime. The source lives in a read-only usr tree, so equal size and
// mtime (to the nanosecond) mean the copy is current without reading 50 MiB on every deploy,
// set-default and rollback; anything else is compared byte by byte.
uint64_t install_file(const Dir& dir, std::string_view name, int src, uint64_t size, const std::string& src_path) {
    struct stat src_st {};
    check_errno(::fstat(src, &src_st), "stat", src_path);
    if (const auto st = dir.stat(name); st && S_ISREG(st->st_mode) && static_cast<uint64_t>(st->st_size) == size) {
        if (st->st_mtim.tv_sec == src_st.st_mtim.tv_sec && st->st_mtim.tv_nsec == src_st.st_mtim.tv_nsec) return 0;
        const Fd existing = dir.open_file(name, O_RDONLY | O_NOFOLLOW);
        if (same_content(existing.get(), src, size, dir.path_of(name).string())) return 0;
    }
    AtomicFile file(dir, name);
    auto buf = std::make_unique<char[]>(buffer_size);
    uint64_t offset = 0;
    while (offset < size) {
        const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer_size, size - offset));
        const ssize_t n = ::pread(src, buf.get(), want, static_cast<off_t>(offset));
        if (n < 0) throw_errno("read", src_path);
        if (n == 0) throw Error("read", src_path, "file shrank while it was copied");
        write_all(file.fd(), std::string_view(buf.get(), static_cast<size_t>(n)), file.temp_path());
        // Start writing this piece to disk now, while the next is read: the fsync in commit()
        // then waits for the last pieces only, not for all 40 MiB after the last read. A hint
        // (its failure changes nothing): commit()'s fsync is what makes the copy durable.
        ::sync_file_range(file.fd(), static_cast<off_t>(offset), n, SYNC_FILE_RANGE_WRITE);
        offset += static_cast<uint64_t>(n);
    }
    const timespec times[2] = {src_st.st_atim, src_st.st_mtim};
    check_errno(::futimens(file.fd(), times), "set times of", file.temp_path());
    file.commit();
    return size;
}

void remove_tree_contents(const Dir& dir) {
    for (const auto& name : dir.entries()) {
        const auto st = dir.stat(name);
        if (!st) continue;
        if (S_ISDIR(st->st_mode)) {
            remove_tree_contents(dir.open_dir(name));
            dir.remove_dir(name);
        } else {
            dir.unlink(name);
        }
    }
}

}  // namespace

KernelSource find_kernel(const Dir& usr_tree, std::optional<std::string_view> kver) {
    std::optional<Dir> modules;
    if (auto lib = usr_tree.try_open_dir("lib")) modules = lib->try_open_dir("modules");
    if (!modules) not_found(usr_tree, "no kernel (no lib/modules/<kver>/vmlinuz)");

    std::string version;
    if (kver) {
        check_name("kernel version", *kver);
        version = std::string(*kver);
        const auto dir = modules->try_open_dir(version);
        if (!dir || !regular_file(usr_tree, *dir, "vmlinuz"))
            not_found(usr_tree, "no kernel lib/modules/" + version + "/vmlinuz");
    } else {
        std::vector<std::string> found;
        for (auto& name : modules->entries()) {
            const auto st = modules->stat(name);
            if (!st || !S_ISDIR(st->st_mode)) continue;
            if (modules->open_dir(name).stat("vmlinuz")) found.push_back(std::move(name));
        }
        std::sort(found.begin(), found.end());
        if (found.empty()) not_found(usr_tree, "no kernel (no lib/modules/<kver>/vmlinuz)");
        if (found.size() > 1) {
            std::string list;
            for (const auto& f : found) list += (list.empty() ? "" : ", ") + f;
            throw Error("find kernel in", usr_tree.path().string(),
                        "several kernel versions (" + list + "); choose one", Fault::InvalidInput);
        }
        version = found.front();
        regular_file(usr_tree, modules->open_dir(version), "vmlinuz");
    }

    const Dir dir = modules->open_dir(version);
    const std::filesystem::path base = std::filesystem::path("lib/modules") / version;
    for (const auto name : initrd_names)
        if (regular_file(usr_tree, dir, name)) return KernelSource{version, base / "vmlinuz", base / name};
    not_found(usr_tree, "no initrd beside lib/modules/" + version + "/vmlinuz (looked for initrd, initrd.img, initramfs.img)");
}

InstalledKernel install_kernel(const Dir& boot, std::string_view token, std::string_view version, const Dir& usr_tree,
                               const KernelSource& source) {
    check_name("entry token", token);
    check_name("kernel version", version);
    const std::string t(token), v(version);
    InstalledKernel out{"/" + t + "/" + v + "/linux", "/" + t + "/" + v + "/initrd", false, 0};

    struct Source {
        std::string_view name;
        Fd fd;
        uint64_t size;
        std::string path;
    };
    std::vector<Source> sources;
    const std::pair<std::string_view, const std::filesystem::path*> files[] = {{"linux", &source.vmlinuz},
                                                                                {"initrd", &source.initrd}};
    for (const auto& [name, rel] : files) {
        const std::string path = usr_tree.path_of(rel->string()).string();
        Fd fd = usr_tree.open_file(rel->string(), O_RDONLY | O_NOFOLLOW);
        struct stat st {};
        check_errno(::fstat(fd.get(), &st), "stat", path);
        if (!S_ISREG(st.st_mode)) throw Error("install kernel from", path, "not a regular file", Fault::InvalidInput);
        sources.push_back(Source{name, std::move(fd), static_cast<uint64_t>(st.st_size), path});
    }

    bool created_token = false, created_version = false;
    std::optional<Dir> token_dir = boot.try_open_dir(t);
    std::vector<std::string_view> written;
    try {
        if (!token_dir) {
            token_dir = boot.make_dir(t);
            created_token = true;
            boot.sync();
        }
        std::optional<Dir> version_dir = token_dir->try_open_dir(v);
        if (!version_dir) {
            version_dir = token_dir->make_dir(v);
            created_version = true;
            token_dir->sync();
        }
        // Kernel and initrd are copied side by side: a cold copy waits on reads and on write-back,
        // and two streams keep the disks busier than one (bench/README.md, 2026-12-07, late
        // night: 111 -> 94 ms mean for 10 + 30 MiB between two loop-backed btrfs). When both
        // fail, the kernel's error is the one reported.
        struct Copy {
            uint64_t bytes = 0;
            std::exception_ptr error;
        };
        std::array<Copy, 2> copies;
        const auto copy = [&](size_t i) {
            const Source& s = sources[i];
            try {
                copies[i].bytes = with_context("install kernel", version_dir->path_of(s.name).string(), [&] {
                    return install_file(*version_dir, s.name, s.fd.get(), s.size, s.path);
                });
            } catch (...) {
                copies[i].error = std::current_exception();
            }
        };
        std::thread initrd(copy, 1);
        copy(0);
        initrd.join();
        for (size_t i = 0; i < copies.size(); ++i) {
            if (copies[i].bytes == 0) continue;
            written.push_back(sources[i].name);
            out.copied = true;
            out.bytes += copies[i].bytes;
        }
        for (const auto& c : copies)
            if (c.error) std::rethrow_exception(c.error);
    } catch (...) {
        // Leave $BOOT as it was: what this call created goes again (best effort).
        if (created_version && token_dir) {
            if (auto vd = token_dir->try_open_dir(v)) {
                for (const auto name : written) ::unlinkat(vd->fd(), std::string(name).c_str(), 0);
                ::unlinkat(token_dir->fd(), v.c_str(), AT_REMOVEDIR);
                ::fsync(token_dir->fd());
            }
        }
        if (created_token) {
            ::unlinkat(boot.fd(), t.c_str(), AT_REMOVEDIR);
            ::fsync(boot.fd());
        }
        throw;
    }
    spdlog::debug("install kernel {} to '{}': {} bytes written", source.kver, boot.path_of(t + "/" + v).string(),
                  out.bytes);
    return out;
}

namespace {

constexpr std::pair<std::string_view, std::string_view> ahead_names[] = {{"linux", ".ahead-linux"},
                                                                          {"initrd", ".ahead-initrd"}};

const std::filesystem::path& source_path(const KernelSource& source, std::string_view name) {
    return name == "linux" ? source.vmlinuz : source.initrd;
}

}  // namespace

KernelAhead::KernelAhead(const Dir& boot, std::string token, std::string version, Dir predecessor_tree)
    : boot_(boot), token_(std::move(token)), version_(std::move(version)), predecessor_(std::move(predecessor_tree)),
      thread_([this] {
          try {
              copy();
          } catch (...) {
              error_ = std::current_exception();
          }
      }) {}

KernelAhead::~KernelAhead() {
    if (thread_.joinable()) thread_.join();
    if (!taken_) discard();
}

void KernelAhead::copy() {
    check_name("entry token", token_);
    check_name("kernel version", version_);
    source_ = find_kernel(predecessor_);
    std::optional<Dir> token_dir = boot_.try_open_dir(token_);
    if (!token_dir) {
        token_dir = boot_.make_dir(token_);
        created_token_ = true;
        boot_.sync();
    }
    version_dir_ = token_dir->try_open_dir(version_);
    if (!version_dir_) {
        version_dir_ = token_dir->make_dir(version_);
        created_version_ = true;
        token_dir->sync();
    }
    for (const auto& [name, ahead] : ahead_names) {
        // A copy left by an earlier try may come from another predecessor: never kept.
        ::unlinkat(version_dir_->fd(), std::string(ahead).c_str(), 0);
        const auto& rel = source_path(*source_, name);
        const Fd fd = predecessor_.open_file(rel.string(), O_RDONLY | O_NOFOLLOW);
        struct stat st {};
        const auto path = predecessor_.path_of(rel.string()).string();
        check_errno(::fstat(fd.get(), &st), "stat", path);
        install_file(*version_dir_, ahead, fd.get(), static_cast<uint64_t>(st.st_size), path);
    }
}

int KernelAhead::take(const Dir& usr_tree) {
    thread_.join();
    int kept = 0;
    try {
        if (error_) std::rethrow_exception(error_);
        const auto source = find_kernel(usr_tree, source_->kver);
        for (const auto& [name, ahead] : ahead_names) {
            const auto& rel = source_path(source, name);
            if (rel != source_path(*source_, name)) continue;
            const Fd now = usr_tree.open_file(rel.string(), O_RDONLY | O_NOFOLLOW);
            const Fd before = predecessor_.open_file(rel.string(), O_RDONLY | O_NOFOLLOW);
            if (!btrfs::same_extents(now.get(), before.get(), usr_tree.path_of(rel.string()).string())) continue;
            struct stat st {};
            check_errno(::fstat(now.get(), &st), "stat", usr_tree.path_of(rel.string()).string());
            const Fd copy = version_dir_->open_file(ahead, O_RDONLY | O_NOFOLLOW);
            const auto copy_path = version_dir_->path_of(ahead).string();
            const timespec times[2] = {st.st_atim, st.st_mtim};
            check_errno(::futimens(copy.get(), times), "set times of", copy_path);
            check_errno(::fsync(copy.get()), "sync", copy_path);
            version_dir_->rename(ahead, *version_dir_, name, false);
            taken_ = true;
            ++kept;
        }
        if (kept > 0) version_dir_->sync();
        spdlog::debug("{} of 2 kernel files of '{}' copied to $BOOT while it was received", kept, usr_tree.path().string());
    } catch (const std::exception& e) {
        spdlog::debug("kernel copied ahead for '{}' not used: {}", usr_tree.path().string(), e.what());
    }
    if (taken_)
        for (const auto& [name, ahead] : ahead_names) ::unlinkat(version_dir_->fd(), std::string(ahead).c_str(), 0);
    return kept;
}

void KernelAhead::discard() {
    if (!version_dir_) return;
    for (const auto& [name, ahead] : ahead_names) ::unlinkat(version_dir_->fd(), std::string(ahead).c_str(), 0);
    if (created_version_) {
        if (auto token_dir = boot_.try_open_dir(token_)) {
            ::unlinkat(token_dir->fd(), version_.c_str(), AT_REMOVEDIR);  // only when empty
            ::fsync(token_dir->fd());
        }
    }
    if (created_token_) {
        ::unlinkat(boot_.fd(), token_.c_str(), AT_REMOVEDIR);
        ::fsync(boot_.fd());
    }
}

void remove_kernel(const Dir& boot, std::string_view token, std::string_view version) {
    check_name("entry token", token);
    check_name("kernel version", version);
    const std::string t(token), v(version);
    with_context("remove kernel", boot.path_of(t + "/" + v).string(), [&] {
        const auto token_dir = boot.try_open_dir(t);
        if (!token_dir) return;
        if (auto version_dir = token_dir->try_open_dir(v)) {
            remove_tree_contents(*version_dir);
            token_dir->remove_dir(v);
            token_dir->sync();
        }
        if (token_dir->entries().empty()) {
            boot.remove_dir(t);
            boot.sync();
        }
    });
}

std::vector<std::string> installed_kernel_versions(const Dir& boot, std::string_view token) {
    check_name("entry token", token);
    std::vector<std::string> out;
    const auto token_dir = boot.try_open_dir(token);
    if (!token_dir) return out;
    for (auto& name : token_dir->entries()) {
        if (name.starts_with('.')) continue;
        const auto st = token_dir->stat(name);
        if (st && S_ISDIR(st->st_mode)) out.push_back(std::move(name));
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace strata::boot
