#pragma once
// The image builder's side of factory defaults: `strata factory prepare TREE` turns a normal OS
// tree (debootstrap, mkosi) into a stateless vendor tree whose usr/ carries everything /etc and
// /var need on first boot:
//   TREE/usr/share/factory/{etc,var}          the former content of TREE/etc and TREE/var, moved
//                                             by rename (ownership, modes, xattrs, ACLs, times,
//                                             symlinks and hardlinks stay as they were)
//   TREE/usr/lib/tmpfiles.d/strata-factory.conf   C/L/d rules that rebuild them (rules.hpp)
//   TREE/usr/lib/systemd/system/strata-factory.service  applies the rules early on every boot
//   TREE/usr/lib/systemd/system/sysinit.target.wants/strata-factory.service  enabled from /usr
//   TREE/usr/lib/systemd/system-preset/00-strata-factory.preset  "disable *", see docs/factory.md
// TREE/etc and TREE/var stay as empty directories with their modes and owners. Machine-specific
// files are left out by an exclude list: the defaults below plus the builder's patterns.
// docs/factory.md describes the result and the first-boot pitfalls it avoids.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.hpp"
#include "factory/rules.hpp"

namespace strata::factory {

// Exclude patterns are paths relative to the tree, starting with etc/ or var/ (a leading '/' is
// dropped). `*`, `?` and `[...]` match within one path component (fnmatch(3) with
// FNM_PATHNAME; names starting with '.' match too). A matching entry is left out with
// everything below it. A pattern ending in "/**" matches every non-directory at any depth below
// the directories its first part matches; those directories stay, empty, with their modes,
// owners and ACLs (so /var/log/journal keeps its group and ACL and journald stays persistent).
struct ExcludeDefault {
    std::string_view pattern;
    std::string_view why;
};
inline constexpr ExcludeDefault default_excludes[] = {
    {"etc/machine-id", "the machine's identity; systemd makes a new one on first boot"},
    {"etc/adjtime", "this machine's RTC drift and mode; absent means UTC"},
    {"etc/ssh/ssh_host_*", "host keys must differ per machine"},
    {"var/lib/dbus/machine-id", "a copy of the machine id"},
    {"var/lib/systemd/random-seed", "a random seed shared by every machine is no seed"},
    {"var/lib/systemd/credential.secret", "per-machine secret for encrypted credentials"},
    {"var/cache/**", "caches are rebuilt; directories stay for their owners"},
    {"var/log/**", "logs of the build; directories stay for their owners and ACLs"},
    {"var/tmp/*", "temporary files of the build"},
};

// The defaults, then the builder's patterns in order.
std::vector<std::string> effective_excludes(const std::vector<std::string>& extra);

// Throws Error(Fault::InvalidInput) for a pattern that can never match (outside etc/ and var/,
// empty, with '..' components).
void check_exclude(std::string_view pattern);

struct PrepareOptions {
    std::vector<std::string> exclude;  // added to the defaults
};

struct PrepareReport {
    std::vector<std::string> excluded;  // paths left out, e.g. "/etc/machine-id", walk order
    std::vector<Rule> rules;            // what strata-factory.conf says
};

// The unit and preset prepare installs; units/strata-factory.service in the source tree is the
// same text (a test checks it).
std::string_view unit_text();
std::string_view preset_text();
inline constexpr std::string_view unit_name = "strata-factory.service";
inline constexpr std::string_view preset_name = "00-strata-factory.preset";

// The rules that rebuild /etc and /var from usr/share/factory as `usr` holds it: d lines for
// /etc and /var with their modes and owners, then per top-level entry an L line for a symlink
// (with its target; a C line on it makes tmpfiles fail) and a C line for anything else.
std::vector<Rule> rules_for_factory(const Dir& usr);

// Prepares the tree at `tree`. Refused with Fault::InvalidInput and nothing changed: no etc/
// directory, no usr/ directory, already prepared (rules file or usr/share/factory/{etc,var}
// present), etc/ var/ and usr/ not on one filesystem, or a top-level name no rule can express.
//
// Crash safety: the steps are ordered so that running prepare again after an interruption
// finishes the job. etc/ and var/ are renamed whole into usr/share/factory.strata-prepare/ and
// recreated empty; excludes are removed there; unit, preset and wants link are written; the
// staged etc/ and var/ are renamed to usr/share/factory/; the rules file is written last (it
// marks the tree as prepared), then the staging directory goes.
PrepareReport prepare(const std::filesystem::path& tree, const PrepareOptions& options = {});

}  // namespace strata::factory
