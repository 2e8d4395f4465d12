#pragma once
// Where $BOOT is, found the way bootctl and kernel-install find it (bootctl(1), UAPI.1 "The
// Partitions"):
//   1. an explicit path (CLI --boot-dir, configuration) wins and is used as given;
//   2. else the Extended Boot Loader partition (XBOOTLDR) mounted at /boot;
//   3. else the EFI System Partition (ESP) at /efi, /boot or /boot/efi, first found.
// All candidates are looked up under `root`, so tests point it at a temp dir. A candidate counts
// only when it is a mount point. Its kind comes from the partition type GUID (ESP
// c12a7328-f81f-11d2-ba4b-00a0c93ec93b, XBOOTLDR bc13c2ff-59e6-4262-a352-b275fd6f7172), read from
// the udev database or `blkid -p` when the file system sits on a partition. Without a partition
// type (no block device behind it, e.g. tmpfs, or no udev and no blkid), strata falls back to what
// it can see: an ESP is a vfat file system or one with an EFI/ directory; /boot is XBOOTLDR when an
// ESP is mounted at /efi or /boot/efi. docs/boot.md lists these simplifications.
#include <filesystem>
#include <optional>
#include <string>

#include "base/fd.hpp"

namespace strata::boot {

struct BootDir {
    Dir dir;
    std::string how;         // "configured", "xbootldr", "esp"
    std::optional<Dir> esp;  // with "xbootldr": the ESP, where loader/loader.conf is read by sd-boot
    // The directory whose loader/loader.conf the boot loader reads: the ESP when there is one
    // besides XBOOTLDR, else dir.
    const Dir& loader_dir() const { return esp ? *esp : dir; }
};

// Throws Error(NotFound) naming the root and every candidate when nothing qualifies, or when the
// configured directory does not exist.
BootDir find_boot_dir(const std::optional<std::filesystem::path>& configured, const std::filesystem::path& root = "/");

}  // namespace strata::boot
