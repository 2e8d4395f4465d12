#pragma once
// One owner type for every C library handle: CHandle<btrfs_util_subvolume_iterator,
// btrfs_util_destroy_subvolume_iterator> frees with the library's own destructor. Move-only.
#include <memory>

namespace strata {

template <auto Free>
struct CFree {
    template <class T>
    void operator()(T* p) const noexcept {
        if (p) Free(p);
    }
};

template <class T, auto Free>
using CHandle = std::unique_ptr<T, CFree<Free>>;

}  // namespace strata
