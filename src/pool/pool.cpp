#include "pool/pool.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "base/error.hpp"
#include "pool/staging.hpp"

namespace strata::pool {
namespace {

constexpr ino_t subvolume_root_inode = 256;  // BTRFS_FIRST_FREE_OBJECTID

std::string random_token() {
    std::random_device rd;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
    return buf;
}

}  // namespace

bool list_order(const Subvolume& a, const Subvolume& b) {
    if (a.typed && b.typed) return naming::list_order(*a.typed, *b.typed);
    if (a.typed != b.typed) return a.typed.has_value();
    return a.name < b.name;
}

Pool Pool::open(const std::filesystem::path& path) {
    return with_context("open pool", path.string(), [&] {
        Dir top = Dir::open(path);
        if (!btrfs::is_btrfs(top)) throw Error("", "", "not a btrfs filesystem");
        const uint64_t id = btrfs::subvolume_id(top);
        if (id != btrfs::top_level_id)
            throw Error("", "",
                        "not the top-level subvolume (this is subvolume " + std::to_string(id) +
                            "; mount the filesystem with subvolid=5)");
        if (top.stat_self().st_ino != subvolume_root_inode)
            throw Error("", "", "a directory inside the top-level subvolume, not its root");
        return Pool(std::move(top));
    });
}

// The pool's objects are the subvolumes directly in the top-level directory, so its entries are
// looked up one by one: btrfs's subvolume iterator would also walk every subvolume nested below
// (the state snapshots kept by each deploy, strata's own), with three ioctls each, cold reads of
// their metadata included.
std::vector<Subvolume> Pool::list() const {
    std::vector<Subvolume> result;
    for (const auto& name : top_.entries())
        if (auto s = find(name)) result.push_back(std::move(*s));
    std::sort(result.begin(), result.end(), list_order);
    return result;
}

// One name, one subvolume: its own info (BTRFS_IOC_GET_SUBVOL_INFO), not a listing of the pool,
// which costs three ioctls per subvolume and grows with every kept state snapshot. What it
// returns is what list() would: a subvolume directly in the top-level directory, not strata's own.
std::optional<Subvolume> Pool::find(std::string_view name) const {
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos ||
        name.starts_with(hidden_dir))
        return std::nullopt;
    const auto st = top_.stat(name);
    if (!st || !S_ISDIR(st->st_mode) || st->st_ino != subvolume_root_inode) return std::nullopt;
    const auto dir = top_.try_open_dir(name);
    if (!dir) return std::nullopt;
    auto info = btrfs::info(*dir);
    if (info.parent_id != btrfs::top_level_id || info.dir_id != subvolume_root_inode) return std::nullopt;
    return Subvolume{std::string(name), naming::Name::try_parse(name), std::move(info)};
}

std::optional<Subvolume> Pool::find_by_uuid(const btrfs::Uuid& uuid) const {
    if (btrfs::is_null(uuid)) return std::nullopt;
    for (auto& s : list())
        if (s.info.uuid == uuid) return std::move(s);
    return std::nullopt;
}

std::optional<Subvolume> Pool::find_by_received_uuid(const btrfs::Uuid& uuid) const {
    if (btrfs::is_null(uuid)) return std::nullopt;
    for (auto& s : list())
        if (s.info.received_uuid == uuid) return std::move(s);
    return std::nullopt;
}

Dir Pool::hidden() const { return top_.make_dir(hidden_dir, 0700); }

Dir Pool::staging() const { return hidden().make_dir("staging", 0700); }

Lock Pool::lock(std::chrono::milliseconds timeout) const {
    const Dir h = hidden();
    Lock lock(FileLock::acquire(h, "lock", timeout, "pool is busy: another strata command is changing it"));
    clean_staging(staging());
    clean_publish_hops();
    return lock;
}

// Depth first: a command may have left subvolumes inside private directories (receive), and
// those must be deleted as subvolumes (they may be read-only), not unlinked file by file.
void Pool::clean_staging(const Dir& dir) const {
    for (const auto& entry : dir.entries()) {
        spdlog::debug("removing stale staging entry {}", dir.path_of(entry).string());
        const auto st = dir.stat(entry);
        if (!st) continue;
        if (S_ISDIR(st->st_mode) && st->st_ino == subvolume_root_inode) {
            btrfs::delete_subvolume(dir, entry);
        } else if (S_ISDIR(st->st_mode)) {
            clean_staging(dir.open_dir(entry));
            dir.remove_dir(entry);
        } else {
            dir.unlink(entry);
        }
    }
}

void Pool::clean_publish_hops() const {
    for (const auto& entry : top_.entries()) {
        if (!entry.starts_with(publish_prefix)) continue;
        spdlog::debug("removing interrupted publish {}", top_.path_of(entry).string());
        btrfs::delete_subvolume(top_, entry);
    }
}

void Pool::require_absent(const naming::Name& target, OnConflict on_conflict) const {
    if (on_conflict == OnConflict::Fail && top_.stat(target.str()))
        throw Error("", "", "it exists already", Fault::Exists);
}

Staged Pool::stage(const Lock&, const naming::Name& target, OnConflict on_conflict) const {
    require_absent(target, on_conflict);
    Dir area = staging();
    const std::string entry = std::string(naming::kind_to_string(target.kind())) + "-" + random_token();
    btrfs::create_subvolume(area, entry);
    Dir subvolume = area.open_dir(entry);
    return Staged(top_, std::move(area), entry, std::move(subvolume), target, on_conflict);
}

Staged Pool::stage_snapshot(const Lock&, const naming::Name& target, std::string_view source,
                            OnConflict on_conflict) const {
    require_absent(target, on_conflict);
    Dir area = staging();
    const std::string entry = std::string(naming::kind_to_string(target.kind())) + "-" + random_token();
    btrfs::snapshot(top_, source, area, entry);
    Dir subvolume = area.open_dir(entry);
    return Staged(top_, std::move(area), entry, std::move(subvolume), target, on_conflict);
}

Staged Pool::stage_created(const Lock&, const naming::Name& target, OnConflict on_conflict,
                           const std::function<void(const Dir& into)>& create) const {
    require_absent(target, on_conflict);
    const Dir area = staging();
    const std::string holder = "created-" + random_token();
    Dir into = area.make_dir(holder, 0700);
    try {
        create(into);
        const auto entries = into.entries();
        if (entries.size() != 1)
            throw Error("", "", "expected one new subvolume, found " + std::to_string(entries.size()) + " entries");
        const auto st = into.stat(entries[0]);
        if (!st || !S_ISDIR(st->st_mode) || st->st_ino != subvolume_root_inode)
            throw Error("", "", "'" + entries[0] + "' is not a subvolume");
        Dir subvolume = into.open_dir(entries[0]);
        return Staged(top_, std::move(into), entries[0], std::move(subvolume), target, on_conflict, holder);
    } catch (...) {
        clean_staging(into);
        area.remove_dir(holder);
        throw;
    }
}

Scratch Pool::scratch(const Lock&) const {
    Dir area = staging();
    const std::string entry = "scratch-" + random_token();
    btrfs::create_subvolume(area, entry);
    Dir subvolume = area.open_dir(entry);
    return Scratch(std::move(area), entry, std::move(subvolume));
}

}  // namespace strata::pool
