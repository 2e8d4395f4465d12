#include "deploy/root.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include "base/error.hpp"
#include "naming/arch.hpp"
#include "boot/entries.hpp"
#include "btrfs/subvolume.hpp"
#include "deploy/database.hpp"
#include "deploy/reset.hpp"
#include "pool/staging.hpp"
#include "vendor/remove.hpp"

namespace strata::deploy {
namespace {

struct SkeletonDir {
    const char* name;
    mode_t mode;
};

// The mount points and state directories of a merged-usr system (file-hierarchy(7)).
constexpr SkeletonDir skeleton_dirs[] = {
    {"usr", 0755}, {"etc", 0755}, {"var", 0755},  {"home", 0755}, {"root", 0700}, {"tmp", 01777},
    {"run", 0755}, {"proc", 0555}, {"sys", 0555}, {"dev", 0755},  {"boot", 0755}, {"efi", 0755},
    {"mnt", 0755}, {"srv", 0755}, {"opt", 0755},
};

void make_skeleton(const Dir& root, bool lib64) {
    for (const auto& d : skeleton_dirs) {
        check_errno(::mkdirat(root.fd(), d.name, d.mode), "create directory", root.path_of(d.name).string());
        // mkdir applies the umask; the skeleton's modes must not depend on the caller's.
        check_errno(::fchmodat(root.fd(), d.name, d.mode, 0), "set mode of", root.path_of(d.name).string());
    }
    std::vector<std::pair<const char*, const char*>> links = {
        {"bin", "usr/bin"}, {"sbin", "usr/sbin"}, {"lib", "usr/lib"}};
    if (lib64) links.emplace_back("lib64", "usr/lib64");
    for (const auto& [link, target] : links)
        check_errno(::symlinkat(target, root.fd(), link), "create symlink", root.path_of(link).string());
    check_errno(::fchmod(root.fd(), 0755), "set mode of", root.path().string());
}

}  // namespace

// Every new instance is a snapshot of a read-only skeleton, one per layout, kept in
// .strata/skeletons/ and made on first use: built under a temporary name, renamed into place,
// then marked read-only (a read-only subvolume cannot change directory). A crash leaves a
// temporary, removed on the next call, or a complete skeleton not yet read-only, finished then.
std::string root_skeleton(const pool::Pool& pool, const pool::Lock&, const naming::Name& root) {
    const auto arch = naming::find_arch(root.arch());
    const bool lib64 = arch && arch->has_lib64;
    const std::string name = lib64 ? "merged-usr-lib64" : "merged-usr";
    const Dir dir = pool.hidden().make_dir("skeletons", 0700);
    for (const auto& entry : dir.entries())
        if (entry.starts_with(".tmp-")) btrfs::delete_subvolume(dir, entry);
    if (!dir.stat(name)) {
        const std::string temp = ".tmp-" + name;
        btrfs::create_subvolume(dir, temp);
        make_skeleton(dir.open_dir(temp), lib64);
        btrfs::sync(dir);
        dir.rename(temp, dir, name);
    }
    const Dir made = dir.open_dir(name);
    if (!btrfs::read_only(made)) btrfs::set_read_only(made, true);
    return std::string(pool::hidden_dir) + "/skeletons/" + name;
}

void create_root(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name) {
    with_context("create root", name.str(), [&] {
        if (name.kind() != naming::Kind::Root)
            throw Error("", "", "not a root instance name (root:<name>:<vendor-id>:<arch>)", Fault::InvalidInput);
        pool.require_absent(name, pool::OnConflict::Fail);
        auto staged = pool.stage_snapshot(lock, name, root_skeleton(pool, lock, name));
        staged.publish(pool::Access::Writable);
    });
}

namespace {

naming::Name require_existing_root(const pool::Pool& pool, const naming::Name& name) {
    if (name.kind() != naming::Kind::Root)
        throw Error("", "", "not a root instance name (root:<name>:<vendor-id>:<arch>)", Fault::InvalidInput);
    if (!pool.find(name.str())) throw Error("", "", "no such root instance in the pool", Fault::NotFound);
    return name;
}

}  // namespace

void clone_root(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& source, const naming::Name& clone,
                bool keep_machine_id) {
    with_context("clone root", source.str(), [&] {
        require_existing_root(pool, source);
        if (clone.kind() != naming::Kind::Root || clone.vendor_id() != source.vendor_id() || clone.arch() != source.arch())
            throw Error("", "", "the clone '" + clone.str() + "' must be a root instance of the same vendor and arch",
                        Fault::InvalidInput);
        auto staged = pool.stage_snapshot(lock, clone, source.str());
        if (!keep_machine_id) {
            if (const auto etc = staged.dir().try_open_dir("etc"); etc && etc->stat("machine-id"))
                etc->unlink("machine-id");
        }
        staged.publish(pool::Access::Writable);
    });
}

void remove_root(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name, const Dir* boot_dir) {
    with_context("remove root", name.str(), [&] {
        require_existing_root(pool, name);
        if (const auto uses = vendor::uses_of(pool, name.str()); !uses.empty())
            throw Error("", "", "in use (" + uses.front() + ")", Fault::InUse);
        Database db = load_database(pool);
        if (boot_dir) {
            const std::string uuid = btrfs::format_uuid(btrfs::filesystem_uuid(pool.top()));
            for (const auto& file : boot::list_entries(*boot_dir)) {
                std::string options;
                for (const auto& o : file.entry.options) options += " " + o + " ";
                if (options.find(" root=UUID=" + uuid + " ") != std::string::npos &&
                    options.find(" rootflags=subvol=" + name.str() + " ") != std::string::npos)
                    boot::remove_entry(*boot_dir, file.name.id);
            }
        }
        // Entries go first, the subvolume last: a crash in between leaves debris, never an entry
        // that boots a missing root.
        const auto record = db.roots.find(name.str());
        std::vector<std::string> states;
        if (record != db.roots.end()) {
            for (const auto& [usr, path] : record->second.states) states.push_back(path);
            db.roots.erase(record);
            save_database(pool, lock, db);
        }
        for (const auto& path : states) {
            const auto slash = path.rfind('/');
            if (const auto dir = pool.top().try_open_dir(path.substr(0, slash)); dir && dir->stat(path.substr(slash + 1)))
                btrfs::delete_subvolume(*dir, path.substr(slash + 1));
        }
        forget_resets(pool, name);
        btrfs::delete_subvolume(pool.top(), name.str());
        btrfs::sync(pool.top());
    });
}

}  // namespace strata::deploy
