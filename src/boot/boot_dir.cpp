#include "boot/boot_dir.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <fstream>

#include <spdlog/spdlog.h>

#include "base/error.hpp"
#include "base/process.hpp"

namespace strata::boot {
namespace {

constexpr std::string_view esp_type = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
constexpr std::string_view xbootldr_type = "bc13c2ff-59e6-4262-a352-b275fd6f7172";

// Opens parent/name as a directory without following symlinks; nullopt when there is none.
std::optional<Dir> open_candidate(const Dir& parent, std::string_view name) {
    const std::string n(name);
    const int fd = ::openat(parent.fd(), n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return std::nullopt;
        throw_errno("open directory", parent.path_of(name).string());
    }
    ::close(fd);
    return parent.open_dir(name);
}

// True if dir is the root of a mount (statx STATX_ATTR_MOUNT_ROOT; else a device change).
bool is_mount_point(const Dir& parent, const Dir& dir) {
    struct statx stx {};
    if (::statx(dir.fd(), "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) == 0 &&
        (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0)
        return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
    return dir.stat_self().st_dev != parent.stat_self().st_dev;
}

std::string lowercase(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::string trim(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    return s;
}

// The GPT partition type GUID of the partition behind dev, from the udev database or blkid;
// nullopt when dev is no partition (tmpfs, btrfs, a whole disk) or nothing can tell.
std::optional<std::string> partition_type(dev_t dev) {
    if (::major(dev) == 0) return std::nullopt;
    const std::string id = std::to_string(::major(dev)) + ":" + std::to_string(::minor(dev));
    const std::string sys = "/sys/dev/block/" + id;
    if (::access((sys + "/partition").c_str(), F_OK) != 0) return std::nullopt;

    std::ifstream udev("/run/udev/data/b" + id);
    for (std::string line; std::getline(udev, line);)
        if (line.starts_with("E:ID_PART_ENTRY_TYPE=")) return lowercase(line.substr(21));

    std::ifstream uevent(sys + "/uevent");
    std::string devname;
    for (std::string line; std::getline(uevent, line);)
        if (line.starts_with("DEVNAME=")) devname = line.substr(8);
    if (devname.empty()) return std::nullopt;
    try {
        const auto r = run_process({"blkid", "-p", "-o", "value", "-s", "PART_ENTRY_TYPE", "/dev/" + devname});
        if (r.exit_status == 0 && !trim(r.out).empty()) return lowercase(trim(r.out));
    } catch (const Error& e) {
        spdlog::debug("blkid on /dev/{} failed, ignoring: {}", devname, e.what());
    }
    return std::nullopt;
}

// Without a partition type: vfat, or an EFI directory (any case, as on vfat) that is not itself a
// mount point (/boot/efi, where the ESP is mounted, says nothing about /boot).
bool looks_like_esp(const Dir& dir) {
    struct statfs sfs {};
    if (::fstatfs(dir.fd(), &sfs) == 0 && static_cast<unsigned long>(sfs.f_type) == MSDOS_SUPER_MAGIC) return true;
    for (const auto& name : dir.entries()) {
        if (lowercase(name) != "efi") continue;
        if (auto sub = open_candidate(dir, name); sub && !is_mount_point(dir, *sub)) return true;
    }
    return false;
}

struct Candidate {
    std::optional<Dir> dir;
    bool mounted = false;
    std::optional<std::string> type;  // partition type GUID, when known
};

Candidate probe(const Dir* parent, std::string_view name) {
    Candidate c;
    if (!parent) return c;
    c.dir = open_candidate(*parent, name);
    if (!c.dir) return c;
    c.mounted = is_mount_point(*parent, *c.dir);
    if (c.mounted) c.type = partition_type(c.dir->stat_self().st_dev);
    return c;
}

bool is_esp(const Candidate& c) {
    if (!c.dir || !c.mounted) return false;
    if (c.type) return *c.type == esp_type;
    return looks_like_esp(*c.dir);
}

}  // namespace

BootDir find_boot_dir(const std::optional<std::filesystem::path>& configured, const std::filesystem::path& root) {
    if (configured) {
        return with_context("open configured $BOOT", "", [&] { return BootDir{Dir::open(*configured), "configured", {}}; });
    }
    const Dir top = Dir::open(root);
    Candidate efi = probe(&top, "efi");
    Candidate boot = probe(&top, "boot");
    Candidate boot_efi = probe(boot.dir ? &*boot.dir : nullptr, "efi");

    const bool efi_is_esp = is_esp(efi), boot_is_esp = is_esp(boot), boot_efi_is_esp = is_esp(boot_efi);
    // Without its partition type, /boot counts as XBOOTLDR when it is a mount point of its own and
    // an ESP is mounted elsewhere (sd-boot runs from the ESP and reads entries from both).
    bool boot_is_xbootldr = false;
    if (boot.dir && boot.mounted) {
        if (boot.type) boot_is_xbootldr = *boot.type == xbootldr_type;
        else boot_is_xbootldr = efi_is_esp || boot_efi_is_esp;
    }
    spdlog::debug("$BOOT under '{}': /efi esp={}, /boot esp={} xbootldr={}, /boot/efi esp={}", root.string(), efi_is_esp,
                  boot_is_esp, boot_is_xbootldr, boot_efi_is_esp);

    if (boot_is_xbootldr) {
        std::optional<Dir> esp;
        if (efi_is_esp) esp = std::move(efi.dir);
        else if (boot_efi_is_esp) esp = std::move(boot_efi.dir);
        return BootDir{std::move(*boot.dir), "xbootldr", std::move(esp)};
    }
    if (efi_is_esp) return BootDir{std::move(*efi.dir), "esp", {}};
    if (boot_is_esp) return BootDir{std::move(*boot.dir), "esp", {}};
    if (boot_efi_is_esp) return BootDir{std::move(*boot_efi.dir), "esp", {}};
    throw Error("find $BOOT under", root.string(),
                "no XBOOTLDR mounted at /boot and no ESP mounted at /efi, /boot or /boot/efi (an ESP is a "
                "mount point with the ESP partition type, or a vfat file system or one with an EFI directory); "
                "mount it, or name the directory with --boot-dir or boot.dir",
                Fault::NotFound);
}

}  // namespace strata::boot
