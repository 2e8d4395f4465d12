#include "mount/mount.hpp"

#include <libmount/libmount.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "base/chandle.hpp"
#include "base/error.hpp"
#include "base/process.hpp"

namespace strata::mount {
namespace {

using Context = CHandle<libmnt_context, mnt_free_context>;
using Table = CHandle<libmnt_table, mnt_unref_table>;

// libmount reports syscall failures as -errno or through mnt_context_get_syscall_errno.
[[noreturn]] void throw_mount_error(libmnt_context* cxt, int rc, std::string_view operation,
                                    const std::filesystem::path& target) {
    int err = 0;
    if (mnt_context_syscall_called(cxt)) err = mnt_context_get_syscall_errno(cxt);
    if (err == 0 && rc < 0) err = -rc;
    if (err != 0) throw Error(operation, target.string(), err);
    char buf[BUFSIZ] = {};
    mnt_context_get_excode(cxt, rc, buf, sizeof buf);
    throw Error(operation, target.string(), buf[0] ? buf : "failed");
}

Context new_context(std::string_view operation, const std::filesystem::path& target) {
    Context cxt(mnt_new_context());
    if (!cxt) throw Error(operation, target.string(), ENOMEM);
    // Never consult or update /etc/fstab or utab: strata mounts exactly what it is told.
    mnt_context_disable_helpers(cxt.get(), 1);
    mnt_context_disable_mtab(cxt.get(), 1);
    return cxt;
}

}  // namespace

void mount(const std::filesystem::path& source, const std::filesystem::path& target, const std::string& fstype,
           const std::string& options) {
    auto cxt = new_context("mount", target);
    mnt_context_set_source(cxt.get(), source.c_str());
    mnt_context_set_target(cxt.get(), target.c_str());
    mnt_context_set_fstype(cxt.get(), fstype.c_str());
    if (!options.empty()) mnt_context_set_options(cxt.get(), options.c_str());
    const int rc = mnt_context_mount(cxt.get());
    if (rc != 0) throw_mount_error(cxt.get(), rc, "mount '" + source.string() + "' on", target);
    spdlog::debug("mounted {} on {}", source.string(), target.string());
}

void umount(const std::filesystem::path& target) {
    auto cxt = new_context("unmount", target);
    mnt_context_set_target(cxt.get(), target.c_str());
    const int rc = mnt_context_umount(cxt.get());
    if (rc != 0) throw_mount_error(cxt.get(), rc, "unmount", target);
    spdlog::debug("unmounted {}", target.string());
}

std::vector<MountInfo> list_mounts() {
    Table table(mnt_new_table_from_file("/proc/self/mountinfo"));
    if (!table) throw Error("read mount table", "/proc/self/mountinfo", errno ? errno : EIO);
    CHandle<libmnt_iter, mnt_free_iter> iter(mnt_new_iter(MNT_ITER_FORWARD));
    std::vector<MountInfo> mounts;
    libmnt_fs* fs = nullptr;
    auto str = [](const char* s) { return s ? std::string(s) : std::string(); };
    while (mnt_table_next_fs(table.get(), iter.get(), &fs) == 0)
        mounts.push_back({str(mnt_fs_get_source(fs)), str(mnt_fs_get_fstype(fs)), str(mnt_fs_get_options(fs)),
                          str(mnt_fs_get_root(fs)), str(mnt_fs_get_target(fs))});
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
