#pragma once
// Removing vendor trees with deployments in mind: a usr that a boot entry boots, that is a root's
// default or that a pin keeps is in use, like a mounted one. Forced, its entries go first (no
// entry may point at a missing tree), then the records, then the trees, then the kernel copies
// on $BOOT that no remaining usr needs. Without a $BOOT (target null: a build host) only the
// records count.
#include <string>
#include <vector>

#include "deploy/deployment.hpp"
#include "vendor/remove.hpp"

namespace strata::deploy {

std::vector<vendor::Removal> remove_vendor_trees(const pool::Pool& pool, const pool::Lock& lock, const BootTarget* target,
                                                 const std::vector<std::string>& names, bool force, bool dry_run);

}  // namespace strata::deploy
