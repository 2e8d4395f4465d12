#pragma once
// strata install: the installer path. Lays out a disk or disk image as a bootable strata system:
//
//   GPT | ESP (vfat, systemd-boot, loader.conf, entries.srel, kernels, BLS entries) | pool (btrfs)
//
// and fills it: the usr tree (copied from another pool or imported from a send stream), a root
// instance, and its deployment with a Type #1 entry. Works on an image file without mounting vfat
// (this kernel has none and loop devices do not scan partitions here): the ESP is written with
// mkfs.vfat --offset and mtools, the pool through a loop device with an offset.
//
// Order, so that an interrupted install leaves nothing that looks bootable: the old partition
// table is wiped first, the file systems are written at their offsets, and the GPT that makes
// them partitions is written last.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "pool/pool.hpp"

namespace strata::install {

inline constexpr uint64_t default_esp_size = 512ull << 20;
inline constexpr uint64_t min_esp_size = 64ull << 20;  // FAT32 needs 65525 clusters

struct InstallOptions {
    std::filesystem::path target;         // an image file (created with size) or a block device
    std::optional<uint64_t> size;         // required for a new image file; refused for a device
    uint64_t esp_size = default_esp_size;
    std::string usr;                      // usr:<vendor>:<arch>:<version>
    const pool::Pool* from_pool = nullptr;      // where usr is, unless from_stream is set
    std::optional<std::filesystem::path> from_stream;  // a send stream to import as usr
    std::string root;                     // the root instance's NAME, or its full root:... name
    std::vector<std::string> kernel_args;  // the root's own extra kernel arguments
    std::vector<std::string> global_kernel_args;
    unsigned tries = 3;                   // boot counting of the entry
    bool force = false;                   // overwrite a target that is not empty
    std::filesystem::path boot_loader = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
    std::filesystem::path work_base = "/run/strata";  // private mount point and ESP staging below
};

struct InstallReport {
    std::string usr, root, entry_id, entry_file;
    std::string pool_uuid;
    uint64_t esp_offset = 0, esp_size = 0, pool_offset = 0, pool_size = 0;  // bytes
};

InstallReport install(const InstallOptions& options);

}  // namespace strata::install
