#pragma once
// Factory reset: a root instance's state goes back to what its vendor ships. The state subvolume
// is replaced in one step (a staged snapshot swapped in by RENAME_EXCHANGE) by one whose /etc
// (and /var, or everything) is fresh: populated from the factory of the root's usr as a first
// boot would, plus the paths the admin chose to keep, copied from the old state.
//
// The old state is kept read-only under .strata/reset/<root>/ (with the homes set aside), so
// undo_factory_reset() brings it back until gc removes it. A root in use (mounted, or the booted
// one) cannot be swapped: its reset is written as a request (.strata/reset/<root>.request.json)
// and carried out by apply_scheduled_resets() on the next boot, before the root is mounted
// (units/strata-factory-reset.service in the initrd). docs/factory-reset.md has the details.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "naming/name.hpp"
#include "pool/pool.hpp"

namespace strata::deploy {

enum class ResetLevel {
    Etc,    // /etc only
    State,  // /etc and /var
    All,    // the whole instance (a fresh skeleton), with homes if asked
};
std::optional<ResetLevel> parse_reset_level(std::string_view text);
std::string_view to_string(ResetLevel level);

struct ResetOptions {
    ResetLevel level = ResetLevel::State;
    // Absolute paths or globs (glob(7), '*' does not match a leading dot) under /etc or /var that
    // survive the reset, e.g. "/etc/ssh/ssh_host_*".
    std::vector<std::string> keep;
    bool homes = false;         // level All only: also set aside the homes of the root's users
    bool dry_run = false;       // check and report, change nothing
    bool on_next_boot = false;  // schedule even when the root is not in use
};

struct ResetReport {
    std::string root;
    ResetLevel level = ResetLevel::State;
    std::vector<std::string> cleared;           // "/etc", "/var" or "/"
    std::vector<std::string> kept;              // kept paths found in the old state
    std::vector<std::string> homes;             // home: subvolumes set aside
    std::optional<std::string> populated_from;  // the usr whose factory filled the new state
    std::string undo;                           // where the old state is kept, pool-relative
    bool dry_run = false;
    bool scheduled = false;                     // written as a request for the next boot
    std::string in_use;                         // why it was scheduled, when it was in use
};

// Resets `root` as options say, or schedules it when the root is in use (or on_next_boot).
// Fails before changing anything on: not a root instance of the pool, keep paths outside the
// reset's scope (/etc for Etc, /etc and /var otherwise) or with "..", --homes below level All,
// nested subvolumes in the root (strata deletes only what it made).
ResetReport factory_reset(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& root,
                          const ResetOptions& options);

// Puts back the state (and homes) the last reset of `root` set aside; the reset state is deleted.
// A pending request for the root is cancelled instead, when there is one.
ResetReport undo_factory_reset(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& root);

// Carries out every scheduled reset whose root is not mounted (at boot the root is on the kernel
// command line but not yet mounted, which is exactly when this runs). Done requests are removed.
std::vector<ResetReport> apply_scheduled_resets(const pool::Pool& pool, const pool::Lock& lock);

// What a kernel command line says about a strata boot.
struct BootRequest {
    std::string pool_uuid;       // root=UUID=
    std::string root;            // rootflags=subvol=
    bool factory_reset = false;  // systemd.factory_reset=1 (systemd's factory reset request)
};
BootRequest parse_boot_command_line(std::string_view cmdline);

// The same at boot, in the initrd, where no pool is mounted yet: mounts the top level of the
// filesystem that root=UUID= on the kernel command line names at a private directory under
// mount_base, applies what is scheduled there and unmounts. With systemd.factory_reset=1 the
// root being booted is reset at level state unless a request of its own says otherwise. Without
// root=UUID= there is nothing to do (not a strata boot).
std::vector<ResetReport> apply_scheduled_resets_at_boot(const std::filesystem::path& cmdline,
                                                        const std::filesystem::path& mount_base,
                                                        std::chrono::milliseconds lock_timeout);

// The pending request of each root, as the report a reset would give (scheduled = true).
std::vector<ResetReport> scheduled_resets(const pool::Pool& pool);

// The old states resets set aside, for gc.
struct UndoCopy {
    std::string path;  // pool-relative directory
    std::string root;  // "" for debris of an interrupted reset
    int64_t time = 0;  // when the reset ran (seconds since the epoch)
};
std::vector<UndoCopy> reset_undo_copies(const pool::Pool& pool);
void remove_reset_undo(const pool::Pool& pool, const UndoCopy& copy);

// Drops the pending request and the undo copy of `root` (when the root itself is removed).
void forget_resets(const pool::Pool& pool, const naming::Name& root);

inline constexpr std::string_view reset_dir = "reset";  // .strata/reset/

}  // namespace strata::deploy
