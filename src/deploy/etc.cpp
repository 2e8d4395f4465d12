#include "deploy/etc.hpp"

#include <filesystem>

#include "base/error.hpp"
#include "base/escape.hpp"
#include "btrfs/subvolume.hpp"
#include "deploy/database.hpp"

namespace strata::deploy {
namespace {

naming::Name existing_root(const pool::Pool& pool, std::string_view name) {
    const auto parsed = naming::Name::parse(name);
    if (parsed.kind() != naming::Kind::Root)
        throw Error("", "", "not a root instance name (root:<name>:<vendor-id>:<arch>)", Fault::InvalidInput);
    if (!pool.find(parsed.str())) throw Error("", "", "no such root instance in the pool", Fault::NotFound);
    return parsed;
}

// The usr `version` of the root's vendor and arch, or the newest one.
naming::Name target_usr(const pool::Pool& pool, const naming::Name& root,
                        const std::optional<std::string>& version) {
    std::optional<naming::Name> chosen;
    for (const auto& s : pool.list()) {
        if (!s.typed || s.typed->kind() != naming::Kind::Usr || s.typed->vendor_id() != root.vendor_id() ||
            s.typed->arch() != root.arch() || !s.info.read_only())
            continue;
        if (!version || s.typed->version() == *version) chosen = *s.typed;  // list order: newest last
    }
    const std::string series = "usr:" + std::string(root.vendor_id()) + ":" + std::string(root.arch());
    if (!chosen)
        throw Error("", "", "no " + series + ":" + version.value_or("*") + " in the pool", Fault::NotFound);
    return *chosen;
}

// A deployment's /etc: the live root's when the deployment is its root's default, else the
// state snapshot kept for it. `snapshot` gets the snapshot's pool path in the second case.
std::filesystem::path state_of(const Database& db, const Deployment& d,
                               std::optional<std::string>& snapshot) {
    const auto it = db.roots.find(d.root);
    if (it != db.roots.end() && it->second.usr == d.usr) return d.root;
    if (it != db.roots.end())
        if (const auto s = it->second.states.find(d.usr); s != it->second.states.end()) {
            snapshot = s->second;
            return s->second;
        }
    throw Error("", "",
                "deployment '" + d.id +
                    "' has no state of its own: it is not its root's default and no "
                    "state snapshot was kept for it",
                Fault::NotFound);
}

const Deployment& find_deployment(const Status& st, std::string_view id) {
    for (const auto& d : st.deployments)
        if (d.id == id) return d;
    throw Error("", "", "no such deployment '" + std::string(id) + "' (see 'strata status')",
                Fault::NotFound);
}

// A writable snapshot beside a read-only one, deleted unless it was swapped in.
class Rewrite {
   public:
    Rewrite(const Dir& parent, std::string name)
        : parent_(&parent), name_(std::move(name)), temp_(name_ + ".sync") {
        // Debris of a crashed sync; gc would remove it too, as no record links it.
        if (parent_->stat(temp_)) btrfs::delete_subvolume(*parent_, temp_);
        btrfs::snapshot(*parent_, name_, *parent_, temp_, btrfs::SnapshotFlags::None);
        tree_ = parent_->open_dir(temp_);
    }
    Rewrite(const Rewrite&) = delete;
    Rewrite& operator=(const Rewrite&) = delete;
    ~Rewrite() {
        try {
            tree_.reset();
            btrfs::delete_subvolume(*parent_, temp_);
        } catch (const Error&) {  // an unlinked snapshot: gc removes it
        }
    }
    const Dir& tree() const { return *tree_; }
    // Read-only again, then one rename: the snapshot's name shows the old or the new tree.
    void swap_in() {
        btrfs::set_read_only(*tree_, true);
        btrfs::sync(*tree_);
        parent_->exchange(temp_, *parent_, name_);
    }

   private:
    const Dir* parent_;
    std::string name_, temp_;
    std::optional<Dir> tree_;
};

}  // namespace

factory::MergeReport merge_etc(const pool::Pool& pool, const naming::Name& root, const naming::Name& from,
                               const naming::Name& to, bool apply) {
    factory::MergeReport report;
    report.from = from.str();
    report.to = to.str();
    const auto factory_of = [&](const naming::Name& usr) -> std::optional<Dir> {
        const auto tree = pool.top().try_open_dir(usr.str());
        if (!tree) throw Error("", "", "usr '" + usr.str() + "' is not in the pool", Fault::NotFound);
        const auto st = tree->stat(factory_etc_dir);
        if (!st || !S_ISDIR(st->st_mode)) return std::nullopt;
        return tree->open_dir(factory_etc_dir);
    };
    const auto a = factory_of(from);
    const auto b = factory_of(to);
    if (!a || !b) {
        report.skipped = "'" + (a ? to : from).str() + "' has no " + std::string(factory_etc_dir);
        return report;
    }
    return with_context("merge /etc for", to.str(), [&] {
        const Dir root_tree = pool.top().open_dir(root.str());
        const auto etc = root_tree.try_open_dir("etc");
        // Nothing to merge into: the first boot copies the new factory. Not walking both factory
        // trees spares a deploy of a root that never booted (an image being built, a fresh
        // install) a cold read of every vendor config file twice.
        if (apply && !factory::populated(etc ? &*etc : nullptr)) {
            report.skipped = "/etc of '" + root.str() + "' is empty: the first boot populates it from '" + to.str() +
                             "'";
            return report;
        }
        const factory::Trees trees{*a, *b, etc ? &*etc : nullptr};
        report.changes = factory::plan(factory::scan(trees), factory::populated(trees.e));
        report.summary = factory::summarize(report.changes);
        if (apply) factory::apply(trees, report.changes);
        return report;
    });
}

factory::MergeReport etc_diff(const pool::Pool& pool, std::string_view root_name,
                              const std::optional<std::string>& version) {
    return with_context("etc diff", root_name, [&] {
        const auto root = existing_root(pool, root_name);
        const Database db = load_database(pool);
        const auto it = db.roots.find(root.str());
        if (it == db.roots.end() || it->second.usr.empty())
            throw Error("", "",
                        "not deployed yet, so there is no current usr to compare with (see 'strata deploy')",
                        Fault::NotFound);
        const auto from = naming::Name::parse(it->second.usr);
        return merge_etc(pool, root, from, target_usr(pool, root, version), /*apply=*/false);
    });
}

EtcSync etc_sync(const pool::Pool& pool, const pool::Lock& lock, const BootTarget& target,
                 std::string_view from, std::string_view to, const std::vector<std::string>& paths) {
    (void)lock;  // the proof that nobody else changes the snapshots meanwhile
    try {
        if (paths.empty()) throw Error("", "", "no paths to copy", Fault::InvalidInput);
        EtcSync result{std::string(from), std::string(to), {}, {}};
        for (const auto& p : paths) result.paths.push_back(factory::etc_relative_path(p));
        const Status st = status(pool, target);
        const auto& src = find_deployment(st, from);
        const auto& dst = find_deployment(st, to);
        if (src.id == dst.id)
            throw Error("", "", "--from and --to name the same deployment", Fault::InvalidInput);
        const Database db = load_database(pool);
        std::optional<std::string> src_snapshot, dst_snapshot;
        const Dir src_tree = pool.top().open_dir(state_of(db, src, src_snapshot).string());
        const auto dst_path = state_of(db, dst, dst_snapshot);
        const Dir src_etc = src_tree.open_dir("etc");
        result.target = dst_path.string();
        if (!dst_snapshot) {
            factory::copy_paths(src_etc, pool.top().open_dir(dst_path.string()).open_dir("etc"),
                                result.paths);
            return result;
        }
        const Dir parent = pool.top().open_dir(dst_path.parent_path().string());
        Rewrite rewrite(parent, dst_path.filename().string());
        factory::copy_paths(src_etc, rewrite.tree().open_dir("etc"), result.paths);
        rewrite.swap_in();
        return result;
    } catch (Error& e) {
        e.within("etc sync '" + escape(from) + "' to '" + escape(to) + "'");
        throw;
    }
}

}  // namespace strata::deploy
