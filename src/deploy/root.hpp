#pragma once
// Root instances: the writable half of an OS (/etc, /var, mount points), root:<name>:<vendor>:<arch>.
#include "naming/name.hpp"
#include "pool/pool.hpp"

namespace strata::deploy {

// Creates a new, empty root instance: merged-usr symlinks (bin, sbin, lib, and lib64 where the
// architecture has it) and empty mount points with their usual modes. No machine-id, so the
// first boot creates one.
void create_root(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name);

}  // namespace strata::deploy
