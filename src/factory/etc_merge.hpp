#pragma once
// The /etc three-way merge: when a root instance moves from usr A to usr B, every path of
// factory(A)/etc, factory(B)/etc and the instance's /etc gets a verdict, and the files the admin
// never changed follow the vendor while the admin's changes stay. docs/etc-merge.md has the table.
//
// Three layers, so each can be tested on its own:
//  - decide(): the verdict and action of one path from three fingerprints (pure);
//  - plan(): decide() over a whole tree, plus the rules that need the neighbours of a path: a
//    directory is only removed or replaced when everything in it goes too, and an added file
//    only appears where its directory exists (pure);
//  - scan() and apply(): the filesystem. scan() fingerprints the three trees (file contents are
//    compared as streams, never loaded whole); apply() stages every new entry under a temporary
//    name first and then renames them in, so a failure while copying changes nothing.
//
// An entry missing from /etc is never something to merge: tmpfiles copies factory files that are
// missing at boot, so an admin's deletion cannot persist anyway. And an /etc that was never
// populated (missing or empty) is left alone: the next boot fills it.
#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.hpp"

namespace strata::factory {

enum class EntryType { File, Directory, Symlink, Other };
std::string_view to_string(EntryType type);

// What a path is on one side, as far as a merge cares: mtime, atime, ctime and inode numbers are
// not part of it.
struct Fingerprint {
    EntryType type = EntryType::File;
    mode_t mode = 0644;  // the 12 permission bits (setuid, setgid, sticky, rwx)
    uid_t uid = 0;
    gid_t gid = 0;
    // Regular files: a token for the content, equal on two sides exactly when the contents are
    // equal (scan() assigns them per path after a stream compare). Symlinks: the target. Other:
    // the file type and device number.
    std::string content;
    std::map<std::string, std::string> xattrs;  // all of them, by name; POSIX ACLs are xattrs too
    bool operator==(const Fingerprint&) const = default;
};

enum class Verdict {
    Unchanged,      // nothing to do: the same everywhere, or /etc already has what B ships
    VendorChanged,  // B changed what A shipped, the admin did not touch it
    AdminChanged,   // the admin changed (or created) it, the vendor did not
    Conflict,       // both changed it, differently
    Added,          // new in B
    Removed,        // gone in B
};
std::string_view to_string(Verdict verdict);

enum class Action {
    None,      // leave /etc as it is (nothing changed, or the entry is absent and boot fills it)
    Keep,      // the admin's entry stays
    Update,    // replace the entry with B's
    Add,       // copy B's entry in
    Remove,    // delete the entry (it still equals A's)
    WriteNew,  // keep the admin's entry and put B's beside it as <name>.strata-new
};
std::string_view to_string(Action action);

inline constexpr std::string_view new_suffix = ".strata-new";

struct Decision {
    Verdict verdict = Verdict::Unchanged;
    Action action = Action::None;
    bool operator==(const Decision&) const = default;
};

// The verdict of one path: a = factory(A), b = factory(B), e = the instance's /etc; nullopt where
// the path is absent.
Decision decide(const std::optional<Fingerprint>& a, const std::optional<Fingerprint>& b,
                const std::optional<Fingerprint>& e);

// One path on the three sides; path is relative to etc ("ssh/sshd_config").
struct PathState {
    std::string path;
    std::optional<Fingerprint> a, b, e;
};

struct Change {
    std::string path;  // relative to etc
    Verdict verdict = Verdict::Unchanged;
    Action action = Action::None;
    bool operator==(const Change&) const = default;
};

// decide() for every path, then the rules between paths (see the file comment). populated: /etc
// exists and is not empty; otherwise every action is None. The result is in tree order (a
// directory before what it contains).
std::vector<Change> plan(std::vector<PathState> states, bool populated);

// Counts per verdict, and the paths in conflict.
struct Summary {
    size_t unchanged = 0, vendor_changed = 0, admin_changed = 0, conflicts = 0, added = 0, removed = 0;
    std::vector<std::string> conflict_paths;
};
Summary summarize(const std::vector<Change>& changes);

// The three trees of a merge; a and b are factory etc dirs, e the instance's etc (nullopt when
// the instance has none).
struct Trees {
    const Dir& a;
    const Dir& b;
    const Dir* e = nullptr;
};

// Walks the three trees together (without following symlinks) and fingerprints every path.
// Entries named like strata's own temporaries (".#strata.") are left out.
std::vector<PathState> scan(const Trees& trees);

// Whether an etc dir counts as populated: it exists and has an entry.
bool populated(const Dir* etc);

// Carries out the plan in trees.e: entries of B are copied with their content, mode, owner and
// xattrs into temporaries beside their targets, fsynced, and only then renamed in (RENAME_EXCHANGE
// where a directory and a non-directory swap places). A failure while staging removes the
// temporaries and leaves /etc unchanged.
void apply(const Trees& trees, const std::vector<Change>& changes);

// What a merge did: the plan (every path with its verdict and action) and its counts.
struct MergeReport {
    std::string from, to;                // the usr names merged from and to
    std::optional<std::string> skipped;  // set when nothing was compared, with the reason
    std::vector<Change> changes;
    Summary summary;
};

// A path under /etc as the user gives it ("/etc/ssh/sshd_config" or "ssh/sshd_config"), made
// relative to /etc; "..", paths outside /etc and /etc itself are refused (Fault::InvalidInput).
std::string etc_relative_path(std::string_view path);

// Copies the entries at `paths` (relative to etc, see etc_relative_path) from one etc dir into
// another, replacing what is there: each one staged complete under a temporary name first, then
// renamed in. A source that does not exist, or a target directory that does not, is refused
// (Fault::NotFound) before anything is changed.
void copy_paths(const Dir& from_etc, const Dir& to_etc, const std::vector<std::string>& paths);

}  // namespace strata::factory
