#include "pool/staging.hpp"

#include <spdlog/spdlog.h>

#include "base/error.hpp"
#include "btrfs/subvolume.hpp"
#include "pool/pool.hpp"

namespace strata::pool {

Staged::Staged(const Dir& top, Dir staging, std::string entry, Dir subvolume, naming::Name target)
    : top_(&top),
      staging_(std::move(staging)),
      parent_(&staging_),
      entry_(std::move(entry)),
      subvolume_(std::move(subvolume)),
      target_(std::move(target)) {}

Staged::Staged(Staged&& other) noexcept
    : top_(other.top_),
      staging_(std::move(other.staging_)),
      parent_(other.parent_ == &other.staging_ ? &staging_ : other.parent_),
      entry_(std::move(other.entry_)),
      subvolume_(std::move(other.subvolume_)),
      target_(std::move(other.target_)),
      done_(other.done_) {
    other.done_ = true;
}

Staged::~Staged() {
    if (done_) return;
    try {
        btrfs::delete_subvolume(*parent_, entry_);
    } catch (const std::exception& e) {
        spdlog::debug("discard staged '{}': {}, ignoring", target_.str(), e.what());
    }
}

void Staged::publish(bool read_only) {
    const std::string name = target_.str();
    with_context("publish", name, [&] {
        // syncfs before the rename: the name must never point at data still in flight.
        btrfs::sync(subvolume_);
        if (read_only) {
            const std::string hop = std::string(publish_prefix) + entry_;
            staging_.rename(entry_, *top_, hop, /*no_replace=*/true);
            parent_ = top_;
            entry_ = hop;
            btrfs::set_read_only(subvolume_, true);
        }
        parent_->rename(entry_, *top_, name, /*no_replace=*/true);
        done_ = true;
        top_->sync();
    });
}

}  // namespace strata::pool
