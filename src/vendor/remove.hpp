#pragma once
// Removing vendor trees: all named trees are checked first, then deleted (all or none refused).
#include <functional>
#include <string>
#include <vector>

#include "pool/pool.hpp"

namespace strata::vendor {

struct RemoveOptions {
    bool force = false;    // remove trees that are in use (mounted, booted)
    bool dry_run = false;  // check and report, delete nothing
    // Uses that layers above know of (deployments), added to the mounts and the command line.
    std::function<std::vector<std::string>(std::string_view name)> more_uses;
};

struct Removal {
    std::string name;
    std::vector<std::string> in_use;  // why it is in use ("mounted at /mnt", "booted"), if forced
};

// Refuses, before deleting anything: names that are not vendor trees of the pool; trees in use
// unless forced; trees with nested subvolumes (always: strata deletes only what it made).
std::vector<Removal> remove_vendor_trees(const pool::Pool& pool, const pool::Lock& lock,
                                         const std::vector<std::string>& names, const RemoveOptions& options);

// Why a pool subvolume is in use: mounts of it (or below it) and the running kernel's command line.
std::vector<std::string> uses_of(const pool::Pool& pool, std::string_view name);

}  // namespace strata::vendor
