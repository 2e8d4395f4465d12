#include "deploy/deployment.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "base/crash.hpp"
#include "base/error.hpp"
#include "boot/entries.hpp"
#include "boot/kernel.hpp"
#include "boot/loader.hpp"
#include "btrfs/subvolume.hpp"
#include "deploy/database.hpp"
#include "deploy/etc.hpp"
#include "naming/arch.hpp"
#include "mount/mount.hpp"
#include "naming/version.hpp"
#include "pool/staging.hpp"
#include "vendor/remove.hpp"

namespace strata::deploy {

std::string deployment_id(const naming::Name& root, const naming::Name& usr) {
    // The arch comes last: no arch contains '.' or '+', so no other id starts with "<id>." or
    // "<id>+", which keeps the loader's glob for this id (boot/loader.hpp) from matching others.
    return boot::make_entry_id({usr.vendor_id(), root.id(), usr.version(), usr.arch()});
}

namespace {

std::vector<std::string> words(std::string_view text) {
    std::istringstream in{std::string(text)};
    std::vector<std::string> out;
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

// The subvol= of "rootflags=..." or "mount.usrflags=..." in a list of kernel options.
std::optional<std::string> subvol_option(const std::vector<std::string>& options, std::string_view key) {
    const std::string prefix = std::string(key) + "=";
    for (const auto& o : options) {
        if (!o.starts_with(prefix)) continue;
        std::istringstream flags(o.substr(prefix.size()));
        for (std::string flag; std::getline(flags, flag, ',');) {
            if (!flag.starts_with("subvol=")) continue;
            std::string value = flag.substr(7);
            if (value.starts_with('/')) value.erase(0, 1);
            return value;
        }
    }
    return std::nullopt;
}

std::string fs_uuid(const pool::Pool& pool) { return btrfs::format_uuid(btrfs::filesystem_uuid(pool.top())); }

bool names_this_pool(const std::vector<std::string>& options, const std::string& uuid) {
    return std::find(options.begin(), options.end(), "root=UUID=" + uuid) != options.end();
}

naming::Name require_root(const pool::Pool& pool, std::string_view name) {
    const auto parsed = naming::Name::parse(name);
    if (parsed.kind() != naming::Kind::Root)
        throw Error("", "", "not a root instance name (root:<name>:<vendor-id>:<arch>)", Fault::InvalidInput);
    if (!pool.find(parsed.str())) throw Error("", "", "no such root instance in the pool", Fault::NotFound);
    return parsed;
}

// The usr trees a root can run: its vendor's, for its arch, read-only; oldest first.
std::vector<naming::Name> usr_candidates(const pool::Pool& pool, const naming::Name& root) {
    std::vector<naming::Name> out;
    for (const auto& s : pool.list())
        if (s.typed && s.typed->kind() == naming::Kind::Usr && s.typed->vendor_id() == root.vendor_id() &&
            s.typed->arch() == root.arch() && s.info.read_only())
            out.push_back(*s.typed);
    return out;  // list order: version order within the series
}

naming::Name choose_usr(const pool::Pool& pool, const naming::Name& root, const std::optional<std::string>& version) {
    const auto candidates = usr_candidates(pool, root);
    const std::string series = "usr:" + std::string(root.vendor_id()) + ":" + std::string(root.arch());
    if (candidates.empty()) throw Error("", "", "no " + series + ":* in the pool to deploy", Fault::NotFound);
    if (!version) return candidates.back();
    for (const auto& c : candidates)
        if (c.version() == *version) return c;
    throw Error("", "", "no " + series + ":" + *version + " in the pool", Fault::NotFound);
}

std::string read_first_line(const Dir& dir, std::string_view name) {
    if (!dir.stat(name)) return {};
    const std::string text = read_file(dir, name);
    return text.substr(0, text.find('\n'));
}

// PRETTY_NAME from the usr tree's os-release (the usr subvolume is /usr: lib/os-release).
std::string os_title(const Dir& usr_tree, const naming::Name& usr) {
    if (usr_tree.stat("lib/os-release")) {
        std::istringstream in(read_file(usr_tree, "lib/os-release"));
        for (std::string line; std::getline(in, line);) {
            if (!line.starts_with("PRETTY_NAME=")) continue;
            std::string value = line.substr(12);
            if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'')) value = value.substr(1, value.size() - 2);
            if (!value.empty()) return value;
        }
    }
    return std::string(usr.vendor_id());
}

std::string machine_id(const Dir& root_tree) {
    const std::string id = read_first_line(root_tree, "etc/machine-id");
    const bool valid = id.size() == 32 && std::all_of(id.begin(), id.end(), [](char c) {
                           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                       });
    return valid ? id : std::string();
}

boot::Entry make_entry(const pool::Pool& pool, const BootTarget& target, const RootRecord& rec,
                       const naming::Name& root, const naming::Name& usr, const boot::InstalledKernel& kernel) {
    const Dir usr_tree = pool.top().open_dir(usr.str());
    const Dir root_tree = pool.top().open_dir(root.str());
    boot::Entry e;
    e.title = os_title(usr_tree, usr) + " (" + std::string(root.id()) + ")";
    e.version = std::string(usr.version());
    e.machine_id = machine_id(root_tree);
    e.sort_key = std::string(usr.vendor_id());
    e.linux = kernel.linux;
    if (!kernel.initrd.empty()) e.initrd.push_back(kernel.initrd);
    if (const auto arch = naming::find_arch(usr.arch())) e.architecture = std::string(arch->efi_name);
    std::string options = "root=UUID=" + fs_uuid(pool) + " rootflags=subvol=" + root.str() +
                          " mount.usrflags=ro,subvol=" + usr.str() + " rw";
    for (const auto& a : target.kernel_args) options += " " + a;
    for (const auto& a : rec.kernel_args) options += " " + a;
    e.options.push_back(options);
    return e;
}

// Keeps the root's state as it is now, read-only, under .strata/state/, for the pair it leaves.
std::string snapshot_state(const pool::Pool& pool, const naming::Name& root, const naming::Name& usr) {
    const Dir states = pool.hidden().make_dir(state_dir, 0700);
    const std::string base = root.str() + "@" + std::string(usr.version());
    std::string name = base;
    for (int n = 2; states.stat(name); ++n) name = base + "." + std::to_string(n);
    btrfs::snapshot(pool.top(), root.str(), states, name, btrfs::SnapshotFlags::ReadOnly);
    return std::string(pool::hidden_dir) + "/" + std::string(state_dir) + "/" + name;
}

// The root's state back from a kept snapshot: a writable snapshot of it swapped in for the root.
void restore_state(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& root, const std::string& snapshot) {
    auto staged = pool.stage_snapshot(lock, root, snapshot, pool::OnConflict::Replace);
    staged.publish(pool::Access::Writable);
}

void require_not_in_use(const pool::Pool& pool, const naming::Name& root, const BootTarget& target) {
    auto uses = vendor::uses_of(pool, root.str());
    (void)target;
    if (!uses.empty())
        throw Error("", "", "root '" + root.str() + "' is in use (" + uses.front() + "); its state cannot be swapped now",
                    Fault::InUse);
}

// / and /usr mounted from subvolumes of this pool, as a system booted from it has them. The mount
// table is read only when / is on the pool's filesystem at all: most hosts that run strata on a
// pool (image builders, a pool on a data disk) have / elsewhere, and that check is two syscalls.
std::optional<Booted> booted_from_mounts(const pool::Pool& pool) {
    const Dir slash = Dir::open("/");
    if (!btrfs::is_btrfs(slash) || btrfs::filesystem_uuid(slash) != btrfs::filesystem_uuid(pool.top()))
        return std::nullopt;
    const auto pool_mount = mount::find_mount(pool.path());
    if (!pool_mount) return std::nullopt;
    std::optional<std::string> root, usr;
    for (const auto& m : mount::list_mounts()) {
        if (m.fstype != "btrfs" || m.source != pool_mount->source || m.fs_root.size() < 2) continue;
        if (m.target == "/") root = m.fs_root.substr(1);
        if (m.target == "/usr") usr = m.fs_root.substr(1);
    }
    if (!root || !usr) return std::nullopt;
    return Booted{*root, *usr};
}

// The deployment the running system booted from, when it booted from this pool: the kernel
// command line (root=UUID= of this pool, rootflags= and mount.usrflags= subvolumes), else the
// mount table.
std::optional<Booted> find_booted(const pool::Pool& pool, const BootTarget& target) {
    std::ifstream cmdline_file(target.cmdline);
    std::string cmdline;
    std::getline(cmdline_file, cmdline);
    const auto cmd = words(cmdline);
    if (names_this_pool(cmd, fs_uuid(pool))) {
        const auto root = subvol_option(cmd, "rootflags"), usr = subvol_option(cmd, "mount.usrflags");
        if (root && usr) return Booted{*root, *usr};
    }
    return booted_from_mounts(pool);
}

// The boot loader's EFI variables belong to the running system and its ESP: they count only for
// a pool it booted from. For any other pool (an image, a disk for another machine) strata reads
// and writes the `default` of loader.conf on its $BOOT only, never the host's variables.
std::filesystem::path efivars_for(const std::optional<Booted>& booted, const BootTarget& target) {
    return booted ? target.efivars : std::filesystem::path();
}

// What the loader's default names. deploy follows the root: a glob over all the root's entries,
// of which the loader takes the newest that has tries left, so a new version that fails all its
// boot tries falls back to the newest one that still boots. set-default and rollback are a choice
// of one entry, which stays the default.
enum class DefaultKind { RootNewest, ThisEntry };

// The ids of all deployments of root: vendor, root and arch fix the first, second and last
// '+'-separated field, which no name contains (boot::make_entry_id). nullopt when the ids of the
// root are long enough to be cut (then only an exact default is safe).
std::optional<std::string> root_entry_pattern(const naming::Name& root, const naming::Name& usr) {
    if (deployment_id(root, usr).size() >= boot::max_entry_id_length) return std::nullopt;
    return boot::make_entry_id({usr.vendor_id(), root.id()}) + "+*+" + boot::make_entry_id({usr.arch()});
}

// The entry the loader would start if pattern were its default.
std::optional<std::string> picked_by(const BootTarget& target, const std::string& pattern) {
    return boot::select_entry(boot::list_entries(target.boot), std::nullopt, boot::loader_glob(pattern));
}

// The default for the entry `id` of (root, usr): the root's pattern when the loader would pick
// this entry by it (it is the root's newest), else the entry itself.
std::string default_pattern(const BootTarget& target, const naming::Name& root, const naming::Name& usr,
                            const std::string& id, DefaultKind kind) {
    if (kind == DefaultKind::ThisEntry) return id;
    const auto pattern = root_entry_pattern(root, usr);
    if (!pattern) return id;
    return picked_by(target, *pattern) == id ? *pattern : id;
}

// A default that follows the root's pattern would take up a new entry as soon as it is written,
// before the database knows the pair: until the last step, the entry the loader boots now is
// named instead.
void hold_default(const BootTarget& target, const std::filesystem::path& efivars, const naming::Name& root,
                  const naming::Name& usr) {
    const auto pattern = root_entry_pattern(root, usr);
    if (!pattern || boot::default_entry(loader_dir(target), efivars) != *pattern) return;
    if (const auto now = picked_by(target, *pattern)) boot::set_default_entry(loader_dir(target), *now, efivars);
}

// The one way a root changes its default deployment (deploy, set-default, rollback).
Deployment switch_to(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target, Database& db,
                     const naming::Name& root, const naming::Name& usr, bool with_state, DefaultKind kind,
                     bool merge = false) {
    RootRecord& rec = db.roots[root.str()];
    const auto efivars = efivars_for(find_booted(pool, target), target);
    const Dir usr_tree = pool.top().open_dir(usr.str());
    const auto kernel_source = boot::find_kernel(usr_tree);
    if (with_state) {
        if (!rec.states.contains(usr.str()))
            throw Error("", "", "no state snapshot was kept for '" + usr.str() + "'", Fault::NotFound);
        require_not_in_use(pool, root, target);
    }

    // The kernel first: a full or read-only $BOOT fails here, before anything else changed.
    const std::string token(usr.vendor_id());
    const auto kernel = boot::install_kernel(target.boot, token, usr.version(), usr_tree, kernel_source);
    crash_point("deploy:kernel");

    const bool leaving = !rec.usr.empty() && rec.usr != usr.str();
    std::optional<std::string> left_state;
    if (leaving || with_state) {
        const auto current = naming::Name::parse(rec.usr.empty() ? usr.str() : rec.usr);
        left_state = snapshot_state(pool, root, current);
        crash_point("deploy:state-snapshot");
    }
    if (with_state) {
        restore_state(pool, lock, root, rec.states.at(usr.str()));
        crash_point("deploy:state-restore");
    }
    // After the snapshot, so the pre-merge /etc stays with the pair the root leaves.
    std::optional<factory::MergeReport> etc;
    if (merge && leaving) {
        etc = merge_etc(pool, root, naming::Name::parse(rec.usr), usr, /*apply=*/true);
        crash_point("deploy:etc-merge");
    }

    const std::string id = deployment_id(root, usr);
    const auto entry = make_entry(pool, target, rec, root, usr, kernel);
    const auto existing = boot::find_entry(target.boot, id);
    if (!existing || boot::render(existing->entry) != boot::render(entry)) {
        hold_default(target, efivars, root, usr);
        boot::write_entry(target.boot, id, entry, target.tries == 0 ? std::nullopt : std::optional(target.tries));
    }
    crash_point("deploy:entry");

    if (left_state) rec.states[rec.usr.empty() ? usr.str() : rec.usr] = *left_state;
    if (leaving) rec.previous = rec.usr;
    rec.usr = usr.str();
    save_database(pool, lock, db);
    crash_point("deploy:database");

    boot::set_default_entry(loader_dir(target), default_pattern(target, root, usr, id, kind), efivars);
    crash_point("deploy:default");

    for (auto& d : status(pool, target).deployments)
        if (d.id == id) {
            d.etc = std::move(etc);
            return d;
        }
    throw Error("", "", "the new entry '" + id + "' is not listed");
}

struct Located {
    naming::Name root, usr;
};

Located locate(const pool::Pool& pool, const BootTarget& target, std::string_view id) {
    for (const auto& d : status(pool, target).deployments)
        if (d.id == id) {
            if (!pool.find(d.usr))
                throw Error("", "", "its usr '" + d.usr + "' is no longer in the pool", Fault::NotFound);
            return {naming::Name::parse(d.root), naming::Name::parse(d.usr)};
        }
    throw Error("", "", "no such deployment (see 'strata status')", Fault::NotFound);
}

}  // namespace


Deployment deploy(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target, const naming::Name& root,
                  const std::optional<std::string>& version, const std::optional<std::vector<std::string>>& extra_args) {
    return with_context("deploy", root.str(), [&] {
        require_root(pool, root.str());
        const auto usr = choose_usr(pool, root, version);
        Database db = load_database(pool);
        if (extra_args) db.roots[root.str()].kernel_args = *extra_args;
        return switch_to(pool, lock, target, db, root, usr, false, DefaultKind::RootNewest, /*merge=*/true);
    });
}

Status status(const pool::Pool& pool, const BootTarget& target) {
    Status st;
    const std::string uuid = fs_uuid(pool);
    const Database db = load_database(pool);
    st.booted = find_booted(pool, target);
    const auto efivars = efivars_for(st.booted, target);
    st.loader_default = boot::default_entry(loader_dir(target), efivars);
    const auto entries = boot::list_entries(target.boot);
    st.next_boot = boot::next_boot_entry(entries, loader_dir(target), efivars);

    for (const auto& file : entries) {
        std::vector<std::string> options;
        for (const auto& o : file.entry.options)
            for (auto& w : words(o)) options.push_back(std::move(w));
        if (!names_this_pool(options, uuid)) continue;
        const auto root = subvol_option(options, "rootflags"), usr = subvol_option(options, "mount.usrflags");
        if (!root || !usr) continue;
        Deployment d;
        d.id = file.name.id;
        d.root = *root;
        d.usr = *usr;
        d.version = file.entry.version;
        d.entry_file = file.file_name;
        d.state = file.name.state();
        d.tries_left = file.name.tries_left;
        if (const auto it = db.roots.find(*root); it != db.roots.end()) {
            d.is_default = it->second.usr == *usr;
            d.pinned = it->second.pinned.contains(*usr);
            if (const auto s = it->second.states.find(*usr); s != it->second.states.end()) d.state_snapshot = s->second;
        }
        d.booted = st.booted && st.booted->root == *root && st.booted->usr == *usr;
        st.deployments.push_back(std::move(d));
    }
    std::sort(st.deployments.begin(), st.deployments.end(), [](const Deployment& a, const Deployment& b) {
        if (a.root != b.root) return a.root < b.root;
        return naming::compare_versions(a.version, b.version) < 0;
    });
    return st;
}

Deployment set_default(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target, std::string_view id) {
    return with_context("set default", id, [&] {
        const auto where = locate(pool, target, id);
        Database db = load_database(pool);
        return switch_to(pool, lock, target, db, where.root, where.usr, false, DefaultKind::ThisEntry);
    });
}

Deployment rollback(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target,
                    const std::optional<std::string>& root_name, bool with_state) {
    Database db = load_database(pool);
    std::string name;
    if (root_name) {
        name = *root_name;
    } else if (const auto st = status(pool, target); st.booted) {
        name = st.booted->root;
    } else if (db.roots.size() == 1) {
        name = db.roots.begin()->first;
    } else {
        throw Error("rollback", "", "several root instances are deployed; name one", Fault::InvalidInput);
    }
    return with_context("rollback", name, [&] {
        const auto root = require_root(pool, name);
        const auto it = db.roots.find(root.str());
        if (it == db.roots.end() || it->second.previous.empty())
            throw Error("", "", "no previous deployment to roll back to", Fault::NotFound);
        const std::string previous = it->second.previous;
        if (!pool.find(previous))
            throw Error("", "", "the previous usr '" + previous + "' is no longer in the pool", Fault::NotFound);
        return switch_to(pool, lock, target, db, root, naming::Name::parse(previous), with_state, DefaultKind::ThisEntry);
    });
}

naming::Name choose_root(const pool::Pool& pool, const BootTarget* target, const std::optional<std::string>& given) {
    if (given && given->find(':') != std::string::npos) return naming::Name::parse(*given);
    std::vector<naming::Name> roots;
    for (const auto& s : pool.list())
        if (s.typed && s.typed->kind() == naming::Kind::Root) roots.push_back(*s.typed);
    if (given) {
        for (const auto& r : roots)
            if (r.id() == *given) return r;
        throw Error("", "", "no such root instance in the pool", Fault::NotFound);
    }
    if (target)
        if (const auto st = status(pool, *target); st.booted) return naming::Name::parse(st.booted->root);
    if (roots.size() != 1)
        throw Error("", "", roots.empty() ? "the pool has no root instance" : "the pool has several root instances: name one",
                    Fault::InvalidInput);
    return roots.front();
}

void boot_once(const pool::Pool& pool, const BootTarget& target, std::string_view id) {
    with_context("boot once", id, [&] {
        locate(pool, target, id);
        if (!find_booted(pool, target))
            throw Error("", "", "the running system did not boot from this pool; a one-shot entry is an EFI variable of "
                                "the running system (make it the default instead, docs/boot.md)",
                        Fault::InvalidInput);
        boot::set_oneshot_entry(id, target.efivars);
    });
}

void set_pinned(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target, std::string_view id,
                bool pinned) {
    with_context(pinned ? "pin" : "unpin", id, [&] {
        const auto where = locate(pool, target, id);
        Database db = load_database(pool);
        auto& set = db.roots[where.root.str()].pinned;
        if (pinned) set.insert(where.usr.str());
        else set.erase(where.usr.str());
        save_database(pool, lock, db);
    });
}

}  // namespace strata::deploy
