#include "pool/staging.hpp"

#include <spdlog/spdlog.h>

#include "base/error.hpp"
#include "btrfs/subvolume.hpp"
#include "pool/pool.hpp"

namespace strata::pool {

Staged::Staged(const Dir& top, Dir area, std::string entry, Dir subvolume, naming::Name target,
               OnConflict on_conflict, std::optional<std::string> holder)
    : top_(&top),
      area_(std::move(area)),
      holder_(std::move(holder)),
      parent_(&area_),
      entry_(std::move(entry)),
      subvolume_(std::move(subvolume)),
      target_(std::move(target)),
      on_conflict_(on_conflict) {}

Staged::Staged(Staged&& other) noexcept
    : top_(other.top_),
      area_(std::move(other.area_)),
      holder_(std::move(other.holder_)),
      parent_(other.parent_ == &other.area_ ? &area_ : other.parent_),
      entry_(std::move(other.entry_)),
      subvolume_(std::move(other.subvolume_)),
      target_(std::move(other.target_)),
      on_conflict_(other.on_conflict_),
      done_(other.done_) {
    other.done_ = true;
    other.holder_.reset();
}

Staged::~Staged() {
    if (!done_) {
        try {
            btrfs::delete_subvolume(*parent_, entry_);
        } catch (const std::exception& e) {
            spdlog::debug("discard staged '{}': {}, ignoring", target_.str(), e.what());
        }
    }
    discard();
}

// The private holder directory goes once its subvolume has left or been deleted.
void Staged::discard() noexcept {
    if (!holder_) return;
    try {
        const Dir staging = Dir::open(area_.path().parent_path());
        staging.remove_dir(*holder_);
    } catch (const std::exception& e) {
        spdlog::debug("remove staging directory '{}': {}, ignoring", *holder_, e.what());
    }
    holder_.reset();
}

void Staged::publish(Access access) {
    const std::string name = target_.str();
    with_context("publish", name, [&] {
        // A received subvolume is read-only; it becomes writable only for the move.
        if (btrfs::read_only(subvolume_)) btrfs::set_read_only(subvolume_, false);
        // syncfs before the rename: the name must never point at data still in flight.
        btrfs::sync(subvolume_);
        if (access == Access::ReadOnly) {
            const std::string hop = std::string(publish_prefix) + entry_;
            area_.rename(entry_, *top_, hop, /*no_replace=*/true);
            parent_ = top_;
            entry_ = hop;
            btrfs::set_read_only(subvolume_, true);
        }
        if (on_conflict_ == OnConflict::Replace && top_->stat(name)) {
            // Moving the old subvolume to the hop's place first lets the exchange happen within
            // one directory; after it, entry_ names the old subvolume, deleted below or, after a
            // crash, by the next lock holder (it carries the hidden publish prefix).
            if (parent_ != top_) {
                const std::string hop = std::string(publish_prefix) + entry_;
                area_.rename(entry_, *top_, hop, /*no_replace=*/true);
                parent_ = top_;
                entry_ = hop;
            }
            top_->exchange(entry_, *top_, name);
            top_->sync();
            done_ = true;
            try {
                btrfs::delete_subvolume(*top_, entry_);
            } catch (const std::exception& e) {
                spdlog::debug("delete replaced '{}': {}, ignoring (the next command retries)", name, e.what());
            }
        } else {
            try {
                parent_->rename(entry_, *top_, name, /*no_replace=*/true);
            } catch (const Error& e) {
                if (e.errnum() == EEXIST) throw Error("", "", "it exists already", Fault::Exists);
                throw;
            }
            done_ = true;
        }
        top_->sync();
        discard();
    });
}

Scratch::Scratch(Scratch&& other) noexcept
    : area_(std::move(other.area_)),
      entry_(std::move(other.entry_)),
      subvolume_(std::move(other.subvolume_)),
      done_(other.done_) {
    other.done_ = true;
}

Scratch::~Scratch() {
    if (done_) return;
    try {
        btrfs::delete_subvolume(area_, entry_);
    } catch (const std::exception& e) {
        spdlog::debug("delete scratch subvolume '{}': {}, ignoring", entry_, e.what());
    }
}

}  // namespace strata::pool
