#include "vendor/remove.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "base/error.hpp"
#include "btrfs/subvolume.hpp"
#include "mount/mount.hpp"

namespace strata::vendor {
namespace {

bool names_subvolume(std::string_view path, std::string_view name) {
    if (path.starts_with('/')) path.remove_prefix(1);
    return path == name || (path.starts_with(name) && path.size() > name.size() && path[name.size()] == '/');
}

// rootflags=subvol=X and mount.usrflags=...,subvol=X name the subvolumes a booted system uses.
bool on_kernel_command_line(std::string_view name) {
    std::ifstream in("/proc/cmdline");
    std::string word;
    while (in >> word) {
        const auto eq = word.find('=');
        if (eq == std::string::npos) continue;
        const std::string key = word.substr(0, eq);
        if (key != "rootflags" && key != "mount.usrflags") continue;
        std::stringstream options(word.substr(eq + 1));
        std::string option;
        while (std::getline(options, option, ','))
            if (option.starts_with("subvol=") && names_subvolume(std::string_view(option).substr(7), name)) return true;
    }
    return false;
}

Removal check(const pool::Pool& pool, const std::string& name, const RemoveOptions& options) {
    const auto found = pool.find(name);
    if (!found) naming::Name::parse(name);  // a typo gets the parser's explanation, not "not found"
    return with_context("remove", name, [&] {
        if (!found) throw Error("", "", "no such subvolume in the pool", Fault::NotFound);
        if (!found->typed || !found->typed->is_vendor_tree())
            throw Error("", "", "not a vendor tree (root instances go with 'strata root remove')", Fault::InvalidInput);
        const Dir dir = pool.top().open_dir(name);
        const auto nested = btrfs::children(dir);
        if (!nested.empty())
            throw Error("", "",
                        "contains nested subvolume '" + nested.front().path +
                            "', which strata did not make; delete it yourself first",
                        Fault::Failed);
        Removal removal{name, uses_of(pool, name)};
        if (options.more_uses)
            for (auto& use : options.more_uses(name)) removal.in_use.push_back(std::move(use));
        if (!removal.in_use.empty() && !options.force)
            throw Error("", "", "in use (" + removal.in_use.front() + "); --force removes it anyway", Fault::InUse);
        return removal;
    });
}

}  // namespace

std::vector<std::string> uses_of(const pool::Pool& pool, std::string_view name) {
    std::vector<std::string> uses;
    const auto pool_mount = mount::find_mount(pool.path());
    for (const auto& m : mount::list_mounts()) {
        if (m.fstype != "btrfs" || !pool_mount || m.source != pool_mount->source) continue;
        if (names_subvolume(m.fs_root, name)) uses.push_back("mounted at " + m.target);
    }
    if (on_kernel_command_line(name)) uses.emplace_back("booted: on the kernel command line");
    return uses;
}

std::vector<Removal> remove_vendor_trees(const pool::Pool& pool, const pool::Lock&,
                                         const std::vector<std::string>& names, const RemoveOptions& options) {
    std::vector<Removal> plan;
    for (const auto& name : names) {
        if (std::any_of(plan.begin(), plan.end(), [&](const Removal& r) { return r.name == name; })) continue;
        plan.push_back(check(pool, name, options));
    }
    if (options.dry_run) return plan;
    for (const auto& r : plan)
        with_context("remove", r.name, [&] { btrfs::delete_subvolume(pool.top(), r.name); });
    btrfs::sync(pool.top());
    return plan;
}

}  // namespace strata::vendor
