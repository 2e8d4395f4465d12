#pragma once
// Root instances: the writable half of an OS (/etc, /var, mount points), root:<name>:<vendor>:<arch>.
#include <string>

#include "naming/name.hpp"
#include "pool/pool.hpp"

namespace strata::deploy {

// Creates a new, empty root instance: merged-usr symlinks (bin, sbin, lib, and lib64 where the
// architecture has it) and empty mount points with their usual modes. No machine-id, so the
// first boot creates one.
void create_root(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name);

// The read-only skeleton every new instance of root's layout starts as (a pool-relative path under
// .strata/skeletons/), made on first use.
std::string root_skeleton(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& root);

// A new instance as a snapshot of an existing one (same vendor and arch): all its state, but
// without /etc/machine-id unless keep_machine_id, so the clone boots as a new machine.
void clone_root(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& source, const naming::Name& clone,
                bool keep_machine_id);

// Deletes an instance with its deployment record and state snapshots; its boot entries are
// removed from boot_dir when given. Refused while it is mounted or booted (Fault::InUse).
void remove_root(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name, const Dir* boot_dir);

}  // namespace strata::deploy
