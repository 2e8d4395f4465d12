#include "factory/prepare.hpp"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/error.hpp"
#include "base/escape.hpp"

namespace strata::factory {
namespace {

constexpr std::string_view stage_name = "factory.strata-prepare";
constexpr std::string_view state_dirs[] = {"etc", "var"};

constexpr std::string_view unit = R"(# strata: rebuild /etc and /var from the factory copy in /usr/share/factory (docs/factory.md).
# Installed and enabled from /usr by `strata factory prepare`. tmpfiles copies only onto missing
# targets, so this runs before anything that writes into /etc or /var on a first boot:
# systemd-sysusers (passwd, group, shadow), systemd-firstboot, systemd-tmpfiles-setup,
# systemd-random-seed (/var/lib/systemd) and systemd-journal-flush (/var/log/journal).
[Unit]
Description=Populate /etc and /var from the factory defaults
Documentation=man:tmpfiles.d(5) file:/usr/share/doc/strata/factory.md
DefaultDependencies=no
ConditionPathExists=/usr/lib/tmpfiles.d/strata-factory.conf
After=systemd-remount-fs.service
Before=sysinit.target systemd-sysusers.service systemd-firstboot.service systemd-tmpfiles-setup.service
Before=systemd-random-seed.service systemd-journal-flush.service systemd-pstore.service
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/systemd-tmpfiles --create /usr/lib/tmpfiles.d/strata-factory.conf

[Install]
WantedBy=sysinit.target
)";

constexpr std::string_view preset = R"(# strata: on a first boot PID 1 applies presets before any unit runs. Enabling a unit there
# would create /etc/systemd before strata-factory.service copies the factory's /etc/systemd, and
# tmpfiles skips a copy onto a directory that is not empty. The factory /etc already records
# which units are enabled, so presets have nothing to add. Ordered first: the first match wins.
disable *
)";

struct Pattern {
    std::string glob;
    bool files_below = false;  // "dir/**": non-directories below matching directories
};

std::string normalized(std::string_view pattern) {
    while (!pattern.empty() && pattern.front() == '/') pattern.remove_prefix(1);
    return std::string(pattern);
}

std::vector<Pattern> compile(const std::vector<std::string>& excludes) {
    std::vector<Pattern> out;
    for (const auto& e : excludes) {
        std::string glob = normalized(e);
        const bool files_below = glob.ends_with("/**");
        if (files_below) glob.resize(glob.size() - 3);
        out.push_back({std::move(glob), files_below});
    }
    return out;
}

bool matches(const std::string& glob, const std::string& path) {
    return ::fnmatch(glob.c_str(), path.c_str(), FNM_PATHNAME) == 0;
}

void remove_tree(const Dir& parent, const std::string& name) {
    const auto st = parent.stat(name);
    if (!st) return;
    if (S_ISDIR(st->st_mode)) {
        const Dir dir = parent.open_dir(name);
        for (const auto& child : dir.entries()) remove_tree(dir, child);
        parent.remove_dir(name);
    } else {
        parent.unlink(name);
    }
}

// Removes what the patterns exclude below dir (whose path in the tree is rel).
void apply_excludes(const Dir& dir, const std::string& rel, const std::vector<Pattern>& patterns,
                    const std::vector<bool>& inside, std::vector<std::string>& excluded) {
    auto names = dir.entries();
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
        const std::string path = rel + "/" + name;
        const auto st = dir.stat(name);
        if (!st) continue;
        const bool is_dir = S_ISDIR(st->st_mode);
        bool drop = false;
        std::vector<bool> below(patterns.size(), false);
        for (size_t i = 0; i < patterns.size(); ++i) {
            if (patterns[i].files_below) {
                drop = drop || (inside[i] && !is_dir);
                below[i] = inside[i] || (is_dir && matches(patterns[i].glob, path));
            } else {
                drop = drop || matches(patterns[i].glob, path);
            }
        }
        if (drop) {
            remove_tree(dir, name);
            excluded.push_back("/" + path);
        } else if (is_dir) {
            apply_excludes(dir.open_dir(name), path, patterns, below, excluded);
        }
    }
}

bool excluded_top_level(const std::vector<Pattern>& patterns, const std::string& path) {
    return std::any_of(patterns.begin(), patterns.end(),
                       [&](const Pattern& p) { return !p.files_below && matches(p.glob, path); });
}

[[noreturn]] void invalid(std::string_view reason) { throw Error("", "", reason, Fault::InvalidInput); }

struct stat require_dir(const Dir& tree, std::string_view name, std::string_view what) {
    const auto st = tree.stat(name);
    if (!st || !S_ISDIR(st->st_mode)) invalid("no " + std::string(name) + "/ directory (" + std::string(what) + ")");
    return *st;
}

// The empty directory that replaces a moved etc/ or var/: same mode and owner as the original.
void recreate_empty(const Dir& tree, std::string_view name, const struct stat& like) {
    const std::string n(name);
    const std::string path = tree.path_of(name).string();
    check_errno(::mkdirat(tree.fd(), n.c_str(), 0700), "create directory", path);
    check_errno(::fchownat(tree.fd(), n.c_str(), like.st_uid, like.st_gid, AT_SYMLINK_NOFOLLOW), "set owner of", path);
    check_errno(::fchmodat(tree.fd(), n.c_str(), like.st_mode & 07777, 0), "set mode of", path);
}

void install_unit(const Dir& usr) {
    const Dir system = usr.make_dir("lib").make_dir("systemd").make_dir("system");
    write_file_atomic(system, unit_name, unit);
    const Dir wants = system.make_dir("sysinit.target.wants");
    if (!wants.stat(unit_name)) {
        const std::string target = "../" + std::string(unit_name);
        const std::string link(unit_name);
        check_errno(::symlinkat(target.c_str(), wants.fd(), link.c_str()), "create symlink",
                    wants.path_of(unit_name).string());
    }
    write_file_atomic(usr.make_dir("lib").make_dir("systemd").make_dir("system-preset"), preset_name, preset);
}

}  // namespace

std::string_view unit_text() { return unit; }
std::string_view preset_text() { return preset; }

void check_exclude(std::string_view pattern) {
    const std::string p = normalized(pattern);
    const auto bad = [&](std::string_view why) {
        throw Error("exclude pattern", pattern, why, Fault::InvalidInput);
    };
    if (!p.starts_with("etc/") && !p.starts_with("var/")) bad("must start with etc/ or var/");
    if (p.size() == 4) bad("names nothing below etc/ or var/");
    std::string_view rest = p;
    while (!rest.empty()) {
        const auto slash = rest.find('/');
        const auto part = rest.substr(0, slash);
        if (part.empty() || part == "." || part == "..") bad("has an empty, '.' or '..' component");
        if (part.find("**") != std::string_view::npos && !(part == "**" && slash == std::string_view::npos))
            bad("'**' is only allowed as the last component");
        if (slash == std::string_view::npos) break;
        rest.remove_prefix(slash + 1);
    }
    if (p.find('\0') != std::string::npos) bad("contains NUL");
}

std::vector<std::string> effective_excludes(const std::vector<std::string>& extra) {
    std::vector<std::string> out;
    for (const auto& d : default_excludes) out.emplace_back(d.pattern);
    for (const auto& e : extra) {
        check_exclude(e);
        out.push_back(normalized(e));
    }
    return out;
}

std::vector<Rule> rules_for_factory(const Dir& usr) {
    std::vector<Rule> rules;
    const Dir factory = usr.open_dir("share").open_dir("factory");
    for (const auto top : state_dirs) {
        const auto dir_st = factory.stat(top);
        if (!dir_st || !S_ISDIR(dir_st->st_mode)) continue;
        Rule d;
        d.type = RuleType::Directory;
        d.path = "/" + std::string(top);
        d.mode = dir_st->st_mode & 07777;
        d.uid = dir_st->st_uid;
        d.gid = dir_st->st_gid;
        rules.push_back(d);
        const Dir dir = factory.open_dir(top);
        auto names = dir.entries();
        std::sort(names.begin(), names.end());
        for (const auto& name : names) {
            const auto st = dir.stat(name);
            if (!st) continue;
            Rule r;
            r.path = "/" + std::string(top) + "/" + name;
            if (S_ISLNK(st->st_mode)) {
                // A C line on a symlink makes systemd-tmpfiles fail (exit 73); L recreates it.
                r.type = RuleType::Symlink;
                std::string target(static_cast<size_t>(st->st_size) + 1, '\0');
                const ssize_t n = ::readlinkat(dir.fd(), name.c_str(), target.data(), target.size());
                if (n < 0) throw_errno("read symlink", dir.path_of(name).string());
                target.resize(static_cast<size_t>(n));
                r.argument = target;
            } else {
                r.type = RuleType::Copy;
            }
            rules.push_back(std::move(r));
        }
    }
    return rules;
}

PrepareReport prepare(const std::filesystem::path& tree_path, const PrepareOptions& options) {
    return with_context("prepare", tree_path.string(), [&] {
        const auto excludes = effective_excludes(options.exclude);
        const auto patterns = compile(excludes);

        struct stat tree_st {};
        if (::stat(tree_path.c_str(), &tree_st) != 0) {
            if (errno == ENOENT) throw Error("", "", "no such directory", Fault::NotFound);
            throw_errno("read", tree_path.string());
        }
        if (!S_ISDIR(tree_st.st_mode)) invalid("not a directory");
        const Dir tree = Dir::open(tree_path);

        // Every check before the first change: a refused tree is left exactly as it was.
        const struct stat usr_st = require_dir(tree, "usr", "not an OS tree");
        const Dir usr = tree.open_dir("usr");
        const auto lib = usr.try_open_dir("lib");
        if (const auto rules = lib ? lib->try_open_dir("tmpfiles.d") : std::nullopt; rules && rules->stat(rules_name))
            invalid("already prepared (usr/lib/tmpfiles.d/" + std::string(rules_name) + " exists)");
        std::optional<Dir> share = usr.try_open_dir("share");
        if (!share && usr.stat("share")) invalid("usr/share is not a directory");
        const std::optional<Dir> stage = share ? share->try_open_dir(stage_name) : std::nullopt;
        const std::optional<Dir> factory = share ? share->try_open_dir("factory") : std::nullopt;
        // An interrupted prepare may have moved etc/ before it could put the empty one back.
        if (!(stage && (stage->stat("etc") || (factory && factory->stat("etc"))))) require_dir(tree, "etc", "not an OS tree");
        for (const auto top : state_dirs) {
            // After an interruption the staging directory exists and the move may be half done;
            // without it, a factory etc/ or var/ was made by someone else.
            if (!stage && factory && factory->stat(top))
                invalid("usr/share/factory/" + std::string(top) +
                        " exists already (prepared before, or shipped by the distribution)");
            const auto st = tree.stat(top);
            if (st && !S_ISDIR(st->st_mode)) invalid(std::string(top) + " is not a directory");
            // Moving by rename keeps every attribute and costs nothing, but only within one
            // filesystem (and one btrfs subvolume).
            if (st && (st->st_dev != usr_st.st_dev || (share && share->stat_self().st_dev != usr_st.st_dev)))
                invalid(std::string(top) + "/ and usr/share are not on one filesystem (or are different subvolumes)");
        }
        // Names no tmpfiles.d line can express would be lost on first boot: refuse them now.
        for (const auto top : state_dirs) {
            std::optional<Dir> source = tree.try_open_dir(top);
            if (stage && stage->stat(top)) source = stage->open_dir(top);
            if (factory && factory->stat(top)) source = factory->open_dir(top);
            if (!source) continue;
            for (const auto& name : source->entries()) {
                const std::string rel = std::string(top) + "/" + name;
                if (excluded_top_level(patterns, rel)) continue;
                try {
                    (void)quote_path("/" + rel);
                } catch (const Error&) {
                    invalid(std::string("cannot write a factory rule for '/") + escape(rel) +
                            "': a tmpfiles.d path cannot contain control characters or invalid UTF-8; "
                            "rename it or exclude it");
                }
            }
        }

        PrepareReport report;
        const Dir shared = usr.make_dir("share");
        const Dir staging = shared.make_dir(stage_name, 0755);
        // 1. etc/ and var/ move whole into staging and come back empty with mode and owner.
        for (const auto top : state_dirs) {
            const bool moved = staging.stat(top) || (factory && factory->stat(top));
            if (!moved && tree.stat(top)) tree.rename(top, staging, top);
            if (!tree.stat(top)) {
                if (const auto st = staging.stat(top)) recreate_empty(tree, top, *st);
                else if (const auto fst = factory ? factory->stat(top) : std::nullopt) recreate_empty(tree, top, *fst);
            }
        }
        // The moves must be on disk before anything else builds on them.
        staging.sync();
        tree.sync();
        // 2. The excluded files go (again, harmlessly, after an interruption).
        for (const auto top : state_dirs)
            if (const auto dir = staging.try_open_dir(top))
                apply_excludes(*dir, std::string(top), patterns, std::vector<bool>(patterns.size(), false),
                               report.excluded);
        // 3. The unit, its wants link and the preset: whole files, written atomically.
        install_unit(usr);
        // 4. The staged trees become the factory.
        const Dir factory_dir_fd = shared.make_dir("factory", 0755);
        for (const auto top : state_dirs)
            if (staging.stat(top)) staging.rename(top, factory_dir_fd, top);
        factory_dir_fd.sync();
        // 5. The rules last: their presence marks the tree as prepared.
        report.rules = rules_for_factory(usr);
        const Dir rules_dir = usr.make_dir("lib").make_dir("tmpfiles.d");
        write_file_atomic(rules_dir, rules_name,
                          render_rules(report.rules, "strata factory rules, written by `strata factory prepare`.\n"
                                                     "Rebuild /etc and /var from /usr/share/factory; see tmpfiles.d(5)\n"
                                                     "and strata's docs/factory.md. Applied early on boot by\n"
                                                     "strata-factory.service, offline by `strata factory populate`.\n"));
        shared.remove_dir(stage_name);
        return report;
    });
}

}  // namespace strata::factory
