// Factory defaults through the library on a real btrfs pool: a realistic OS tree is prepared,
// its usr imported, a root instance created and populated; the result is compared with the
// original /etc and /var minus the exclude list, and with what the real systemd-tmpfiles makes
// of the same rules.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>

#include "deploy/root.hpp"
#include "factory/populate.hpp"
#include "factory/prepare.hpp"
#include "support/errors.hpp"
#include "support/scratch_pool.hpp"
#include "support/tree.hpp"
#include "vendor/import.hpp"

using namespace strata;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write(const fs::path& p, const std::string& content, mode_t mode = 0644, uid_t uid = 0, gid_t gid = 0) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    REQUIRE(::chown(p.c_str(), uid, gid) == 0);
    REQUIRE(::chmod(p.c_str(), mode) == 0);
}

void make_dir(const fs::path& p, mode_t mode, uid_t uid = 0, gid_t gid = 0) {
    fs::create_directories(p);
    REQUIRE(::chown(p.c_str(), uid, gid) == 0);
    REQUIRE(::chmod(p.c_str(), mode) == 0);
}

void symlink(const std::string& target, const fs::path& p) { fs::create_symlink(target, p); }

void require_ok(const ProcessResult& r) { REQUIRE_MESSAGE(r.exit_status == 0, r.err); }

// What debootstrap leaves, in small: the files the first-boot pitfalls are about, every
// attribute a copy can lose, and machine-specific files the default exclude list drops.
void make_os_tree(const fs::path& tree) {
    make_dir(tree, 0755);
    write(tree / "usr/lib/os-release", "NAME=Demo\nVERSION_ID=1\n");
    write(tree / "usr/share/zoneinfo/Etc/UTC", "TZif2\n");
    write(tree / "usr/lib/systemd/system/demo.service", "[Service]\nExecStart=/bin/true\n");
    make_dir(tree / "etc", 0755);
    write(tree / "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nmessagebus:x:100:101:D-Bus,,,:/nonexistent:/usr/sbin/nologin\n");
    write(tree / "etc/group", "root:x:0:\nshadow:x:42:\nmessagebus:x:101:\n");
    write(tree / "etc/shadow", "root:*:19000:0:99999:7:::\n", 0640, 0, 42);
    write(tree / "etc/hostname", "demo\n");
    write(tree / "etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0444);
    write(tree / "etc/adjtime", "0.0 0 0.0\n0\nUTC\n");
    symlink("/usr/share/zoneinfo/Etc/UTC", tree / "etc/localtime");
    symlink("../usr/lib/os-release", tree / "etc/os-release");
    make_dir(tree / "etc/ssh", 0755);
    write(tree / "etc/ssh/sshd_config", "PermitRootLogin no\n");
    write(tree / "etc/ssh/ssh_host_ed25519_key", "PRIVATE\n", 0600);
    write(tree / "etc/ssh/ssh_host_ed25519_key.pub", "PUBLIC\n");
    make_dir(tree / "etc/systemd/system/multi-user.target.wants", 0755);
    symlink("/usr/lib/systemd/system/demo.service", tree / "etc/systemd/system/multi-user.target.wants/demo.service");
    make_dir(tree / "etc/tagged", 0750, 0, 101);
    REQUIRE(::setxattr((tree / "etc/tagged").c_str(), "user.origin", "vendor", 6, 0) == 0);
    write(tree / "etc/tagged/inner.conf", "x=1\n", 0600, 100, 101);
    REQUIRE(::setxattr((tree / "etc/tagged/inner.conf").c_str(), "user.note", "kept", 4, 0) == 0);
    write(tree / "etc/acl.conf", "secret=1\n", 0640);
    require_ok(run_process({"setfacl", "-m", "u:1000:r", (tree / "etc/acl.conf").string()}));
    write(tree / "etc/links/a", "same inode\n");
    fs::create_hard_link(tree / "etc/links/a", tree / "etc/links/b");
    write(tree / "etc/with space.conf", "spaces\n");
    write(tree / "etc/100%.conf", "percent\n");
    write(tree / "etc/it's \"quoted\"", "quotes\n");
    write(tree / "etc/.pwd.lock", "", 0600);

    make_dir(tree / "var", 0755);
    write(tree / "var/lib/foo/state", "state\n", 0600, 1000, 1000);
    write(tree / "var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n");
    write(tree / "var/lib/systemd/random-seed", "seed", 0600);
    write(tree / "var/lib/systemd/keep", "keep\n");
    make_dir(tree / "var/log/journal", 02755, 0, 101);
    write(tree / "var/log/x.log", "build log\n", 0640);
    write(tree / "var/log/apt/history.log", "apt\n");
    write(tree / "var/cache/y", "cached\n");
    write(tree / "var/cache/apt/pkgcache.bin", "cache\n");
    make_dir(tree / "var/tmp", 01777);
    write(tree / "var/tmp/junk", "junk\n");
    make_dir(tree / "var/mail", 02775, 0, 8);
    symlink("/run", tree / "var/run");
}

// The excluded paths by the defaults (the test's own account of the documented list).
const std::set<std::string> default_excluded = {
    "/etc/adjtime",          "/etc/machine-id",          "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_ed25519_key.pub", "/var/cache/apt/pkgcache.bin", "/var/cache/y",
    "/var/lib/dbus/machine-id", "/var/lib/systemd/random-seed", "/var/log/apt/history.log",
    "/var/log/x.log",        "/var/tmp/junk",
};

// Directory times change when a child goes, and L lines make new symlinks: set both to one
// value in a tree so compare_trees looks at everything else.
void flatten_times(const fs::path& root) {
    const timespec t[2] = {{1000000000, 0}, {1000000000, 0}};
    auto touch = [&](const fs::path& p) { REQUIRE(::utimensat(AT_FDCWD, p.c_str(), t, AT_SYMLINK_NOFOLLOW) == 0); };
    touch(root);
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
        if (it->is_directory() && !it->is_symlink()) touch(it->path());
        else if (it->is_symlink() && it.depth() == 0) touch(it->path());
    }
}

// The original /etc and /var minus what the exclude list drops.
void make_expected(const fs::path& tree, const fs::path& expected, const std::set<std::string>& excluded) {
    make_dir(expected, 0755);
    for (const char* top : {"etc", "var"})
        require_ok(run_process({"cp", "-a", (tree / top).string(), expected.string()}));
    for (const auto& p : excluded) fs::remove_all(expected / p.substr(1));
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < text.size()) {
        const auto nl = text.find('\n', i);
        out.push_back(text.substr(i, nl - i));
        i = nl == std::string::npos ? text.size() : nl + 1;
    }
    return out;
}

struct World {
    test::ScratchPool scratch;
    fs::path work = scratch.mountpoint() / "work";  // same filesystem as the pool: reflinks
    fs::path tree = work / "tree";
    fs::path expected = work / "expected";
    pool::Pool pool = pool::Pool::open(scratch.mountpoint());
    naming::Name usr = naming::Name::parse("usr:org.example.Demo:x86_64:1.0");
    naming::Name root = naming::Name::parse("root:web:org.example.Demo:x86_64");

    World() { make_os_tree(tree); }
};

}  // namespace

TEST_CASE("prepare moves etc and var into the factory and writes rules unit and preset") {
    test::require_root_and_btrfs();
    World w;
    auto excluded = default_excluded;
    excluded.insert({"/etc/hostname", "/var/lib/foo/state"});
    make_expected(w.tree, w.expected, excluded);
    struct stat shadow_before {};
    REQUIRE(::lstat((w.tree / "etc/shadow").c_str(), &shadow_before) == 0);

    const auto report = factory::prepare(w.tree, {{"etc/hostname", "/var/lib/foo/**"}});

    CHECK(std::set<std::string>(report.excluded.begin(), report.excluded.end()) == excluded);
    CHECK(report.excluded.size() == excluded.size());
    // etc and var stay, empty, with their modes; their content moved by rename (same inode).
    for (const char* top : {"etc", "var"}) {
        CHECK(fs::is_empty(w.tree / top));
        CHECK((fs::status(w.tree / top).permissions() & fs::perms::mask) == static_cast<fs::perms>(0755));
    }
    const fs::path factory = w.tree / "usr/share/factory";
    struct stat shadow {};
    REQUIRE(::lstat((factory / "etc/shadow").c_str(), &shadow) == 0);
    CHECK(shadow.st_ino == shadow_before.st_ino);
    CHECK((shadow.st_mode & 07777) == 0640);
    CHECK(shadow.st_gid == 42);
    CHECK(fs::is_directory(factory / "var/lib/foo"));  // "/**" keeps the directory
    CHECK(fs::is_directory(factory / "var/log/journal"));
    CHECK(fs::is_directory(factory / "var/cache/apt"));
    CHECK(fs::is_directory(factory / "var/tmp"));
    CHECK_FALSE(fs::exists(w.tree / "usr/share/factory.strata-prepare"));

    flatten_times(factory / "etc");
    flatten_times(factory / "var");
    flatten_times(w.expected / "etc");
    flatten_times(w.expected / "var");
    CHECK(test::compare_trees(w.expected / "etc", factory / "etc") == std::vector<std::string>{});
    CHECK(test::compare_trees(w.expected / "var", factory / "var") == std::vector<std::string>{});

    const auto rules = slurp(w.tree / "usr/lib/tmpfiles.d/strata-factory.conf");
    auto lines = lines_of(rules);
    lines.erase(std::remove_if(lines.begin(), lines.end(), [](const std::string& l) { return l.starts_with("#"); }),
                lines.end());
    CHECK(lines == std::vector<std::string>{
                       "d /etc 0755 0 0 -",
                       "C /etc/.pwd.lock",
                       "C /etc/100%%.conf",
                       "C /etc/acl.conf",
                       "C /etc/group",
                       "C \"/etc/it's \\\"quoted\\\"\"",
                       "C /etc/links",
                       "L /etc/localtime - - - - /usr/share/zoneinfo/Etc/UTC",
                       "L /etc/os-release - - - - ../usr/lib/os-release",
                       "C /etc/passwd",
                       "C /etc/shadow",
                       "C /etc/ssh",
                       "C /etc/systemd",
                       "C /etc/tagged",
                       "C \"/etc/with space.conf\"",
                       "d /var 0755 0 0 -",
                       "C /var/cache",
                       "C /var/lib",
                       "C /var/log",
                       "C /var/mail",
                       "L /var/run - - - - /run",
                       "C /var/tmp",
                   });
    CHECK(factory::parse_rules(rules, "rules") == report.rules);

    const fs::path system = w.tree / "usr/lib/systemd/system";
    CHECK(slurp(system / "strata-factory.service") == factory::unit_text());
    CHECK(slurp(fs::path(STRATA_SOURCE_DIR) / "units/strata-factory.service") == factory::unit_text());
    CHECK(fs::read_symlink(system / "sysinit.target.wants/strata-factory.service") == "../strata-factory.service");
    CHECK(slurp(w.tree / "usr/lib/systemd/system-preset/00-strata-factory.preset") == factory::preset_text());
    CHECK(factory::unit_text().find("\nBefore=sysinit.target systemd-sysusers.service systemd-firstboot.service "
                                    "systemd-tmpfiles-setup.service\n") != std::string_view::npos);
    CHECK(factory::unit_text().find("\nDefaultDependencies=no\n") != std::string_view::npos);

    // A second prepare is refused and changes nothing.
    CHECK(test::error_of([&] { factory::prepare(w.tree); }) ==
          "prepare '" + w.tree.string() + "': already prepared (usr/lib/tmpfiles.d/strata-factory.conf exists)");
    CHECK(slurp(w.tree / "usr/lib/tmpfiles.d/strata-factory.conf") == rules);
}

TEST_CASE("populate after prepare import and root create gives the original minus the excludes and matches systemd-tmpfiles") {
    test::require_root_and_btrfs();
    World w;
    make_expected(w.tree, w.expected, default_excluded);
    factory::prepare(w.tree);
    const auto lock = w.pool.lock(1s);
    vendor::import_directory(w.pool, lock, w.usr, w.tree / "usr");
    deploy::create_root(w.pool, lock, w.root);
    const fs::path root = w.scratch.mountpoint() / w.root.str();

    const auto report = factory::populate(Dir::open(root), Dir::open(w.scratch.mountpoint() / w.usr.str()));
    CHECK(report.created.empty());
    CHECK(report.skipped == std::vector<std::string>{"/etc", "/var"});  // the skeleton has them
    CHECK(report.linked == std::vector<std::string>{"/etc/localtime", "/etc/os-release", "/var/run"});
    CHECK(report.copied.size() == 18);
    CHECK(report.missing.empty());
    CHECK(slurp(root / "etc/shadow") == "root:*:19000:0:99999:7:::\n");
    CHECK(fs::read_symlink(root / "etc/os-release") == "../usr/lib/os-release");

    // The real systemd-tmpfiles on a copy of the same empty root with the usr tree in place.
    const fs::path dir = w.work / "tmpfiles-root";
    deploy::create_root(w.pool, lock, naming::Name::parse("root:tmpfiles:org.example.Demo:x86_64"));
    require_ok(run_process({"cp", "-a", "--reflink=auto",
                            (w.scratch.mountpoint() / "root:tmpfiles:org.example.Demo:x86_64").string() + "/.",
                            dir.string()}));
    require_ok(run_process({"cp", "-a", "--reflink=auto", (w.scratch.mountpoint() / w.usr.str()).string() + "/.",
                            (dir / "usr").string()}));
    const auto tmpfiles = run_process({"systemd-tmpfiles", "--root=" + dir.string(), "--create",
                                       (dir / "usr/lib/tmpfiles.d/strata-factory.conf").string()});
    CHECK_MESSAGE(tmpfiles.exit_status == 0, tmpfiles.err);

    for (const auto& top : {"etc", "var"}) {
        flatten_times(root / top);
        flatten_times(dir / top);
        flatten_times(w.expected / top);
    }
    // populate is faithful: /etc and /var are the original minus the exclude list.
    test::CompareOptions options;
    CHECK(test::compare_trees(w.expected / "etc", root / "etc", options) == std::vector<std::string>{});
    CHECK(test::compare_trees(w.expected / "var", root / "var", options) == std::vector<std::string>{});
    // systemd-tmpfiles 252 gives the same, except that its C copy keeps only user.* xattrs: the
    // ACL is lost (docs/factory.md).
    CHECK(test::compare_trees(root / "var", dir / "var", options) == std::vector<std::string>{});
    CHECK(test::compare_trees(root / "etc", dir / "etc", options) ==
          std::vector<std::string>{"acl.conf: xattr system.posix_acl_access only in a"});
}

TEST_CASE("populate skips what is present and merges into an empty directory as tmpfiles does") {
    test::require_root_and_btrfs();
    World w;
    factory::prepare(w.tree);
    const auto lock = w.pool.lock(1s);
    vendor::import_directory(w.pool, lock, w.usr, w.tree / "usr");
    deploy::create_root(w.pool, lock, w.root);
    const fs::path root = w.scratch.mountpoint() / w.root.str();
    write(root / "etc/passwd", "admin's own\n", 0600);
    make_dir(root / "etc/ssh", 0700, 0, 0);
    symlink("elsewhere", root / "etc/os-release");
    REQUIRE(::chmod((root / "var").c_str(), 0700) == 0);
    const Dir usr = Dir::open(w.scratch.mountpoint() / w.usr.str());

    const auto report = factory::populate(Dir::open(root), usr);
    CHECK(std::count(report.skipped.begin(), report.skipped.end(), "/etc/passwd") == 1);
    CHECK(std::count(report.skipped.begin(), report.skipped.end(), "/etc/os-release") == 1);
    CHECK(std::count(report.copied.begin(), report.copied.end(), "/etc/ssh") == 1);
    CHECK(slurp(root / "etc/passwd") == "admin's own\n");
    CHECK(fs::read_symlink(root / "etc/os-release") == "elsewhere");
    CHECK(slurp(root / "etc/ssh/sshd_config") == "PermitRootLogin no\n");
    CHECK_FALSE(fs::exists(root / "etc/ssh/ssh_host_ed25519_key"));
    // The merged directory keeps its own mode; the d line puts /var's mode back.
    CHECK((fs::status(root / "etc/ssh").permissions() & fs::perms::mask) == static_cast<fs::perms>(0700));
    CHECK((fs::status(root / "var").permissions() & fs::perms::mask) == static_cast<fs::perms>(0755));

    // Again: everything is present, nothing changes.
    const auto again = factory::populate(Dir::open(root), usr);
    CHECK(again.copied.empty());
    CHECK(again.linked.empty());
    CHECK(again.skipped.size() == report.copied.size() + report.linked.size() + report.skipped.size() +
                                      report.created.size());
}

TEST_CASE("an interrupted prepare is finished by the next one") {
    test::require_root_and_btrfs();
    World w;
    make_expected(w.tree, w.expected, default_excluded);
    // The state after the first step of a prepare that died: etc moved to staging, not recreated.
    fs::create_directories(w.tree / "usr/share/factory.strata-prepare");
    fs::rename(w.tree / "etc", w.tree / "usr/share/factory.strata-prepare/etc");

    const auto report = factory::prepare(w.tree);
    CHECK(fs::is_directory(w.tree / "etc"));
    CHECK(fs::is_empty(w.tree / "etc"));
    CHECK(fs::is_empty(w.tree / "var"));
    CHECK(fs::exists(w.tree / "usr/lib/tmpfiles.d/strata-factory.conf"));
    CHECK_FALSE(fs::exists(w.tree / "usr/share/factory.strata-prepare"));
    CHECK(std::set<std::string>(report.excluded.begin(), report.excluded.end()) == default_excluded);
    for (const auto& top : {"etc", "var"}) {
        flatten_times(w.tree / "usr/share/factory" / top);
        flatten_times(w.expected / top);
        CHECK(test::compare_trees(w.expected / top, w.tree / "usr/share/factory" / top) == std::vector<std::string>{});
    }
}

TEST_CASE("prepare refuses bad trees and changes nothing") {
    test::require_root_and_btrfs();
    test::TempDir work;
    const fs::path tree = work.path() / "tree";
    CHECK(test::error_of([&] { factory::prepare(tree); }) == "prepare '" + tree.string() + "': no such directory");
    fs::create_directories(tree / "usr");
    CHECK(test::error_of([&] { factory::prepare(tree); }) ==
          "prepare '" + tree.string() + "': no etc/ directory (not an OS tree)");
    fs::create_directories(tree / "etc");
    write(tree / "etc/bad\nname", "x");
    CHECK(test::error_of([&] { factory::prepare(tree); }) ==
          "prepare '" + tree.string() +
              "': cannot write a factory rule for '/etc/bad\\nname': a tmpfiles.d path cannot contain control "
              "characters or invalid UTF-8; rename it or exclude it");
    CHECK(fs::exists(tree / "etc/bad\nname"));
    CHECK_FALSE(fs::exists(tree / "usr/share"));
    CHECK(test::error_of([&] { factory::prepare(tree, {{"usr/bin/x"}}); }) ==
          "prepare '" + tree.string() + "': exclude pattern 'usr/bin/x': must start with etc/ or var/");
    // Excluded, the name needs no rule.
    const auto report = factory::prepare(tree, {{"etc/bad*"}});
    CHECK(report.excluded == std::vector<std::string>{"/etc/bad\nname"});
}
