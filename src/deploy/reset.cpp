#include "deploy/reset.hpp"

#include <glob.h>
#include <stdlib.h>
#include <unistd.h>
#include <time.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <fstream>
#include <sstream>

#include "base/crash.hpp"
#include "base/error.hpp"
#include "base/process.hpp"
#include "btrfs/subvolume.hpp"
#include "deploy/database.hpp"
#include "deploy/root.hpp"
#include "factory/populate.hpp"
#include "mount/mount.hpp"
#include "vendor/remove.hpp"

namespace strata::deploy {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view request_suffix = ".request.json";
constexpr std::string_view record_file = "reset.json";
constexpr std::string_view old_root = "root";  // the old state inside an undo directory
constexpr std::string_view factory_rules = "lib/tmpfiles.d/strata-factory.conf";  // inside a usr tree

std::string reset_path(std::string_view name) {
    return std::string(pool::hidden_dir) + "/" + std::string(reset_dir) + "/" + std::string(name);
}

naming::Name require_root(const pool::Pool& pool, const naming::Name& root) {
    if (root.kind() != naming::Kind::Root)
        throw Error("", "", "not a root instance name (root:<name>:<vendor-id>:<arch>)", Fault::InvalidInput);
    if (!pool.find(root.str())) throw Error("", "", "no such root instance in the pool", Fault::NotFound);
    return root;
}

// Keep paths are what the admin wants to survive, so they must lie in what the level resets, and
// name it plainly: no "..", no "." components, no trailing slash games.
void check_keep(const std::vector<std::string>& keep, ResetLevel level) {
    for (const auto& k : keep) {
        const bool etc = k.starts_with("/etc/"), var = k.starts_with("/var/");
        const std::string scope = level == ResetLevel::Etc ? "/etc" : "/etc or /var";
        if (!(etc || (var && level != ResetLevel::Etc)))
            throw Error("", "", "keep path '" + k + "' is not below " + scope + ", which this reset clears",
                        Fault::InvalidInput);
        std::istringstream parts(k.substr(1));
        for (std::string part; std::getline(parts, part, '/');)
            if (part.empty() || part == "." || part == "..")
                throw Error("", "", "keep path '" + k + "' must be a plain absolute path (no '.', '..' or '//')",
                            Fault::InvalidInput);
    }
}

// The paths (relative, e.g. "etc/ssh/ssh_host_rsa_key") in `tree` that the keep globs match.
std::vector<std::string> kept_paths(const fs::path& tree, const std::vector<std::string>& keep) {
    std::vector<std::string> found;
    for (const auto& pattern : keep) {
        glob_t g{};
        const std::string full = tree.string() + pattern;
        const int rc = ::glob(full.c_str(), GLOB_NOSORT, nullptr, &g);
        if (rc == 0)
            for (size_t i = 0; i < g.gl_pathc; ++i) found.emplace_back(g.gl_pathv[i] + tree.string().size() + 1);
        ::globfree(&g);
        if (rc != 0 && rc != GLOB_NOMATCH) throw Error("expand keep path", pattern, "glob failed", Fault::Failed);
    }
    std::sort(found.begin(), found.end());
    found.erase(std::unique(found.begin(), found.end()), found.end());
    return found;
}

void clear_contents(const Dir& tree, std::string_view dir) {
    const auto d = tree.try_open_dir(dir);
    if (!d) return;
    for (const auto& entry : d->entries()) {
        std::error_code ec;
        fs::remove_all(d->path_of(entry), ec);
        if (ec) throw Error("clear", d->path_of(entry).string(), ec.message(), Fault::Failed);
    }
}

// Homes belong to a root through its users: home:<user>:<uid>:<gid> of a user its /etc/passwd has.
std::vector<std::string> homes_of(const pool::Pool& pool, const Dir& root_tree) {
    std::vector<std::pair<std::string, uint32_t>> users;
    if (root_tree.stat("etc/passwd")) {
        std::istringstream in(read_file(root_tree, "etc/passwd"));
        for (std::string line; std::getline(in, line);) {
            std::vector<std::string> f;
            std::istringstream fields(line);
            for (std::string x; std::getline(fields, x, ':');) f.push_back(x);
            if (f.size() < 3) continue;
            try {
                users.emplace_back(f[0], static_cast<uint32_t>(std::stoul(f[2])));
            } catch (const std::exception&) {
            }
        }
    }
    std::vector<std::string> homes;
    for (const auto& s : pool.list()) {
        if (!s.typed || s.typed->kind() != naming::Kind::Home) continue;
        for (const auto& [user, uid] : users)
            if (s.typed->id() == user && s.typed->uid() == uid) homes.push_back(s.name);
    }
    return homes;
}

// Mounted anywhere, or (unless at boot, where it is expected) on the kernel command line.
std::string in_use(const pool::Pool& pool, const naming::Name& root, bool at_boot) {
    for (const auto& use : vendor::uses_of(pool, root.str()))
        if (!(at_boot && use.starts_with("booted"))) return use;
    return {};
}

nlohmann::json to_json(const naming::Name& root, const ResetOptions& o) {
    return {{"root", root.str()}, {"level", std::string(to_string(o.level))}, {"keep", o.keep}, {"homes", o.homes}};
}

// Requests and undo records are strata's own files; damage to one is reported, never guessed around.
nlohmann::json read_json(const Dir& dir, std::string_view name) {
    try {
        return nlohmann::json::parse(read_file(dir, name));
    } catch (const nlohmann::json::exception& e) {
        throw Error("read", dir.path_of(name).string(), std::string("corrupt: ") + e.what(), Fault::Failed);
    }
}

ResetOptions options_from_json(const nlohmann::json& j, const fs::path& file) {
    try {
        ResetOptions o;
        const auto level = parse_reset_level(j.at("level").get<std::string>());
        if (!level) throw Error("read", file.string(), "corrupt: unknown level", Fault::Failed);
        o.level = *level;
        o.keep = j.at("keep").get<std::vector<std::string>>();
        o.homes = j.at("homes").get<bool>();
        return o;
    } catch (const nlohmann::json::exception& e) {
        throw Error("read", file.string(), std::string("corrupt: ") + e.what(), Fault::Failed);
    }
}

void delete_undo(const Dir& dir, std::string_view name) {
    const auto undo = dir.try_open_dir(name);
    if (!undo) return;
    for (const auto& entry : undo->entries()) {
        if (entry == record_file) undo->unlink(entry);
        else btrfs::delete_subvolume(*undo, entry);
    }
    dir.remove_dir(name);
}

ResetReport plan(const pool::Pool& pool, const naming::Name& root, const ResetOptions& o) {
    require_root(pool, root);
    check_keep(o.keep, o.level);
    if (o.homes && o.level != ResetLevel::All)
        throw Error("", "", "--homes resets homes only with --level all", Fault::InvalidInput);
    const Dir tree = pool.top().open_dir(root.str());
    if (const auto nested = btrfs::children(tree); !nested.empty())
        throw Error("", "", "it holds nested subvolumes (" + nested.front().path +
                                "); move them out first, strata deletes only what it made",
                    Fault::InvalidInput);
    ResetReport r;
    r.root = root.str();
    r.level = o.level;
    r.dry_run = o.dry_run;
    r.cleared = o.level == ResetLevel::Etc ? std::vector<std::string>{"/etc"}
              : o.level == ResetLevel::State ? std::vector<std::string>{"/etc", "/var"}
                                             : std::vector<std::string>{"/"};
    for (const auto& k : kept_paths(tree.path(), o.keep)) r.kept.push_back("/" + k);
    if (o.homes) r.homes = homes_of(pool, tree);
    const Database db = load_database(pool);
    if (const auto it = db.roots.find(root.str()); it != db.roots.end() && !it->second.usr.empty()) {
        if (const auto usr = pool.top().try_open_dir(it->second.usr); usr && usr->stat(factory_rules))
            r.populated_from = it->second.usr;
    }
    r.undo = reset_path(root.str());
    return r;
}

void write_request(const pool::Pool& pool, const naming::Name& root, const ResetOptions& o) {
    const Dir dir = pool.hidden().make_dir(reset_dir, 0700);
    write_file_atomic(dir, root.str() + std::string(request_suffix), to_json(root, o).dump(2) + "\n", 0600);
}

// Order: the undo copy is complete under its name before the root changes; the root changes in
// one exchange; homes move last, each in one rename. A crash before the exchange leaves an undo
// of an unchanged root (harmless), after it a finished reset.
void reset_now(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& root, const ResetOptions& o,
               const ResetReport& r) {
    const Dir resets = pool.hidden().make_dir(reset_dir, 0700);
    const std::string temp = ".tmp-" + root.str();
    delete_undo(resets, temp);
    const Dir undo_temp = resets.make_dir(temp, 0700);
    btrfs::snapshot(pool.top(), root.str(), undo_temp, old_root, btrfs::SnapshotFlags::ReadOnly);
    nlohmann::json record = to_json(root, o);
    record["homes_set_aside"] = r.homes;
    record["time"] = static_cast<int64_t>(::time(nullptr));
    write_file_atomic(undo_temp, record_file, record.dump(2) + "\n", 0600);
    btrfs::sync(pool.top());
    delete_undo(resets, root.str());
    resets.rename(temp, resets, root.str());
    resets.sync();
    crash_point("reset:undo");

    const std::string old = reset_path(root.str()) + "/" + std::string(old_root);
    auto staged = pool.stage_snapshot(lock, root, o.level == ResetLevel::All ? root_skeleton(pool, lock, root) : root.str(),
                                      pool::OnConflict::Replace);
    if (o.level != ResetLevel::All) {
        clear_contents(staged.dir(), "etc");
        if (o.level == ResetLevel::State) clear_contents(staged.dir(), "var");
    }
    if (r.populated_from) factory::populate(staged.dir(), pool.top().open_dir(*r.populated_from));
    for (const auto& k : r.kept) {
        std::error_code ec;
        fs::remove_all(staged.dir().path() / k.substr(1), ec);
        // --relative with "/./" recreates the path's parents with the old state's owners and modes.
        run_checked({"rsync", "--archive", "--hard-links", "--acls", "--xattrs", "--numeric-ids", "--relative", "--",
                     (pool.path() / old).string() + "/." + k, staged.dir().path().string() + "/"});
    }
    staged.publish(pool::Access::Writable);
    // Done now: an older request for the root must not reset it again at the next boot.
    if (const std::string request = root.str() + std::string(request_suffix); resets.stat(request)) resets.unlink(request);
    crash_point("reset:root");

    const Dir undo = resets.open_dir(root.str());
    for (const auto& home : r.homes) {
        pool.top().rename(home, undo, home);
        btrfs::set_read_only(undo.open_dir(home), true);
    }
    btrfs::sync(pool.top());
}

}  // namespace

std::optional<ResetLevel> parse_reset_level(std::string_view text) {
    if (text == "etc") return ResetLevel::Etc;
    if (text == "state") return ResetLevel::State;
    if (text == "all") return ResetLevel::All;
    return std::nullopt;
}

std::string_view to_string(ResetLevel level) {
    switch (level) {
    case ResetLevel::Etc: return "etc";
    case ResetLevel::State: return "state";
    case ResetLevel::All: return "all";
    }
    return "?";
}

ResetReport factory_reset(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& root,
                          const ResetOptions& options) {
    return with_context("factory reset", root.str(), [&] {
        ResetReport r = plan(pool, root, options);
        r.in_use = in_use(pool, root, false);
        r.scheduled = options.on_next_boot || !r.in_use.empty();
        if (options.dry_run) return r;
        if (r.scheduled) write_request(pool, root, options);
        else reset_now(pool, lock, root, options, r);
        return r;
    });
}

ResetReport undo_factory_reset(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& root) {
    return with_context("undo factory reset", root.str(), [&] {
        require_root(pool, root);
        ResetReport r;
        r.root = root.str();
        r.undo = reset_path(root.str());
        const Dir resets = pool.hidden().make_dir(reset_dir, 0700);
        const std::string request = root.str() + std::string(request_suffix);
        if (resets.stat(request)) {
            r.level = options_from_json(read_json(resets, request), resets.path_of(request)).level;
            r.scheduled = true;
            resets.unlink(request);
            resets.sync();
            return r;
        }
        const auto undo = resets.try_open_dir(root.str());
        if (!undo) throw Error("", "", "no factory reset to undo (none kept, or gc removed it)", Fault::NotFound);
        const auto record = read_json(*undo, record_file);
        r.level = options_from_json(record, undo->path_of(record_file)).level;
        r.homes = record.value("homes_set_aside", std::vector<std::string>{});
        if (const auto use = in_use(pool, root, false); !use.empty())
            throw Error("", "", "in use (" + use + "); its state cannot be swapped now", Fault::InUse);
        for (const auto& home : r.homes)
            if (pool.find(home)) throw Error("", "", "'" + home + "' exists again; remove or rename it first", Fault::Exists);

        auto staged = pool.stage_snapshot(lock, root, r.undo + "/" + std::string(old_root), pool::OnConflict::Replace);
        staged.publish(pool::Access::Writable);
        for (const auto& home : r.homes) {
            if (!undo->stat(home)) continue;
            btrfs::set_read_only(undo->open_dir(home), false);
            undo->rename(home, pool.top(), home);
        }
        delete_undo(resets, root.str());
        btrfs::sync(pool.top());
        return r;
    });
}

BootRequest parse_boot_command_line(std::string_view cmdline) {
    BootRequest b;
    std::istringstream in{std::string(cmdline)};
    for (std::string word; in >> word;) {
        if (word.starts_with("root=UUID=")) b.pool_uuid = word.substr(10);
        else if (word.starts_with("rootflags=")) {
            std::istringstream flags(word.substr(10));
            for (std::string flag; std::getline(flags, flag, ',');)
                if (flag.starts_with("subvol=")) b.root = flag.substr(7);
        } else if (word == "systemd.factory_reset" || word.starts_with("systemd.factory_reset=")) {
            const std::string value = word.size() > 21 ? word.substr(22) : "1";
            b.factory_reset = value == "1" || value == "yes" || value == "true" || value == "on";
        }
    }
    return b;
}

std::vector<ResetReport> apply_scheduled_resets_at_boot(const fs::path& cmdline, const fs::path& mount_base,
                                                        std::chrono::milliseconds lock_timeout) {
    std::ifstream in(cmdline);
    std::string text;
    std::getline(in, text);
    const auto boot = parse_boot_command_line(text);
    if (boot.pool_uuid.empty()) return {};
    return with_context("apply scheduled factory resets", "UUID=" + boot.pool_uuid, [&] {
        fs::create_directories(mount_base);
        std::string tmpl = (mount_base / "pool.XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) check_errno(-1, "create mount point in", mount_base.string());
        struct RemoveDir {
            fs::path p;
            ~RemoveDir() { ::rmdir(p.c_str()); }
        } remove_dir{tmpl};
        mount::mount(mount::device_by_uuid(boot.pool_uuid), tmpl, "btrfs", "subvolid=5");
        mount::MountGuard unmount(tmpl);
        const auto pool = pool::Pool::open(tmpl);
        const auto lock = pool.lock(lock_timeout);
        // systemd's own request (an entry booted with systemd.factory_reset=1) resets the root
        // being booted at level state, unless strata has a request of its own for it.
        if (boot.factory_reset && !boot.root.empty()) {
            const auto root = naming::Name::parse(boot.root);
            const Dir resets = pool.hidden().make_dir(reset_dir, 0700);
            if (root.kind() == naming::Kind::Root && pool.find(root.str()) &&
                !resets.stat(root.str() + std::string(request_suffix)))
                write_request(pool, root, ResetOptions{});
        }
        return apply_scheduled_resets(pool, lock);
    });
}

std::vector<ResetReport> scheduled_resets(const pool::Pool& pool) {
    std::vector<ResetReport> out;
    const auto resets = pool.hidden().try_open_dir(reset_dir);
    if (!resets) return out;
    for (const auto& entry : resets->entries()) {
        if (!entry.ends_with(request_suffix)) continue;
        const auto j = read_json(*resets, entry);
        const auto o = options_from_json(j, resets->path_of(entry));
        ResetReport r;
        r.root = j.value("root", std::string());
        r.level = o.level;
        r.scheduled = true;
        r.undo = reset_path(r.root);
        out.push_back(std::move(r));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.root < b.root; });
    return out;
}

std::vector<UndoCopy> reset_undo_copies(const pool::Pool& pool) {
    std::vector<UndoCopy> out;
    const auto resets = pool.hidden().try_open_dir(reset_dir);
    if (!resets) return out;
    for (const auto& entry : resets->entries()) {
        if (entry.ends_with(request_suffix) || !resets->stat(entry) || !S_ISDIR(resets->stat(entry)->st_mode)) continue;
        UndoCopy u;
        u.path = reset_path(entry);
        u.root = entry.starts_with(".tmp-") ? std::string() : entry;
        if (!u.root.empty()) {
            const auto dir = resets->open_dir(entry);
            if (dir.stat(record_file)) u.time = read_json(dir, record_file).value("time", int64_t{0});
        }
        out.push_back(std::move(u));
    }
    return out;
}

void remove_reset_undo(const pool::Pool& pool, const UndoCopy& copy) {
    const auto slash = copy.path.rfind('/');
    delete_undo(pool.top().open_dir(copy.path.substr(0, slash)), copy.path.substr(slash + 1));
}

void forget_resets(const pool::Pool& pool, const naming::Name& root) {
    const auto resets = pool.hidden().try_open_dir(reset_dir);
    if (!resets) return;
    const std::string request = root.str() + std::string(request_suffix);
    if (resets->stat(request)) resets->unlink(request);
    delete_undo(*resets, root.str());
}

std::vector<ResetReport> apply_scheduled_resets(const pool::Pool& pool, const pool::Lock& lock) {
    std::vector<ResetReport> done;
    const auto resets = pool.hidden().try_open_dir(reset_dir);
    if (!resets) return done;
    for (const auto& entry : resets->entries()) {
        if (!entry.ends_with(request_suffix)) continue;
        with_context("scheduled factory reset", resets->path_of(entry).string(), [&] {
            const auto j = read_json(*resets, entry);
            const auto options = options_from_json(j, resets->path_of(entry));
            const auto root = naming::Name::parse(j.value("root", std::string()));
            if (!pool.find(root.str())) {  // removed meanwhile: nothing left to reset
                resets->unlink(entry);
                return;
            }
            ResetReport r = plan(pool, root, options);
            if (!in_use(pool, root, true).empty()) return;  // still mounted: stays scheduled
            reset_now(pool, lock, root, options, r);
            resets->sync();
            done.push_back(std::move(r));
        });
    }
    return done;
}

}  // namespace strata::deploy
