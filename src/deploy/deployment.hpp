#pragma once
// Deployments: a root instance paired with a usr version of its vendor and arch, bootable through
// a Boot Loader Specification entry. `deploy` ties a root to a usr and makes that the default;
// before a root leaves a usr, its state is kept as a read-only snapshot linked to the pair it
// leaves, so `rollback --with-state` can bring the old pair back exactly as it was.
//
// Every multi-step change orders its steps so that a crash after any of them leaves the previous
// default entry intact and bootable: kernel copy, state snapshot, entry, database, default.
// Leftovers (an unlinked snapshot, an unused kernel) are what `gc` removes.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "boot/names.hpp"
#include "factory/etc_merge.hpp"
#include "naming/name.hpp"
#include "pool/pool.hpp"

namespace strata::deploy {

// Where and how boot entries are written, and the host facts status reads.
struct BootTarget {
    explicit BootTarget(Dir boot_dir, std::optional<Dir> loader_dir = std::nullopt)
        : boot(std::move(boot_dir)), loader(std::move(loader_dir)) {}
    Dir boot;                                       // $BOOT
    std::optional<Dir> loader;                      // where loader/loader.conf lives, if not $BOOT (the ESP beside XBOOTLDR)
    unsigned tries = 3;                             // boot counting for new entries; 0: none
    std::vector<std::string> kernel_args;           // global extra options
    std::filesystem::path efivars = "/sys/firmware/efi/efivars";
    std::filesystem::path cmdline = "/proc/cmdline";  // to tell the booted deployment
};

inline const Dir& loader_dir(const BootTarget& t) { return t.loader ? *t.loader : t.boot; }

struct Deployment {
    std::string id;       // the boot entry id, e.g. "org.example.Demo+web+2.0+x86_64"
    std::string root;     // root:<name>:<vendor>:<arch>
    std::string usr;      // usr:<vendor>:<arch>:<version>
    std::string version;  // the usr version
    std::string entry_file;             // in $BOOT/loader/entries
    boot::BootState state = boot::BootState::Good;
    std::optional<unsigned> tries_left;
    bool is_default = false;  // the root's default deployment (what its next boot runs)
    bool booted = false;
    bool pinned = false;
    std::optional<std::string> state_snapshot;  // kept when the root left this usr
    std::optional<factory::MergeReport> etc;    // set by deploy when the root moved to this usr
};

// The entry id of a (root, usr) pair: only [A-Za-z0-9_.-], unique per pool.
std::string deployment_id(const naming::Name& root, const naming::Name& usr);

// Ties root to the newest usr of its vendor and arch (or `version`), copies the kernel, writes the
// entry and makes it the default. Deploying the pair that is already the default only rewrites
// what is missing. extra_args replace the root's own kernel arguments when given.
// When the root moves from another usr, its /etc is merged for the new one right after the
// old state is kept (deploy/etc.hpp); a failed merge fails the deploy before the entry, so the
// previous default stays the default.
Deployment deploy(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target,
                  const naming::Name& root, const std::optional<std::string>& version,
                  const std::optional<std::vector<std::string>>& extra_args = std::nullopt);

struct Booted {
    std::string root, usr;
};

struct Status {
    std::optional<Booted> booted;  // nullopt: not booted from this pool
    std::optional<std::string> loader_default;  // the boot loader's default: an entry id or id pattern
    std::optional<std::string> next_boot;       // the entry id the loader starts next (one-shot, default,
                                                // no-tries-left fallback), among all entries in $BOOT
    std::vector<Deployment> deployments;  // by root, then version order (newest last)
};

// The booted deployment comes from the kernel command line (root=UUID= of this pool, rootflags=
// and mount.usrflags= subvolumes), else from the mount table: / and /usr mounted from this pool.
Status status(const pool::Pool& pool, const BootTarget& target);

// The root a command means: `given` (a full name, or an instance name like "web"), else the booted
// root, else the pool's only one. A full name comes back as parsed, for the command to check.
// Errors carry no context: "no such root instance in the pool" (NotFound), "the pool has no root
// instance" / "the pool has several root instances: name one" (InvalidInput). Without a target
// (no $BOOT on this host) the booted root is not looked for.
naming::Name choose_root(const pool::Pool& pool, const BootTarget* target, const std::optional<std::string>& given);

// Makes the deployment `id` the default of its root (its usr must still exist).
Deployment set_default(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target, std::string_view id);

// Makes the root's previous deployment the default again. With state, the root's state is also
// restored from the snapshot kept for that deployment; the current state is kept as a snapshot
// first, so a second rollback undoes the first. root: nullopt means the only root, or the booted one.
Deployment rollback(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target,
                    const std::optional<std::string>& root, bool with_state);

// The next boot only starts `id` (the boot loader's one-shot entry).
void boot_once(const pool::Pool& pool, const BootTarget& target, std::string_view id);

void set_pinned(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target, std::string_view id,
                bool pinned);

}  // namespace strata::deploy
