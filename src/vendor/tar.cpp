#include "vendor/tar.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <locale.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_set>
#include <vector>

#include "base/error.hpp"
#include "base/escape.hpp"
#include "base/fd.hpp"
#include "base/shared_library.hpp"

namespace strata::vendor {
namespace {

// libarchive, opened on first use (see base/shared_library.hpp): only tar imports need it.
struct LibArchive {
    SharedLibrary library{"libarchive.so.13"};
    STRATA_IMPORT(library, archive_entry_acl_clear);
    STRATA_IMPORT(library, archive_entry_acl_next);
    STRATA_IMPORT(library, archive_entry_acl_reset);
    STRATA_IMPORT(library, archive_entry_acl_types);
    STRATA_IMPORT(library, archive_entry_atime);
    STRATA_IMPORT(library, archive_entry_atime_is_set);
    STRATA_IMPORT(library, archive_entry_atime_nsec);
    STRATA_IMPORT(library, archive_entry_fflags);
    STRATA_IMPORT(library, archive_entry_filetype);
    STRATA_IMPORT(library, archive_entry_hardlink);
    STRATA_IMPORT(library, archive_entry_mtime);
    STRATA_IMPORT(library, archive_entry_mtime_is_set);
    STRATA_IMPORT(library, archive_entry_mtime_nsec);
    STRATA_IMPORT(library, archive_entry_pathname);
    STRATA_IMPORT(library, archive_entry_set_fflags);
    STRATA_IMPORT(library, archive_entry_set_hardlink);
    STRATA_IMPORT(library, archive_entry_set_pathname);
    STRATA_IMPORT(library, archive_entry_symlink);
    STRATA_IMPORT(library, archive_entry_xattr_next);
    STRATA_IMPORT(library, archive_entry_xattr_reset);
    STRATA_IMPORT(library, archive_errno);
    STRATA_IMPORT(library, archive_error_string);
    STRATA_IMPORT(library, archive_filter_bytes);
    STRATA_IMPORT(library, archive_read_data_block);
    STRATA_IMPORT(library, archive_read_free);
    STRATA_IMPORT(library, archive_read_new);
    STRATA_IMPORT(library, archive_read_next_header);
    STRATA_IMPORT(library, archive_read_open);
    STRATA_IMPORT(library, archive_read_support_filter_bzip2);
    STRATA_IMPORT(library, archive_read_support_filter_gzip);
    STRATA_IMPORT(library, archive_read_support_filter_lz4);
    STRATA_IMPORT(library, archive_read_support_filter_lzma);
    STRATA_IMPORT(library, archive_read_support_filter_xz);
    STRATA_IMPORT(library, archive_read_support_filter_zstd);
    STRATA_IMPORT(library, archive_read_support_format_tar);
    STRATA_IMPORT(library, archive_set_error);
    STRATA_IMPORT(library, archive_write_close);
    STRATA_IMPORT(library, archive_write_data_block);
    STRATA_IMPORT(library, archive_write_disk_new);
    STRATA_IMPORT(library, archive_write_disk_set_options);
    STRATA_IMPORT(library, archive_write_finish_entry);
    STRATA_IMPORT(library, archive_write_free);
    STRATA_IMPORT(library, archive_write_header);
};

const LibArchive& libarchive() {
    static const LibArchive api;
    return api;
}

struct ReaderFree {
    void operator()(archive* a) const noexcept { libarchive().archive_read_free(a); }
};
struct WriterFree {
    void operator()(archive* a) const noexcept { libarchive().archive_write_free(a); }
};
using ArchiveReader = std::unique_ptr<archive, ReaderFree>;
using ArchiveWriter = std::unique_ptr<archive, WriterFree>;

constexpr size_t read_block_size = 1u << 20;
constexpr uint64_t progress_interval = 1u << 20;

// No ARCHIVE_EXTRACT_ACL: ACLs are set here (see EntryAcl). The SECURE_* checks reject absolute
// names and '..', so names handed to libarchive are relative to the destination, which is the
// working directory of the extracting thread (see run_in).
constexpr int disk_flags = ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                           ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_FFLAGS | ARCHIVE_EXTRACT_SPARSE |
                           ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                           ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;

// An error of the archive itself (bad format, truncation, a check of ours or libarchive's) is the
// user's input; an errno from the system (EIO, ENOSPC, EPERM on a device node) is a failure.
// libarchive reports malformed input with ARCHIVE_ERRNO_FILE_FORMAT (EILSEQ on Linux, from its
// private headers), EINVAL ("Damaged tar archive") or ARCHIVE_ERRNO_MISC (-1), its own checks
// with -1 or 0.
Fault fault_of(int errnum) {
    return errnum <= 0 || errnum == EILSEQ || errnum == EINVAL ? Fault::InvalidInput : Fault::Failed;
}

// libarchive's message, with strerror added for a system error whose text it does not include
// ("Can't create 'x'" becomes "Can't create 'x': No space left on device"). It quotes names from
// the archive as they are, so control characters are escaped to keep the message on one line.
std::string archive_message(archive* a) {
    const char* text = libarchive().archive_error_string(a);
    std::string message;
    for (const char* c = text ? text : "unknown libarchive error"; *c; ++c) {
        const auto byte = static_cast<unsigned char>(*c);
        if (byte >= 0x20 && byte != 0x7f) {
            message += *c;
            continue;
        }
        static constexpr char hex[] = "0123456789abcdef";
        message += "\\x";
        message += hex[byte >> 4];
        message += hex[byte & 0xf];
    }
    const int errnum = libarchive().archive_errno(a);
    if (fault_of(errnum) == Fault::Failed) {
        const std::string cause = std::strerror(errnum);
        if (message.find(cause) == std::string::npos) message += ": " + cause;
    }
    return message;
}

[[noreturn]] void throw_archive(archive* a, std::string_view operation, std::string_view object) {
    throw Error(operation, object, archive_message(a), fault_of(libarchive().archive_errno(a)));
}

[[noreturn]] void throw_entry(std::string_view entry, std::string_view reason) {
    throw Error("tar entry", entry, reason, Fault::InvalidInput);
}

// The entry's path below the destination: components without "." and empty ones, "" for the
// root. Throws (naming `entry`) for anything that could point outside. `what` prefixes the
// reason when the name is not the entry's own (a hardlink target).
std::string relative_path(std::string_view entry, const char* name, std::string_view what = {}) {
    const std::string prefix =
        what.empty() ? std::string() : std::string(what) + " '" + escape(name ? name : "") + "': ";
    if (!name || !*name) {
        if (what.empty()) throw Error("", "", "tar entry with an empty name", Fault::InvalidInput);
        throw_entry(entry, prefix + "empty name");
    }
    const std::string_view text(name);
    if (text.front() == '/') throw_entry(entry, prefix + "absolute path not allowed");
    std::string path;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t end = std::min(text.find('/', start), text.size());
        const std::string_view component = text.substr(start, end - start);
        start = end + 1;
        if (component.empty() || component == ".") continue;
        if (component == "..") throw_entry(entry, prefix + "'..' component not allowed");
        if (!path.empty()) path += '/';
        path += component;
    }
    return path;
}

// The names an archive has produced so far, to refuse what could not come from a plain tree:
// duplicates, hardlinks to anything but an earlier file, paths through the archive's symlinks.
// Refusing duplicates also means nothing ever replaces a directory once created, which the
// deferred directory fixups rely on.
class Seen {
public:
    void check_new(std::string_view entry, const std::string& path) const {
        if (all_.contains(path)) throw_entry(entry, "appears twice in the archive");
        for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
            const std::string parent = path.substr(0, slash);
            if (symlinks_.contains(parent))
                throw_entry(entry, "leads through symlink '" + escape(parent) + "'");
        }
    }

    // Every earlier entry passed check_new, and no later entry turns one of its parents into a
    // symlink (duplicates are refused; libarchive does not replace a non-empty directory), so the
    // target leads through no symlink either.
    void check_link_target(std::string_view entry, const std::string& target, const char* raw) const {
        if (!linkable_.contains(target))
            throw_entry(entry,
                        "hardlink target '" + escape(raw) + "' is not an earlier file entry of the archive");
    }

    // hardlink_target is empty for anything but a hardlink; a hardlink to a symlink is one.
    void add(const std::string& path, mode_t type, const std::string& hardlink_target) {
        all_.insert(path);
        const bool hardlink = !hardlink_target.empty();
        if (hardlink || type != AE_IFDIR) linkable_.insert(path);
        if (hardlink ? symlinks_.contains(hardlink_target) : type == AE_IFLNK) symlinks_.insert(path);
    }

private:
    std::unordered_set<std::string> all_;
    std::unordered_set<std::string> linkable_;  // non-directories: what a hardlink may point to
    std::unordered_set<std::string> symlinks_;
};

bool supported_type(mode_t type) {
    switch (type) {
        case AE_IFREG:
        case AE_IFDIR:
        case AE_IFLNK:
        case AE_IFCHR:
        case AE_IFBLK:
        case AE_IFIFO:
            return true;
        default:
            return false;
    }
}

// One POSIX ACL in the kernel's xattr format (linux/posix_acl_xattr.h): a version word, then
// {tag, perm, id} entries, little-endian, sorted by tag and id. Empty if the entry has none of
// this type.
std::string kernel_acl(archive_entry* entry, int type, std::string_view name) {
    std::vector<std::tuple<uint16_t, uint32_t, uint16_t>> entries;  // tag, id, perm
    libarchive().archive_entry_acl_reset(entry, type);
    int entry_type = 0, permset = 0, tag = 0, id = 0;
    const char* qualifier = nullptr;
    while (libarchive().archive_entry_acl_next(entry, type, &entry_type, &permset, &tag, &id, &qualifier) == ARCHIVE_OK) {
        uint16_t kernel_tag = 0;
        switch (tag) {
            case ARCHIVE_ENTRY_ACL_USER_OBJ:
                kernel_tag = ACL_USER_OBJ;
                break;
            case ARCHIVE_ENTRY_ACL_USER:
                kernel_tag = ACL_USER;
                break;
            case ARCHIVE_ENTRY_ACL_GROUP_OBJ:
                kernel_tag = ACL_GROUP_OBJ;
                break;
            case ARCHIVE_ENTRY_ACL_GROUP:
                kernel_tag = ACL_GROUP;
                break;
            case ARCHIVE_ENTRY_ACL_MASK:
                kernel_tag = ACL_MASK;
                break;
            case ARCHIVE_ENTRY_ACL_OTHER:
                kernel_tag = ACL_OTHER;
                break;
            default:
                throw_entry(name, "unsupported ACL entry");
        }
        auto kernel_id = static_cast<uint32_t>(ACL_UNDEFINED_ID);
        if (kernel_tag == ACL_USER || kernel_tag == ACL_GROUP) {
            // GNU tar writes "user:alice:r--" without the number; a name means nothing here
            // (the ids belong to the tree, not to this host), so such an ACL cannot be restored.
            if (id < 0)
                throw_entry(name, std::string("ACL entry '") + (kernel_tag == ACL_USER ? "user:" : "group:") +
                                      escape(qualifier ? qualifier : "") +
                                      "' has a name but no numeric id (archive the binary ACL with GNU tar "
                                      "--xattrs --xattrs-include='system.posix_acl_*', or use bsdtar)");
            kernel_id = static_cast<uint32_t>(id);
        }
        entries.emplace_back(kernel_tag, kernel_id, static_cast<uint16_t>(permset & 07));
    }
    if (entries.empty()) return {};
    std::sort(entries.begin(), entries.end());
    std::string blob;
    auto put = [&](uint64_t value, int bytes) {
        for (int i = 0; i < bytes; ++i) blob += static_cast<char>((value >> (8 * i)) & 0xff);
    };
    put(POSIX_ACL_XATTR_VERSION, 4);
    for (const auto& [tag_value, id_value, perm] : entries) {
        put(tag_value, 2);
        put(perm, 2);
        put(id_value, 4);
    }
    return blob;
}

// An entry's POSIX ACLs, set by this file rather than libarchive: libarchive maps ACL names to
// ids through a lookup we must not install, applies directory ACLs at close without reporting
// failures, and ignores the exact binary form (SCHILY.xattr.system.posix_acl_*) that GNU tar
// stores with --xattrs-include='*'. That binary form is preferred when present.
struct EntryAcl {
    std::string access;
    std::string default_acl;

    bool empty() const { return access.empty() && default_acl.empty(); }

    static EntryAcl take(archive_entry* entry, std::string_view name) {
        EntryAcl acl;
        libarchive().archive_entry_xattr_reset(entry);
        const char* key = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        while (libarchive().archive_entry_xattr_next(entry, &key, &value, &size) == ARCHIVE_OK) {
            const std::string_view k = key ? key : "";
            const std::string blob(static_cast<const char*>(value), value ? size : 0);
            if (k == "system.posix_acl_access")
                acl.access = blob;
            else if (k == "system.posix_acl_default")
                acl.default_acl = blob;
        }
        if (libarchive().archive_entry_acl_types(entry) & ARCHIVE_ENTRY_ACL_TYPE_NFS4)
            throw_entry(name, "NFSv4 ACLs cannot be stored on Linux");
        if (acl.access.empty()) acl.access = kernel_acl(entry, ARCHIVE_ENTRY_ACL_TYPE_ACCESS, name);
        if (acl.default_acl.empty())
            acl.default_acl = kernel_acl(entry, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT, name);
        libarchive().archive_entry_acl_clear(entry);
        if (!acl.default_acl.empty() && libarchive().archive_entry_filetype(entry) != AE_IFDIR)
            throw_entry(name, "default ACL on a non-directory");
        return acl;
    }

    // path is relative to the working directory (the destination).
    void apply(std::string_view name, const std::string& path) const {
        set(name, path, "system.posix_acl_access", access, "set ACL");
        set(name, path, "system.posix_acl_default", default_acl, "set default ACL");
    }

private:
    static void set(std::string_view name, const std::string& path, const char* key, const std::string& blob,
                    std::string_view what) {
        if (blob.empty()) return;
        if (::lsetxattr(path.empty() ? "." : path.c_str(), key, blob.data(), blob.size(), 0) == 0) return;
        const int errnum = errno;
        // The kernel validates the ACL: EINVAL is a malformed one from the archive.
        throw Error("tar entry", name, std::string(what) + ": " + std::strerror(errnum),
                    errnum == EINVAL ? Fault::InvalidInput : Fault::Failed);
    }
};

// What a directory gets after everything is written: its ACLs (a default ACL set earlier would be
// inherited by the entries extracted into it), its times (each entry created in it changes its
// mtime) and its file flags (an immutable directory takes no entries, nor the other fixups).
// libarchive defers times of the directories it creates, but not of one that exists already (the
// root, or a directory whose entry comes after its contents), and it ignores failures of its
// deferred work.
struct DirFixup {
    std::string name;  // as in the archive, for messages
    std::string path;  // relative to the destination, "" for the root
    EntryAcl acl;
    struct timespec times[2];
    unsigned long flags_set = 0;
    unsigned long flags_clear = 0;

    void apply() const {
        acl.apply(name, path);
        const char* p = path.empty() ? "." : path.c_str();
        if (::utimensat(AT_FDCWD, p, times, AT_SYMLINK_NOFOLLOW) < 0) fail("set times");
        if (flags_set == 0 && flags_clear == 0) return;
        const Fd fd(::open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        int flags = 0;
        if (!fd || ::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) < 0) fail("set file flags");
        flags = static_cast<int>((static_cast<unsigned long>(flags) | flags_set) & ~flags_clear);
        if (::ioctl(fd.get(), FS_IOC_SETFLAGS, &flags) < 0) fail("set file flags");
    }

private:
    [[noreturn]] void fail(std::string_view what) const {
        const int errnum = errno;
        throw Error("tar entry", name, std::string(what) + ": " + std::strerror(errnum));
    }
};

struct timespec entry_time(bool is_set, time_t seconds, long nanoseconds) {
    struct timespec t {};
    t.tv_sec = is_set ? seconds : 0;
    t.tv_nsec = is_set ? nanoseconds : UTIME_OMIT;
    return t;
}

// Progress from the extracting thread to the calling one, so the caller's callback runs on its
// own thread (a CLI printer, a D-Bus object) and may cancel by throwing.
class ProgressChannel {
public:
    void publish(uint64_t bytes) {
        {
            std::lock_guard lock(mutex_);
            bytes_ = bytes;
            fresh_ = true;
        }
        wake_.notify_one();
    }

    void finish() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        wake_.notify_one();
    }

    void cancel() { cancelled_ = true; }
    bool cancelled() const { return cancelled_; }

    // Runs on the caller until the worker finishes.
    void deliver(const TarProgress& on_progress, std::optional<uint64_t> total) {
        std::unique_lock lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return fresh_ || done_; });
            if (!fresh_) return;
            const uint64_t bytes = bytes_;
            fresh_ = false;
            lock.unlock();
            if (on_progress) on_progress(bytes, total);
            lock.lock();
        }
    }

private:
    std::mutex mutex_;
    std::condition_variable wake_;
    uint64_t bytes_ = 0;
    bool fresh_ = false;
    bool done_ = false;
    std::atomic<bool> cancelled_ = false;
};

// Pax headers are UTF-8; libarchive converts them to the locale's charset, which under "C" would
// turn every non-ASCII name into '?' and a warning. The tree's names must not depend on the
// host's locale, so the extracting thread decodes in C.UTF-8 (uselocale is per thread).
class Utf8Locale {
public:
    Utf8Locale() : locale_(::newlocale(LC_CTYPE_MASK, "C.UTF-8", nullptr)) {
        if (locale_) previous_ = ::uselocale(locale_);
    }
    ~Utf8Locale() {
        if (!locale_) return;
        ::uselocale(previous_);
        ::freelocale(locale_);
    }
    Utf8Locale(const Utf8Locale&) = delete;
    Utf8Locale& operator=(const Utf8Locale&) = delete;

private:
    locale_t locale_;
    locale_t previous_ = nullptr;
};

// The archive's bytes as read from the descriptor, counted for progress: the count is exact
// also for a pipe, where nothing else knows the size.
struct Source {
    int fd;
    std::vector<char> buffer = std::vector<char>(read_block_size);
    uint64_t bytes = 0;

    static la_ssize_t read(archive* a, void* self, const void** block) {
        auto* source = static_cast<Source*>(self);
        for (;;) {
            const ssize_t n = ::read(source->fd, source->buffer.data(), source->buffer.size());
            if (n >= 0) {
                source->bytes += static_cast<uint64_t>(n);
                *block = source->buffer.data();
                return n;
            }
            if (errno != EINTR) {
                libarchive().archive_set_error(a, errno, "read");
                return ARCHIVE_FATAL;
            }
        }
    }
};

class Extraction {
public:
    Extraction(int fd, bool drain, std::optional<uint64_t> total, ProgressChannel& progress)
        : source_{fd}, drain_(drain), total_(total), progress_(progress) {
        in_.reset(libarchive().archive_read_new());
        out_.reset(libarchive().archive_write_disk_new());
        if (!in_ || !out_) throw Error("set up libarchive", "", ENOMEM);
        // The common compressions only: "filter_all" would also run external programs (lrzip,
        // lzop, grzip) on whatever magic bytes the input starts with. ARCHIVE_WARN means the
        // library was built without one and will run the distribution's own decompressor.
        const auto& la = libarchive();
        for (auto* support : {la.archive_read_support_filter_gzip, la.archive_read_support_filter_bzip2,
                              la.archive_read_support_filter_xz, la.archive_read_support_filter_lzma,
                              la.archive_read_support_filter_zstd, la.archive_read_support_filter_lz4})
            if (support(in_.get()) < ARCHIVE_WARN) throw_archive(in_.get(), "set up libarchive", "");
        if (libarchive().archive_read_support_format_tar(in_.get()) != ARCHIVE_OK)
            throw_archive(in_.get(), "set up libarchive", "");
        // No archive_write_disk_set_standard_lookup: ids stay numeric.
        if (libarchive().archive_write_disk_set_options(out_.get(), disk_flags) != ARCHIVE_OK)
            throw_archive(out_.get(), "set up libarchive", "");
        if (libarchive().archive_read_open(in_.get(), &source_, nullptr, Source::read, nullptr) != ARCHIVE_OK)
            throw Error("", "", archive_message(in_.get()), fault_of(libarchive().archive_errno(in_.get())));
    }

    void run() {
        for (;;) {
            archive_entry* entry = nullptr;
            const la_int64_t before = libarchive().archive_filter_bytes(in_.get(), 0);
            const int r = libarchive().archive_read_next_header(in_.get(), &entry);
            if (r == ARCHIVE_EOF) {
                // libarchive also ends quietly where the input ends between two entries, as a
                // download cut at the wrong moment would. Only a zero block (at least 512 bytes
                // past the previous entry's data and padding) marks a complete archive.
                if (libarchive().archive_filter_bytes(in_.get(), 0) - before < 512) throw_truncated();
                break;
            }
            if (r != ARCHIVE_OK) {
                if (last_entry_.empty())
                    throw Error("", "", archive_message(in_.get()), fault_of(libarchive().archive_errno(in_.get())));
                throw_archive(in_.get(), "header after tar entry", last_entry_);
            }
            extract(entry);
            report(false);
        }
        // Deferred modes and times of the directories libarchive created are applied here.
        if (libarchive().archive_write_close(out_.get()) != ARCHIVE_OK) throw_archive(out_.get(), "finish", "");
        for (const auto& fixup : dirs_) fixup.apply();
        if (drain_) drain();
        report(true);
    }

private:
    void extract(archive_entry* entry) {
        const char* raw_name = libarchive().archive_entry_pathname(entry);
        const std::string name = raw_name ? raw_name : "";
        const std::string path = relative_path(name, raw_name);
        seen_.check_new(name, path);

        const char* raw_target = libarchive().archive_entry_hardlink(entry);
        const bool hardlink = raw_target != nullptr;
        const mode_t type = libarchive().archive_entry_filetype(entry);
        std::string target;
        if (hardlink) {
            target = relative_path(name, raw_target, "hardlink target");
            seen_.check_link_target(name, target, raw_target);
        } else if (!supported_type(type)) {
            throw_entry(name, type == AE_IFSOCK ? "sockets are not supported" : "unsupported entry type");
        } else if (type == AE_IFLNK) {
            const char* link = libarchive().archive_entry_symlink(entry);
            if (!link || !*link) throw_entry(name, "empty symlink target");
        }
        const bool directory = !hardlink && type == AE_IFDIR;
        if (path.empty() && !directory) throw_entry(name, "the root entry is not a directory");
        const EntryAcl acl = EntryAcl::take(entry, name);
        unsigned long flags_set = 0, flags_clear = 0;
        if (directory) {
            libarchive().archive_entry_fflags(entry, &flags_set, &flags_clear);
            libarchive().archive_entry_set_fflags(entry, 0, 0);
        }

        libarchive().archive_entry_set_pathname(entry, path.empty() ? "." : path.c_str());
        if (hardlink) libarchive().archive_entry_set_hardlink(entry, target.c_str());
        last_entry_ = name;

        if (libarchive().archive_write_header(out_.get(), entry) != ARCHIVE_OK)
            throw_archive(out_.get(), "tar entry", name);
        copy_data(name);
        if (libarchive().archive_write_finish_entry(out_.get()) != ARCHIVE_OK)
            throw_archive(out_.get(), "tar entry", name);
        seen_.add(path, type, target);

        if (directory) {
            dirs_.push_back({name,
                             path,
                             acl,
                             {entry_time(libarchive().archive_entry_atime_is_set(entry), libarchive().archive_entry_atime(entry),
                                         libarchive().archive_entry_atime_nsec(entry)),
                              entry_time(libarchive().archive_entry_mtime_is_set(entry), libarchive().archive_entry_mtime(entry),
                                         libarchive().archive_entry_mtime_nsec(entry))},
                             flags_set,
                             flags_clear});
        } else if (!acl.empty()) {
            acl.apply(name, path);
        }
    }

    [[noreturn]] void throw_truncated() const {
        if (last_entry_.empty())
            throw Error("", "", "truncated archive: no end-of-archive marker", Fault::InvalidInput);
        throw Error("", "",
                    "truncated archive: ends after tar entry '" + escape(last_entry_) +
                        "' without an end-of-archive marker",
                    Fault::InvalidInput);
    }

    void copy_data(std::string_view name) {
        for (;;) {
            const void* data = nullptr;
            size_t size = 0;
            la_int64_t offset = 0;
            const int r = libarchive().archive_read_data_block(in_.get(), &data, &size, &offset);
            if (r == ARCHIVE_EOF) return;
            if (r != ARCHIVE_OK) throw_archive(in_.get(), "tar entry", name);
            if (libarchive().archive_write_data_block(out_.get(), data, size, offset) != ARCHIVE_OK)
                throw_archive(out_.get(), "tar entry", name);
            report(false);
        }
    }

    // Reads a pipe to its end, so the program writing it (curl, zstd -dc) does not die of
    // SIGPIPE on the end-of-archive padding that libarchive never needs.
    void drain() {
        const void* block = nullptr;
        for (;;) {
            const la_ssize_t n = Source::read(in_.get(), &source_, &block);
            if (n == 0) return;
            if (n < 0) throw_archive(in_.get(), "", "");
            report(false);
        }
    }

    void report(bool final) {
        if (progress_.cancelled()) throw Error("", "", "cancelled");
        uint64_t bytes = source_.bytes;
        // libarchive stops at the end-of-archive marker; the rest of a file is padding.
        if (final && total_) bytes = *total_;
        if (!final && bytes - reported_ < progress_interval) return;
        reported_ = bytes;
        progress_.publish(bytes);
    }

    // Declared in this order so the writer is freed (and its pending fixups applied) before the
    // reader, and the reader before its source.
    Source source_;
    bool drain_;
    std::optional<uint64_t> total_;
    ArchiveReader in_;
    ArchiveWriter out_;
    ProgressChannel& progress_;
    Seen seen_;
    std::vector<DirFixup> dirs_;
    std::string last_entry_;
    uint64_t reported_ = 0;
};

// Runs fn on a new thread whose working directory is `dir`. unshare(CLONE_FS) gives the thread
// its own cwd and umask, so neither the process's cwd nor its umask (which libarchive briefly
// sets to 0 to read it) changes for other threads. The caller's thread delivers progress
// meanwhile.
template <class Fn>
void run_in(const Dir& dir, ProgressChannel& progress, const TarProgress& on_progress,
            std::optional<uint64_t> total, Fn&& fn) {
    std::exception_ptr worker_failure;
    std::thread worker([&] {
        try {
            check_errno(::unshare(CLONE_FS), "unshare working directory", "");
            check_errno(::fchdir(dir.fd()), "change to directory", dir.path().string());
            Utf8Locale utf8;
            fn();
        } catch (...) {
            worker_failure = std::current_exception();
        }
        progress.finish();
    });
    std::exception_ptr callback_failure;
    try {
        progress.deliver(on_progress, total);
    } catch (...) {
        callback_failure = std::current_exception();
        progress.cancel();
    }
    worker.join();
    if (callback_failure) std::rethrow_exception(callback_failure);
    if (worker_failure) std::rethrow_exception(worker_failure);
}

}  // namespace

void extract_tar(int fd, std::string_view source_name, const Dir& destination,
                 const TarProgress& on_progress) {
    const std::string context =
        source_name == "-" ? "extract from standard input" : "extract '" + escape(source_name) + "'";
    try {
        if (!destination.entries().empty())
            throw Error("destination", destination.path().string(), "not empty");
        struct stat st {};
        check_errno(::fstat(fd, &st), "stat", "");
        if (S_ISDIR(st.st_mode)) throw Error("", "", "is a directory", Fault::InvalidInput);
        std::optional<uint64_t> total;
        if (S_ISREG(st.st_mode)) {
            const off_t position = ::lseek(fd, 0, SEEK_CUR);
            total = static_cast<uint64_t>(st.st_size - (position > 0 ? position : 0));
        }
        const bool drain = S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode);
        ProgressChannel progress;
        run_in(destination, progress, on_progress, total,
               [&] { Extraction(fd, drain, total, progress).run(); });
    } catch (Error& e) {
        e.within(context);
        throw;
    }
}

void extract_tar(const std::filesystem::path& source, const Dir& destination,
                 const TarProgress& on_progress) {
    if (source == "-") return extract_tar(STDIN_FILENO, "-", destination, on_progress);
    const Fd fd(::open(source.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd) throw_errno("extract", source.string());
    extract_tar(fd.get(), source.string(), destination, on_progress);
}

}  // namespace strata::vendor
