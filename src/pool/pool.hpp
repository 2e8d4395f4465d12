#pragma once
// A pool is the top-level subvolume (id 5) of a btrfs filesystem. Typed subvolumes live directly
// in it; everything strata keeps for itself (staging, lock) lives under the hidden `.strata/`.
#include <chrono>
#include <functional>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.hpp"
#include "base/lock.hpp"
#include "btrfs/subvolume.hpp"
#include "naming/name.hpp"
#include "pool/staging.hpp"

namespace strata::pool {

inline constexpr std::string_view hidden_dir = ".strata";
// A read-only subvolume cannot move to another directory (its ".." would change), so publishing
// takes one last hop through the top level under this prefix; see staging.hpp.
inline constexpr std::string_view publish_prefix = ".strata.publish.";

struct Subvolume {
    std::string name;                  // the entry name in the pool
    std::optional<naming::Name> typed; // nullopt: a subvolume whose name is not in the scheme
    btrfs::SubvolumeInfo info;
};

// Sorted by kind, id, arch and version order; untyped subvolumes last, by name.
bool list_order(const Subvolume& a, const Subvolume& b);

// Proof that the caller holds the pool's exclusive lock: every mutation takes one.
class Lock {
public:
    Lock(Lock&&) noexcept = default;

private:
    friend class Pool;
    explicit Lock(FileLock lock) : lock_(std::move(lock)) {}
    FileLock lock_;
};


class Pool {
public:
    // Fails with a one-line reason when path is missing, not btrfs, or not the top-level subvolume.
    static Pool open(const std::filesystem::path& path);

    const Dir& top() const { return top_; }
    // strata's own directory in the pool (.strata/), created on first use.
    Dir hidden() const;
    const std::filesystem::path& path() const { return top_.path(); }

    std::vector<Subvolume> list() const;  // typed and untyped top-level subvolumes, list order
    std::optional<Subvolume> find(std::string_view name) const;
    // The pool object with this uuid, or with this received_uuid (what a stream calls it).
    std::optional<Subvolume> find_by_uuid(const btrfs::Uuid& uuid) const;
    std::optional<Subvolume> find_by_received_uuid(const btrfs::Uuid& uuid) const;

    // Takes the exclusive lock, waiting up to timeout (then Fault::Busy, "pool is busy"), and
    // deletes whatever a crashed command left in staging: nobody else can be staging now.
    Lock lock(std::chrono::milliseconds timeout) const;

    // A new empty subvolume in staging that becomes `target` on publish (see staging.hpp).
    // With OnConflict::Fail an existing target is refused here already, before any work.
    Staged stage(const Lock& lock, const naming::Name& target, OnConflict on_conflict = OnConflict::Fail) const;
    // As stage(), but the new subvolume starts as a writable snapshot of the pool's `source`, so
    // it shares all extents with it and records source's uuid as its parent_uuid.
    Staged stage_snapshot(const Lock& lock, const naming::Name& target, std::string_view source,
                          OnConflict on_conflict = OnConflict::Fail) const;
    // For tools that create the subvolume themselves (btrfs receive): `create` gets an empty
    // private directory in staging and must leave exactly one subvolume in it.
    Staged stage_created(const Lock& lock, const naming::Name& target, OnConflict on_conflict,
                         const std::function<void(const Dir& into)>& create) const;
    // Fault::Exists when target exists and on_conflict is Fail: lets long operations fail before
    // their work rather than at publish (which checks again).
    void require_absent(const naming::Name& target, OnConflict on_conflict) const;
    // A subvolume for intermediate work, deleted when the guard goes.
    Scratch scratch(const Lock& lock) const;

private:
    explicit Pool(Dir top) : top_(std::move(top)) {}
    Dir staging() const;
    void clean_staging(const Dir& dir) const;

    void clean_publish_hops() const;
    Dir top_;
};

}  // namespace strata::pool
