#pragma once
// Kernels and initrds: found in a usr tree (the usr subvolume IS /usr, so its kernels are at
// lib/modules/<kver>/vmlinuz) and copied to $BOOT/<token>/<version>/{linux,initrd}, the layout
// the Boot Loader Specification recommends ("/<entry-token>/<version>/linux").
#include <cstdint>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/fd.hpp"

namespace strata::boot {

struct KernelSource {
    std::string kver;               // "6.1.0-13-amd64"
    std::filesystem::path vmlinuz;  // relative to the usr tree: "lib/modules/<kver>/vmlinuz"
    std::filesystem::path initrd;   // beside it: "lib/modules/<kver>/initrd" (or initrd.img, initramfs.img)
};

// Finds lib/modules/<kver>/vmlinuz in the usr tree and the initrd beside it (the first of initrd,
// initrd.img, initramfs.img). Without kver the tree must hold exactly one kernel version; several
// throw Error(InvalidInput) listing them. A missing kernel or initrd throws Error(NotFound) naming
// the usr tree. Kernel and initrd must be regular files (a symlink is refused: it could point out
// of the tree).
KernelSource find_kernel(const Dir& usr_tree, std::optional<std::string_view> kver = std::nullopt);

struct InstalledKernel {
    std::string linux, initrd;  // as the BLS keys want them: "/<token>/<version>/linux"
    bool copied = false;        // false: both were in place already, byte for byte
    uint64_t bytes = 0;         // bytes written by this call
};

// Copies kernel and initrd to $BOOT/<token>/<version>/linux and .../initrd. A file that is there
// with the same size and content is not written again. Each file goes temp → fsync → rename, and
// the directories are fsynced, so a failure (ENOSPC) leaves no partial file under a final name;
// directories this call created are removed again on failure. token and version must be file
// names of [A-Za-z0-9+_.-] (Error(InvalidInput) otherwise).
InstalledKernel install_kernel(const Dir& boot, std::string_view token, std::string_view version,
                               const Dir& usr_tree, const KernelSource& source);

// The kernel and initrd a new usr version will most likely share with its predecessor, copied to
// $BOOT/<token>/<version>/ while the new version is still being received: an update that keeps
// the kernel (most do) then finds them in place when it deploys, instead of copying tens of MiB
// cold after the receive. The copies go under hidden names (".ahead-linux", ".ahead-initrd") on
// a thread of their own; take() gives each its name only when the new tree's file is shown to
// be the predecessor's very bytes (the same path, and btrfs::same_extents: not merely the same
// size and mtime), with the new file's times, so install_kernel keeps it: an update that only
// rebuilt the initrd still finds the kernel in place. Copies not taken, and all of them when the
// object goes without take() (the update failed), are removed, and with none taken the
// directories made for them too. A failed copy (a full $BOOT) only loses the head start:
// install_kernel copies and reports for itself.
class KernelAhead {
public:
    KernelAhead(const Dir& boot, std::string token, std::string version, Dir predecessor_tree);
    KernelAhead(const KernelAhead&) = delete;
    KernelAhead& operator=(const KernelAhead&) = delete;
    ~KernelAhead();
    // How many of the two copies now stand for usr_tree's kernel and initrd.
    int take(const Dir& usr_tree);

private:
    void copy();
    void discard();

    const Dir& boot_;
    const std::string token_, version_;
    const Dir predecessor_;
    std::optional<KernelSource> source_;
    std::optional<Dir> version_dir_;
    bool created_token_ = false, created_version_ = false, taken_ = false;
    std::exception_ptr error_;
    std::thread thread_;  // last: starts after the members it uses exist
};

// Removes $BOOT/<token>/<version>/ and its files, and <token>/ when that is empty then; no-op
// when absent.
void remove_kernel(const Dir& boot, std::string_view token, std::string_view version);

// The version directories under $BOOT/<token>/, sorted by name; empty when there is no such token.
std::vector<std::string> installed_kernel_versions(const Dir& boot, std::string_view token);

}  // namespace strata::boot
