#include "deploy/remove.hpp"

#include <set>
#include <utility>

#include "boot/entries.hpp"
#include "boot/kernel.hpp"
#include "deploy/database.hpp"

namespace strata::deploy {
namespace {

// The kernel copies of removed usr versions ($BOOT/<vendor>/<version>/), unless a usr of the same
// vendor and version (another arch) is still in the pool: the rule gc applies.
void remove_unused_kernels(const pool::Pool& pool, const BootTarget& target, const std::vector<vendor::Removal>& removed) {
    std::set<std::pair<std::string, std::string>> remaining;
    for (const auto& s : pool.list())
        if (s.typed && s.typed->kind() == naming::Kind::Usr)
            remaining.emplace(s.typed->vendor_id(), s.typed->version());
    for (const auto& r : removed) {
        const auto name = naming::Name::try_parse(r.name);
        if (!name || name->kind() != naming::Kind::Usr) continue;
        if (!remaining.contains({std::string(name->vendor_id()), std::string(name->version())}))
            boot::remove_kernel(target.boot, name->vendor_id(), name->version());
    }
}

}  // namespace

std::vector<vendor::Removal> remove_vendor_trees(const pool::Pool& pool, const pool::Lock& lock, const BootTarget* target,
                                                 const std::vector<std::string>& names, bool force, bool dry_run) {
    const auto st = target ? status(pool, *target) : Status{};
    Database db = load_database(pool);
    auto deployment_uses = [&](std::string_view name) {
        std::vector<std::string> uses;
        for (const auto& d : st.deployments)
            if (d.usr == name) uses.push_back("boot entry '" + d.id + "'" + (d.is_default ? " (default of " + d.root + ")" : ""));
        for (const auto& [root, rec] : db.roots) {
            if (rec.usr == name && uses.empty()) uses.push_back("default of " + root);
            if (rec.pinned.contains(std::string(name))) uses.push_back("pinned by " + root);
        }
        return uses;
    };
    // Everything is checked first (a dry run): all named trees go, or none.
    const auto plan = vendor::remove_vendor_trees(pool, lock, names, {.force = force, .dry_run = true, .more_uses = deployment_uses});
    if (dry_run) return plan;
    for (const auto& r : plan) {
        for (const auto& d : st.deployments)
            if (d.usr == r.name) boot::remove_entry(target->boot, d.id);
        for (auto& [root, rec] : db.roots) {
            if (rec.usr == r.name) rec.usr.clear();
            if (rec.previous == r.name) rec.previous.clear();
            rec.pinned.erase(r.name);
            rec.states.erase(r.name);  // its snapshot becomes unlinked; gc removes it
        }
    }
    if (!plan.empty()) save_database(pool, lock, db);
    auto removed = vendor::remove_vendor_trees(pool, lock, names, {.force = true, .dry_run = false, .more_uses = {}});
    if (target) remove_unused_kernels(pool, *target, removed);
    return removed;
}

}  // namespace strata::deploy
