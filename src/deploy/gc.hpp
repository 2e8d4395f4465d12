#pragma once
// Garbage collection of deployments: old usr versions, the entries and kernels that boot them,
// and state snapshots nothing links to any more.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "deploy/deployment.hpp"

namespace strata::deploy {

struct GcReport {
    std::vector<std::string> usr;        // usr subvolumes removed
    std::vector<std::string> entries;    // entry ids removed
    std::vector<std::string> states;     // state snapshots removed (paths in the pool)
    std::vector<std::string> kernels;    // "<token>/<version>" directories removed from $BOOT
    std::vector<std::string> resets;     // old states kept by factory resets (pool-relative)
    // Pool and $BOOT free space gained; known only when gc waited for the btrfs cleaner.
    std::optional<uint64_t> freed_bytes;
};

struct GcOptions {
    unsigned keep = 3;           // usr versions to keep per vendor and arch
    bool dry_run = false;
    // The old state a factory reset set aside stays this long, so the reset can be undone.
    unsigned reset_undo_days = 7;
    // Deleted subvolumes give their space back when the btrfs cleaner has run, which can take
    // a commit interval (30 s by default) and longer; only a caller that wants the number waits.
    bool wait_for_cleaner = false;
};

// Keeps per vendor and arch the `keep` newest usr versions, and always: each root's default
// deployment, the booted one, pinned ones, ones whose entry is not yet good (boot counting) and,
// while a root has such an entry, its newest good deployment, which is where a failed boot falls
// back to. Removes everything else that strata made for deployments: usr trees, their entries,
// state snapshots no record links to, kernel copies no entry uses, and the old states of factory
// resets older than reset_undo_days (or of roots that are gone). The deletions are committed
// before gc returns.
GcReport gc(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target, const GcOptions& options);

}  // namespace strata::deploy
