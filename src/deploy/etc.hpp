#pragma once
// /etc across deployments: the three-way merge a deploy runs when a root moves to another usr
// (factory/etc_merge.hpp does the comparing and copying), its preview for `strata etc diff`, and
// copying chosen entries from one deployment's /etc into another's for `strata etc sync`.
// docs/etc-merge.md describes the policy.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "deploy/deployment.hpp"
#include "factory/etc_merge.hpp"
#include "naming/name.hpp"
#include "pool/pool.hpp"

namespace strata::deploy {

// Where a usr tree keeps its factory /etc (/usr/share/factory/etc once mounted).
inline constexpr std::string_view factory_etc_dir = "share/factory/etc";

// The root's /etc compared for a move from usr `from` to usr `to` and, with apply, merged in
// place. When either usr has no factory /etc, or (with apply) the root's /etc is empty, the
// report is `skipped` with the reason and nothing is read or changed. Each entry is replaced
// atomically; a failure while copying leaves /etc unchanged.
factory::MergeReport merge_etc(const pool::Pool& pool, const naming::Name& root, const naming::Name& from,
                               const naming::Name& to, bool apply);

// The preview of a deploy's merge: from the root's current default usr to `version` (default:
// the newest usr of its vendor and arch). Nothing is changed.
factory::MergeReport etc_diff(const pool::Pool& pool, std::string_view root,
                              const std::optional<std::string>& version);

struct EtcSync {
    std::string from, to;            // deployment ids
    std::string target;              // what was changed: the root instance or a state snapshot (pool path)
    std::vector<std::string> paths;  // as copied, relative to /etc
};

// Copies the entries at `paths` (under /etc) from the /etc of deployment `from` into the /etc of
// deployment `to`. A deployment's /etc is its root's live one when it is the root's default,
// else the read-only state snapshot kept for it; a snapshot is changed as a whole: a writable
// snapshot of it is changed, made read-only and swapped in with one rename, so readers see the
// old or the new one. Paths are checked before anything changes.
EtcSync etc_sync(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target,
                 std::string_view from, std::string_view to, const std::vector<std::string>& paths);

}  // namespace strata::deploy
