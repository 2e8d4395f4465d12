#pragma once
// Vendor trees (usr, runtime, framework, app) enter the pool read-only and whole, or not at all.
#include <filesystem>

#include "naming/name.hpp"
#include "pool/pool.hpp"

namespace strata::vendor {

// Copies the directory tree at source into a new read-only subvolume `name`: ownership, modes,
// timestamps, xattrs, ACLs, hardlinks, special files and holes are kept; on the same btrfs
// filesystem file data is shared by reflink rather than copied.
void import_directory(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name,
                      const std::filesystem::path& source);

}  // namespace strata::vendor
