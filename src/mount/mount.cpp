#include "mount/mount.hpp"

#include <libmount/libmount.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "base/error.hpp"
#include "base/process.hpp"
#include "base/shared_library.hpp"

namespace strata::mount {
namespace {

// Opened on first use (base/shared_library.hpp): libmount with libblkid, libselinux and libpcre2
// costs a cold start ~7 ms, and deploy, set-default or status on a host that did not boot from
// the pool never read the mount table.
struct LibMount {
    SharedLibrary library{"libmount.so.1"};
    STRATA_IMPORT(library, mnt_new_context);
    STRATA_IMPORT(library, mnt_free_context);
    STRATA_IMPORT(library, mnt_context_disable_helpers);
    STRATA_IMPORT(library, mnt_context_disable_mtab);
    STRATA_IMPORT(library, mnt_context_set_source);
    STRATA_IMPORT(library, mnt_context_set_target);
    STRATA_IMPORT(library, mnt_context_set_fstype);
    STRATA_IMPORT(library, mnt_context_set_options);
    STRATA_IMPORT(library, mnt_context_mount);
    STRATA_IMPORT(library, mnt_context_umount);
    STRATA_IMPORT(library, mnt_context_syscall_called);
    STRATA_IMPORT(library, mnt_context_get_syscall_errno);
    STRATA_IMPORT(library, mnt_context_get_excode);
    STRATA_IMPORT(library, mnt_new_table_from_file);
    STRATA_IMPORT(library, mnt_unref_table);
    STRATA_IMPORT(library, mnt_new_iter);
    STRATA_IMPORT(library, mnt_free_iter);
    STRATA_IMPORT(library, mnt_table_next_fs);
    STRATA_IMPORT(library, mnt_fs_get_source);
    STRATA_IMPORT(library, mnt_fs_get_fstype);
    STRATA_IMPORT(library, mnt_fs_get_options);
    STRATA_IMPORT(library, mnt_fs_get_root);
    STRATA_IMPORT(library, mnt_fs_get_target);
};

const LibMount& libmount() {
    static const LibMount api;
    return api;
}

struct ContextFree {
    void operator()(libmnt_context* c) const noexcept { libmount().mnt_free_context(c); }
};
struct TableFree {
    void operator()(libmnt_table* t) const noexcept { libmount().mnt_unref_table(t); }
};
struct IterFree {
    void operator()(libmnt_iter* i) const noexcept { libmount().mnt_free_iter(i); }
};
using Context = std::unique_ptr<libmnt_context, ContextFree>;
using Table = std::unique_ptr<libmnt_table, TableFree>;
using Iter = std::unique_ptr<libmnt_iter, IterFree>;

// libmount reports syscall failures as -errno or through mnt_context_get_syscall_errno.
[[noreturn]] void throw_mount_error(libmnt_context* cxt, int rc, std::string_view operation,
                                    const std::filesystem::path& target) {
    int err = 0;
    if (libmount().mnt_context_syscall_called(cxt)) err = libmount().mnt_context_get_syscall_errno(cxt);
    if (err == 0 && rc < 0) err = -rc;
    if (err != 0) throw Error(operation, target.string(), err);
    char buf[BUFSIZ] = {};
    libmount().mnt_context_get_excode(cxt, rc, buf, sizeof buf);
    throw Error(operation, target.string(), buf[0] ? buf : "failed");
}

Context new_context(std::string_view operation, const std::filesystem::path& target) {
    Context cxt(libmount().mnt_new_context());
    if (!cxt) throw Error(operation, target.string(), ENOMEM);
    // Never consult or update /etc/fstab or utab: strata mounts exactly what it is told.
    libmount().mnt_context_disable_helpers(cxt.get(), 1);
    libmount().mnt_context_disable_mtab(cxt.get(), 1);
    return cxt;
}

}  // namespace

void mount(const std::filesystem::path& source, const std::filesystem::path& target, const std::string& fstype,
           const std::string& options) {
    auto cxt = new_context("mount", target);
    libmount().mnt_context_set_source(cxt.get(), source.c_str());
    libmount().mnt_context_set_target(cxt.get(), target.c_str());
    libmount().mnt_context_set_fstype(cxt.get(), fstype.c_str());
    if (!options.empty()) libmount().mnt_context_set_options(cxt.get(), options.c_str());
    const int rc = libmount().mnt_context_mount(cxt.get());
    if (rc != 0) throw_mount_error(cxt.get(), rc, "mount '" + source.string() + "' on", target);
    spdlog::debug("mounted {} on {}", source.string(), target.string());
}

void umount(const std::filesystem::path& target) {
    auto cxt = new_context("unmount", target);
    libmount().mnt_context_set_target(cxt.get(), target.c_str());
    const int rc = libmount().mnt_context_umount(cxt.get());
    if (rc != 0) throw_mount_error(cxt.get(), rc, "unmount", target);
    spdlog::debug("unmounted {}", target.string());
}

std::vector<MountInfo> list_mounts() {
    const auto& lm = libmount();
    Table table(lm.mnt_new_table_from_file("/proc/self/mountinfo"));
    if (!table) throw Error("read mount table", "/proc/self/mountinfo", errno ? errno : EIO);
    Iter iter(lm.mnt_new_iter(MNT_ITER_FORWARD));
    std::vector<MountInfo> mounts;
    libmnt_fs* fs = nullptr;
    auto str = [](const char* s) { return s ? std::string(s) : std::string(); };
    while (lm.mnt_table_next_fs(table.get(), iter.get(), &fs) == 0)
        mounts.push_back({str(lm.mnt_fs_get_source(fs)), str(lm.mnt_fs_get_fstype(fs)), str(lm.mnt_fs_get_options(fs)),
                          str(lm.mnt_fs_get_root(fs)), str(lm.mnt_fs_get_target(fs))});
    return mounts;
}

std::optional<MountInfo> find_mount(const std::filesystem::path& target) {
    std::error_code ec;
    const auto resolved = std::filesystem::canonical(target, ec);
    if (ec) return std::nullopt;
    const auto mounts = list_mounts();
    // The last mount on a point is the visible one.
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it)
        if (it->target == resolved) return *it;
    return std::nullopt;
}

MountGuard::~MountGuard() {
    if (target_.empty()) return;
    try {
        umount(target_);
    } catch (const std::exception& e) {
        spdlog::debug("{}, ignoring", e.what());
    }
}

std::filesystem::path device_by_uuid(const std::string& uuid) {
    const std::filesystem::path link = "/dev/disk/by-uuid/" + uuid;
    std::error_code ec;
    if (std::filesystem::exists(link, ec)) return std::filesystem::canonical(link);
    const auto r = run_process({"blkid", "--cache-file", "/dev/null", "--output", "device", "--match-token", "UUID=" + uuid});
    const std::string device = r.out.substr(0, r.out.find('\n'));
    if (r.exit_status != 0 || device.empty())
        throw Error("find device of", "UUID=" + uuid, "no block device has this filesystem", Fault::NotFound);
    return device;
}

}  // namespace strata::mount
