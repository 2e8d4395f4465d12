#pragma once
// Multi-step creation as a guard: build in .strata/staging/, then publish() gives the finished
// subvolume its typed name with one rename (NOREPLACE). Until then no object with a valid name
// exists, and the destructor deletes unpublished work; a crash leaves only staging debris, which
// the next lock holder removes.
//
// The kernel refuses to move a read-only directory to another parent (EROFS: its ".." entry would
// change), so a read-only publish first moves the writable subvolume to the top level under a
// hidden name (publish_prefix), sets the flag there, and renames within the top level.
#include <string>

#include "base/fd.hpp"
#include "naming/name.hpp"

namespace strata::pool {

class Staged {
public:
    Staged(Staged&& other) noexcept;
    Staged& operator=(Staged&&) = delete;
    ~Staged();

    const Dir& dir() const { return subvolume_; }  // the subvolume being built
    const naming::Name& target() const { return target_; }

    // Flushes the data, sets the read-only flag if asked, and renames the subvolume to its
    // name; fails with Fault::Exists (and deletes the work) if that name appeared meanwhile.
    void publish(bool read_only);

private:
    friend class Pool;
    Staged(const Dir& top, Dir staging, std::string entry, Dir subvolume, naming::Name target);
    const Dir* top_;
    Dir staging_;
    const Dir* parent_;  // where entry_ is now: staging_, or *top_ during the last hop
    std::string entry_;
    Dir subvolume_;
    naming::Name target_;
    bool done_ = false;
};

}  // namespace strata::pool
