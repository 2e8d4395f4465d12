#pragma once
// btrfs subvolumes through libbtrfsutil (the only module that includes <btrfsutil.h>).
// Every call takes the directory it works in; errors name the call, the path and errno.
#include <array>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.hpp"

namespace strata::btrfs {

inline constexpr uint64_t top_level_id = 5;  // BTRFS_FS_TREE_OBJECTID

using Uuid = std::array<uint8_t, 16>;
std::string format_uuid(const Uuid& uuid);  // 8-4-4-4-12 lowercase hex
bool is_null(const Uuid& uuid);

enum class SnapshotFlags : unsigned { None = 0, ReadOnly = 1u << 0, Recursive = 1u << 1 };
constexpr SnapshotFlags operator|(SnapshotFlags a, SnapshotFlags b) {
    return static_cast<SnapshotFlags>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr bool has(SnapshotFlags set, SnapshotFlags flag) {
    return (static_cast<unsigned>(set) & static_cast<unsigned>(flag)) != 0;
}

struct SubvolumeInfo {
    uint64_t id = 0;
    uint64_t parent_id = 0;  // the subvolume that contains this one (0 for the top level)
    uint64_t dir_id = 0;
    uint64_t flags = 0;      // btrfs root item flags
    Uuid uuid{};
    Uuid parent_uuid{};      // set on snapshots: the uuid of the source
    Uuid received_uuid{};    // set by receive: the uuid of the sent subvolume
    uint64_t generation = 0;
    uint64_t ctransid = 0, otransid = 0, stransid = 0, rtransid = 0;
    timespec ctime{}, otime{}, stime{}, rtime{};

    bool read_only() const { return (flags & 1u) != 0; }  // BTRFS_ROOT_SUBVOL_RDONLY
};

struct Child {
    std::string path;  // relative to the subvolume that was iterated
    SubvolumeInfo info;
};

bool is_btrfs(const Dir& dir);
bool is_subvolume(const Dir& dir);
uint64_t subvolume_id(const Dir& dir);

void create_subvolume(const Dir& parent, std::string_view name);
void snapshot(const Dir& src_parent, std::string_view src, const Dir& dst_parent, std::string_view dst,
              SnapshotFlags flags = SnapshotFlags::None);
// Deletes the subvolume parent/name and, recursively, subvolumes nested in it.
void delete_subvolume(const Dir& parent, std::string_view name);

bool read_only(const Dir& subvolume);
void set_read_only(const Dir& subvolume, bool read_only);

SubvolumeInfo info(const Dir& subvolume);                // the subvolume dir is in
SubvolumeInfo info(const Dir& any_in_fs, uint64_t id);   // any subvolume of the filesystem, by id

// All subvolumes below `subvolume` (pre-order: parents before their children).
std::vector<Child> children(const Dir& subvolume);

// The filesystem's uuid (what root=UUID= names), from the BTRFS_IOC_FS_INFO ioctl.
Uuid filesystem_uuid(const Dir& any_in_fs);

// Commits the current transaction, so deletions free their space and creations are durable.
void sync(const Dir& dir);

// True when the regular files a and b (say, one in a snapshot of the other's subvolume) have the
// same size and their bytes lie in the very same extents of one btrfs filesystem: the same
// content, shown without reading it (dirty data of either is written out first: until then an
// overwritten range still maps to its old extent). False when that cannot be shown: another
// filesystem, data inline in the metadata, or any difference in the extent maps (FIEMAP), even
// if the bytes happen to be equal.
bool same_extents(int a, int b, std::string_view label);

// How many subvolumes of the file system any_in_fs is on were received from the subvolume
// `uuid` (their received_uuid), as the file system's UUID tree lists them: where btrfs receive
// looks a clone source up, taking the first.
size_t count_received_from(const Dir& any_in_fs, const Uuid& uuid);

}  // namespace strata::btrfs
