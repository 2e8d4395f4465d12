#pragma once
// Bringing a pool into existence: the embedded default is a sparse image file holding a btrfs
// filesystem, attached to an auto-clear loop device and mounted at the pool path, so unmounting
// it also detaches the loop device.
#include <cstdint>
#include <filesystem>

namespace strata::pool {

inline constexpr uint64_t min_pool_size = 128ull << 20;  // mkfs.btrfs needs ~114 MiB

// Creates image (must not exist), makes a btrfs filesystem in it and mounts it at mountpoint
// (created if missing, must not be a mount point). On failure the image is removed again.
void create_image_pool(const std::filesystem::path& image, uint64_t size, const std::filesystem::path& mountpoint);

// Makes a new btrfs filesystem on a block device, destroying what was on it, and mounts it.
void create_device_pool(const std::filesystem::path& device, const std::filesystem::path& mountpoint);

// Mounts an existing pool image (e.g. after a reboot); a no-op error if already mounted there.
void mount_image_pool(const std::filesystem::path& image, const std::filesystem::path& mountpoint);

// Unmounts the pool; its auto-clear loop device goes with it.
void unmount_pool(const std::filesystem::path& mountpoint);

}  // namespace strata::pool
