#pragma once
// Multi-step creation as a guard: build in .strata/staging/, then publish() gives the finished
// subvolume its typed name with one rename. Until then no object with a valid name exists, and
// the destructor deletes unpublished work; a crash leaves only staging debris, which the next
// lock holder removes.
//
// The kernel refuses to move a read-only directory to another parent (EROFS: its ".." entry would
// change), so a read-only publish first moves the writable subvolume to the top level under a
// hidden name (publish_prefix), sets the flag there, and renames within the top level. A received
// subvolume arrives read-only; clearing the flag with the ioctl (not `btrfs property set`) keeps
// its received_uuid, so it can still be the parent of later incremental streams.
#include <optional>
#include <string>

#include "base/fd.hpp"
#include "naming/name.hpp"

namespace strata::pool {

// What publish does when the target name exists by then.
enum class OnConflict {
    Fail,     // Fault::Exists, the work is deleted
    Replace,  // swap in atomically (RENAME_EXCHANGE); the old subvolume is deleted afterwards
};

enum class Access { Writable, ReadOnly };

class Staged {
public:
    Staged(Staged&& other) noexcept;
    Staged& operator=(Staged&&) = delete;
    ~Staged();

    const Dir& dir() const { return subvolume_; }  // the subvolume being built
    const naming::Name& target() const { return target_; }

    // Flushes the data, sets the read-only flag if asked, and renames the subvolume to its name.
    void publish(Access access);

private:
    friend class Pool;
    Staged(const Dir& top, Dir area, std::string entry, Dir subvolume, naming::Name target,
           OnConflict on_conflict, std::optional<std::string> holder = std::nullopt);
    void discard() noexcept;

    const Dir* top_;
    Dir area_;                            // the directory that holds entry_ until the hop
    std::optional<std::string> holder_;   // a private dir in staging that area_ is, removed at the end
    const Dir* parent_;                   // where entry_ is now: area_, or *top_ during the last hop
    std::string entry_;
    Dir subvolume_;
    naming::Name target_;
    OnConflict on_conflict_;
    bool done_ = false;
};

// A subvolume in staging for intermediate work (e.g. an unpacked archive); always deleted.
class Scratch {
public:
    Scratch(Scratch&& other) noexcept;
    Scratch& operator=(Scratch&&) = delete;
    ~Scratch();
    const Dir& dir() const { return subvolume_; }

private:
    friend class Pool;
    Scratch(Dir area, std::string entry, Dir subvolume)
        : area_(std::move(area)), entry_(std::move(entry)), subvolume_(std::move(subvolume)) {}
    Dir area_;
    std::string entry_;
    Dir subvolume_;
    bool done_ = false;
};

}  // namespace strata::pool
