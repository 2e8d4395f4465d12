#include "deploy/gc.hpp"

#include <sys/statvfs.h>
#include <time.h>

#include <algorithm>
#include <map>
#include <set>

#include "base/crash.hpp"
#include "base/error.hpp"
#include "base/process.hpp"
#include "boot/entries.hpp"
#include "boot/kernel.hpp"
#include "btrfs/subvolume.hpp"
#include "deploy/database.hpp"
#include "deploy/reset.hpp"
#include "naming/version.hpp"
#include "vendor/remove.hpp"

namespace strata::deploy {
namespace {

uint64_t free_bytes(const Dir& dir) {
    struct statvfs st {};
    if (::fstatvfs(dir.fd(), &st) < 0) return 0;
    return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

// usr names gc must keep whatever the retention says.
std::set<std::string> protected_usr(const pool::Pool& pool, const Status& st, const Database& db) {
    std::set<std::string> keep;
    for (const auto& [root, rec] : db.roots) {
        if (!rec.usr.empty()) keep.insert(rec.usr);
        keep.insert(rec.pinned.begin(), rec.pinned.end());
    }
    if (st.booted) keep.insert(st.booted->usr);
    std::map<std::string, const Deployment*> newest_good;  // by root
    std::set<std::string> roots_on_trial;
    for (const auto& d : st.deployments) {
        if (d.state != boot::BootState::Good) {
            keep.insert(d.usr);
            roots_on_trial.insert(d.root);
        } else {
            newest_good[d.root] = &d;  // deployments are in version order
        }
    }
    for (const auto& root : roots_on_trial)
        if (const auto it = newest_good.find(root); it != newest_good.end()) keep.insert(it->second->usr);
    // Anything mounted (a usr some running system uses) stays too.
    for (const auto& s : pool.list())
        if (s.typed && s.typed->kind() == naming::Kind::Usr && !vendor::uses_of(pool, s.name).empty())
            keep.insert(s.name);
    return keep;
}

}  // namespace

GcReport gc(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target, const GcOptions& options) {
    return with_context("gc", pool.path().string(), [&] {
        Database db = load_database(pool);
        const Status st = status(pool, target);
        const auto keep_always = protected_usr(pool, st, db);
        const uint64_t free_before = free_bytes(pool.top()) + free_bytes(target.boot);

        // Retention: the newest `keep` of every usr series; list order has the newest last.
        std::map<std::string, std::vector<std::string>> series;
        for (const auto& s : pool.list())
            if (s.typed && s.typed->kind() == naming::Kind::Usr)
                series[std::string(s.typed->vendor_id()) + ":" + std::string(s.typed->arch())].push_back(s.name);
        GcReport report;
        for (const auto& [key, names] : series) {
            const size_t old = names.size() > options.keep ? names.size() - options.keep : 0;
            for (size_t i = 0; i < old; ++i)
                if (!keep_always.contains(names[i])) report.usr.push_back(names[i]);
        }
        const std::set<std::string> doomed(report.usr.begin(), report.usr.end());

        // Entries of removed usr trees; and state snapshots linked to them or to nothing.
        std::set<std::string> used_kernels;
        for (const auto& d : st.deployments) {
            if (doomed.contains(d.usr)) report.entries.push_back(d.id);
            else {
                const auto usr = naming::Name::parse(d.usr);
                used_kernels.insert(std::string(usr.vendor_id()) + "/" + std::string(usr.version()));
            }
        }
        std::set<std::string> linked;
        for (auto& [root, rec] : db.roots) {
            for (auto it = rec.states.begin(); it != rec.states.end();) {
                if (doomed.contains(it->first)) it = rec.states.erase(it);
                else linked.insert((it++)->second);
            }
            if (doomed.contains(rec.previous)) rec.previous.clear();
        }
        const Dir hidden = pool.hidden();
        if (const auto states = hidden.try_open_dir(state_dir))
            for (const auto& name : states->entries()) {
                const std::string path = std::string(pool::hidden_dir) + "/" + std::string(state_dir) + "/" + name;
                if (!linked.contains(path)) report.states.push_back(path);
            }
        std::set<std::string> tokens;
        for (const auto& [key, names] : series) tokens.insert(key.substr(0, key.find(':')));
        for (const auto& token : tokens)
            for (const auto& version : boot::installed_kernel_versions(target.boot, token))
                if (!used_kernels.contains(token + "/" + version)) report.kernels.push_back(token + "/" + version);
        const int64_t undo_limit = static_cast<int64_t>(::time(nullptr)) - int64_t{options.reset_undo_days} * 86400;
        std::vector<UndoCopy> old_resets;
        for (const auto& u : reset_undo_copies(pool))
            if (u.root.empty() || !pool.find(u.root) || u.time <= undo_limit) {
                report.resets.push_back(u.path);
                old_resets.push_back(u);
            }
        if (options.dry_run) return report;

        // Entries first: from here on nothing can boot what goes next.
        for (const auto& id : report.entries) boot::remove_entry(target.boot, id);
        crash_point("gc:entries");
        save_database(pool, lock, db);
        crash_point("gc:database");
        for (const auto& k : report.kernels) {
            const auto slash = k.find('/');
            boot::remove_kernel(target.boot, k.substr(0, slash), k.substr(slash + 1));
        }
        crash_point("gc:kernels");
        for (const auto& path : report.states) {
            const auto slash = path.rfind('/');
            btrfs::delete_subvolume(Dir::open(pool.top().path_of(path.substr(0, slash))), path.substr(slash + 1));
        }
        for (const auto& u : old_resets) remove_reset_undo(pool, u);
        crash_point("gc:states");
        for (const auto& name : report.usr) btrfs::delete_subvolume(pool.top(), name);
        if (report.usr.empty() && report.states.empty() && report.resets.empty()) return report;
        btrfs::sync(pool.top());
        if (options.wait_for_cleaner) {
            run_process({"btrfs", "subvolume", "sync", pool.path().string()});
            const uint64_t free_after = free_bytes(pool.top()) + free_bytes(target.boot);
            report.freed_bytes = free_after > free_before ? free_after - free_before : 0;
        }
        return report;
    });
}

}  // namespace strata::deploy
