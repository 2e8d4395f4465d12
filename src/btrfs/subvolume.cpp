#include "btrfs/subvolume.hpp"

#include <endian.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/ioctl.h>

#include <cstring>

#include <btrfsutil.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <linux/magic.h>

#include "base/chandle.hpp"
#include "base/error.hpp"

namespace strata::btrfs {
namespace {

// libbtrfsutil leaves errno set when a system call failed; otherwise its own message is the cause.
void check_btrfs(btrfs_util_error err, std::string_view operation, const std::filesystem::path& path) {
    if (err == BTRFS_UTIL_OK) return;
    if (errno != 0) throw Error(operation, path.string(), errno);
    throw Error(operation, path.string(), btrfs_util_strerror(err));
}

template <class Call>
void call(std::string_view operation, const std::filesystem::path& path, Call&& fn) {
    errno = 0;
    check_btrfs(fn(), operation, path);
}

SubvolumeInfo convert(const struct btrfs_util_subvolume_info& in) {
    SubvolumeInfo out;
    out.id = in.id;
    out.parent_id = in.parent_id;
    out.dir_id = in.dir_id;
    out.flags = in.flags;
    std::memcpy(out.uuid.data(), in.uuid, 16);
    std::memcpy(out.parent_uuid.data(), in.parent_uuid, 16);
    std::memcpy(out.received_uuid.data(), in.received_uuid, 16);
    out.generation = in.generation;
    out.ctransid = in.ctransid;
    out.otransid = in.otransid;
    out.stransid = in.stransid;
    out.rtransid = in.rtransid;
    out.ctime = in.ctime;
    out.otime = in.otime;
    out.stime = in.stime;
    out.rtime = in.rtime;
    return out;
}

using Iterator = CHandle<btrfs_util_subvolume_iterator, btrfs_util_destroy_subvolume_iterator>;

}  // namespace

std::string format_uuid(const Uuid& u) {
    char buf[37];
    std::snprintf(buf, sizeof buf,
                  "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                  u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    return buf;
}

bool is_null(const Uuid& uuid) {
    for (auto b : uuid)
        if (b != 0) return false;
    return true;
}

bool is_btrfs(const Dir& dir) {
    struct statfs sfs {};
    check_errno(::fstatfs(dir.fd(), &sfs), "statfs", dir.path().string());
    return static_cast<unsigned long>(sfs.f_type) == BTRFS_SUPER_MAGIC;
}

bool is_subvolume(const Dir& dir) {
    errno = 0;
    const auto err = btrfs_util_is_subvolume_fd(dir.fd());
    if (err == BTRFS_UTIL_OK) return true;
    if (err == BTRFS_UTIL_ERROR_NOT_SUBVOLUME || err == BTRFS_UTIL_ERROR_NOT_BTRFS) return false;
    check_btrfs(err, "check subvolume", dir.path());
    return false;
}

uint64_t subvolume_id(const Dir& dir) {
    uint64_t id = 0;
    call("get subvolume id of", dir.path(), [&] { return btrfs_util_subvolume_id_fd(dir.fd(), &id); });
    return id;
}

void create_subvolume(const Dir& parent, std::string_view name) {
    const std::string n(name);
    call("create subvolume", parent.path_of(name),
         [&] { return btrfs_util_create_subvolume_fd(parent.fd(), n.c_str(), 0, nullptr, nullptr); });
}

void snapshot(const Dir& src_parent, std::string_view src, const Dir& dst_parent, std::string_view dst,
              SnapshotFlags flags) {
    const Dir source = src_parent.open_dir(src);
    int f = 0;
    if (has(flags, SnapshotFlags::ReadOnly)) f |= BTRFS_UTIL_CREATE_SNAPSHOT_READ_ONLY;
    if (has(flags, SnapshotFlags::Recursive)) f |= BTRFS_UTIL_CREATE_SNAPSHOT_RECURSIVE;
    const std::string d(dst);
    call("snapshot '" + source.path().string() + "' to", dst_parent.path_of(dst), [&] {
        return btrfs_util_create_snapshot_fd2(source.fd(), dst_parent.fd(), d.c_str(), f, nullptr, nullptr);
    });
}

void delete_subvolume(const Dir& parent, std::string_view name) {
    const std::string n(name);
    call("delete subvolume", parent.path_of(name), [&] {
        return btrfs_util_delete_subvolume_fd(parent.fd(), n.c_str(), BTRFS_UTIL_DELETE_SUBVOLUME_RECURSIVE);
    });
}

bool read_only(const Dir& subvolume) {
    bool ro = false;
    call("get read-only flag of", subvolume.path(),
         [&] { return btrfs_util_get_subvolume_read_only_fd(subvolume.fd(), &ro); });
    return ro;
}

void set_read_only(const Dir& subvolume, bool ro) {
    call("set read-only flag of", subvolume.path(),
         [&] { return btrfs_util_set_subvolume_read_only_fd(subvolume.fd(), ro); });
}

SubvolumeInfo info(const Dir& subvolume) { return info(subvolume, 0); }

SubvolumeInfo info(const Dir& any_in_fs, uint64_t id) {
    struct btrfs_util_subvolume_info raw {};
    call("get subvolume info of", any_in_fs.path(),
         [&] { return btrfs_util_subvolume_info_fd(any_in_fs.fd(), id, &raw); });
    return convert(raw);
}

std::vector<Child> children(const Dir& subvolume) {
    btrfs_util_subvolume_iterator* raw = nullptr;
    call("list subvolumes of", subvolume.path(),
         [&] { return btrfs_util_create_subvolume_iterator_fd(subvolume.fd(), 0, 0, &raw); });
    Iterator it(raw);
    std::vector<Child> result;
    for (;;) {
        char* path = nullptr;
        struct btrfs_util_subvolume_info raw_info {};
        errno = 0;
        const auto err = btrfs_util_subvolume_iterator_next_info(it.get(), &path, &raw_info);
        if (err == BTRFS_UTIL_ERROR_STOP_ITERATION) break;
        check_btrfs(err, "list subvolumes of", subvolume.path());
        CHandle<char, ::free> owned(path);
        result.push_back({owned.get(), convert(raw_info)});
    }
    return result;
}

void sync(const Dir& dir) {
    call("sync filesystem of", dir.path(), [&] { return btrfs_util_sync_fd(dir.fd()); });
}

Uuid filesystem_uuid(const Dir& any_in_fs) {
    btrfs_ioctl_fs_info_args args{};
    check_errno(::ioctl(any_in_fs.fd(), BTRFS_IOC_FS_INFO, &args), "read filesystem info of", any_in_fs.path().string());
    Uuid uuid{};
    std::memcpy(uuid.data(), args.fsid, uuid.size());
    return uuid;
}

namespace {

struct Extent {
    uint64_t logical, physical, length;
    uint32_t flags;
    bool operator==(const Extent&) const = default;
};

// The file's extent map once its dirty data is written out, or nullopt when some extent still
// has no place of its own.
std::optional<std::vector<Extent>> extent_map(int fd, std::string_view label) {
    constexpr uint32_t batch = 128;
    constexpr uint32_t unplaced = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_DATA_INLINE |
                                  FIEMAP_EXTENT_NOT_ALIGNED | FIEMAP_EXTENT_DATA_TAIL;
    std::vector<std::byte> buffer(sizeof(fiemap) + batch * sizeof(fiemap_extent));
    auto* map = reinterpret_cast<fiemap*>(buffer.data());
    std::vector<Extent> extents;
    uint64_t start = 0;
    for (;;) {
        std::memset(buffer.data(), 0, buffer.size());
        map->fm_start = start;
        map->fm_length = FIEMAP_MAX_OFFSET - start;
        map->fm_extent_count = batch;
        // Written but not yet written out, an overwritten range still maps to its old extent.
        map->fm_flags = FIEMAP_FLAG_SYNC;
        check_errno(::ioctl(fd, FS_IOC_FIEMAP, map), "map extents of", label);
        if (map->fm_mapped_extents == 0) return extents;
        for (uint32_t i = 0; i < map->fm_mapped_extents; ++i) {
            const auto& e = map->fm_extents[i];
            if (e.fe_flags & unplaced) return std::nullopt;
            // Whether an extent is shared says who else refers to it, not what it holds.
            extents.push_back({e.fe_logical, e.fe_physical, e.fe_length, e.fe_flags & ~uint32_t{FIEMAP_EXTENT_SHARED | FIEMAP_EXTENT_LAST}});
            if (e.fe_flags & FIEMAP_EXTENT_LAST) return extents;
        }
        const auto& last = map->fm_extents[map->fm_mapped_extents - 1];
        start = last.fe_logical + last.fe_length;
    }
}

}  // namespace

bool same_extents(int a, int b, std::string_view label) {
    struct stat sa {}, sb {};
    check_errno(::fstat(a, &sa), "stat", label);
    check_errno(::fstat(b, &sb), "stat", label);
    if (!S_ISREG(sa.st_mode) || !S_ISREG(sb.st_mode) || sa.st_size != sb.st_size) return false;
    btrfs_ioctl_fs_info_args fa{}, fb{};
    if (::ioctl(a, BTRFS_IOC_FS_INFO, &fa) != 0 || ::ioctl(b, BTRFS_IOC_FS_INFO, &fb) != 0) return false;
    if (std::memcmp(fa.fsid, fb.fsid, sizeof fa.fsid) != 0) return false;
    const auto ma = extent_map(a, label), mb = extent_map(b, label);
    return ma && mb && *ma == *mb;
}

size_t count_received_from(const Dir& any_in_fs, const Uuid& uuid) {
    // The UUID tree keys an entry by the uuid's two halves (little-endian) and lists the
    // subvolume ids, one u64 each, in the item.
    uint64_t halves[2];
    std::memcpy(halves, uuid.data(), sizeof halves);
    btrfs_ioctl_search_args args{};
    auto& key = args.key;
    key.tree_id = BTRFS_UUID_TREE_OBJECTID;
    key.min_objectid = key.max_objectid = le64toh(halves[0]);
    key.min_type = key.max_type = BTRFS_UUID_KEY_RECEIVED_SUBVOL;
    key.min_offset = key.max_offset = le64toh(halves[1]);
    key.max_transid = UINT64_MAX;
    key.nr_items = 1;
    if (::ioctl(any_in_fs.fd(), BTRFS_IOC_TREE_SEARCH, &args) != 0)
        throw_errno("look up subvolumes received from " + format_uuid(uuid) + " on", any_in_fs.path().string());
    if (key.nr_items == 0) return 0;
    btrfs_ioctl_search_header header{};
    std::memcpy(&header, args.buf, sizeof header);
    return header.len / sizeof(uint64_t);
}

}  // namespace strata::btrfs
