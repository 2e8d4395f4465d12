#pragma once
// Mounting through libmount (the only module that includes <libmount/libmount.h>).
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace strata::mount {

void mount(const std::filesystem::path& source, const std::filesystem::path& target, const std::string& fstype,
           const std::string& options = {});
void umount(const std::filesystem::path& target);

// The block device holding the filesystem with this uuid: udev's /dev/disk/by-uuid link, else a
// fresh probe of every block device by blkid (no cache: a stale one names the wrong device).
// Fault::NotFound when there is none.
std::filesystem::path device_by_uuid(const std::string& uuid);

struct MountInfo {
    std::string source;
    std::string fstype;
    std::string options;
    std::string fs_root;  // the subvolume path mounted, for btrfs
    std::string target;
};

// Every mount of this mount namespace, from /proc/self/mountinfo, in mount order.
std::vector<MountInfo> list_mounts();

// The mount whose mount point is exactly target (after resolving symlinks), from
// /proc/self/mountinfo; nullopt when target is not a mount point.
std::optional<MountInfo> find_mount(const std::filesystem::path& target);

// Unmounts target when destroyed, unless released.
class MountGuard {
public:
    explicit MountGuard(std::filesystem::path target) : target_(std::move(target)) {}
    MountGuard(MountGuard&& other) noexcept : target_(std::move(other.target_)) { other.target_.clear(); }
    MountGuard& operator=(MountGuard&&) = delete;
    ~MountGuard();
    void release() { target_.clear(); }

private:
    std::filesystem::path target_;
};

}  // namespace strata::mount
