#pragma once
// Garbage collection of deployments: old usr versions, the entries and kernels that boot them,
// and state snapshots nothing links to any more.
#include <cstdint>
#include <string>
#include <vector>

#include "deploy/deployment.hpp"

namespace strata::deploy {

struct GcReport {
    std::vector<std::string> usr;        // usr subvolumes removed
    std::vector<std::string> entries;    // entry ids removed
    std::vector<std::string> states;     // state snapshots removed (paths in the pool)
    std::vector<std::string> kernels;    // "<token>/<version>" directories removed from $BOOT
    uint64_t freed_bytes = 0;            // pool and $BOOT free space gained (0 on a dry run)
};

// Keeps per vendor and arch the `keep` newest usr versions, and always: each root's default
// deployment, the booted one, pinned ones, ones whose entry is not yet good (boot counting) and,
// while a root has such an entry, its newest good deployment, which is where a failed boot falls
// back to. Removes everything else that strata made for deployments: usr trees, their entries,
// state snapshots no record links to, kernel copies no entry uses.
GcReport gc(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target, unsigned keep, bool dry_run);

}  // namespace strata::deploy
