#pragma once
// Offline first-boot population: what `systemd-tmpfiles --create` does at boot with the factory
// rules of a usr tree (usr/lib/tmpfiles.d/strata-factory.conf), done on a root instance that is
// not running. Same semantics as tmpfiles: `C` copies /usr/share/factory/<path> only if the
// target is missing or an empty directory, `L` makes a symlink only if nothing is there, `d`
// creates a directory with its mode and owner if missing.
#include <string>
#include <vector>

#include "base/fd.hpp"

namespace strata::factory {

struct PopulateReport {
    std::vector<std::string> copied;    // paths (e.g. "/etc/passwd") copied from the factory
    std::vector<std::string> linked;    // symlinks made
    std::vector<std::string> created;   // directories made
    std::vector<std::string> skipped;   // present already, left alone
    std::vector<std::string> missing;   // C lines whose factory source does not exist (tmpfiles skips them too)
};

// `root` is the root instance's top directory, `usr` the usr tree (what is mounted at /usr).
// Fails (Fault::InvalidInput) when the usr tree has no factory rules or no factory directory,
// or when a rule names a path outside /etc and /var. Lines apply in file order; a failure
// stops there, and running populate again completes the rest (present targets are skipped).
//
// Copies are `cp -a --reflink=auto`: ownership, modes, timestamps, all xattrs (ACLs, file
// capabilities included), symlinks and hardlinks within one copied tree. systemd-tmpfiles 252
// keeps only user.* xattrs on a C copy; docs/factory.md lists that difference.
PopulateReport populate(const Dir& root, const Dir& usr);

}  // namespace strata::factory
