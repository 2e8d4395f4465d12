// The fixture tree and the tree comparator (tests/support/tree.hpp) that the import, send and
// receive tests rely on: two generated trees are equal, `cp -a` keeps everything, and each
// single change is reported at exactly the path that changed.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/process.hpp"
#include "support/scratch_pool.hpp"
#include "support/tree.hpp"

using namespace strata;
namespace fs = std::filesystem;
namespace fixture = strata::test::fixture;

namespace {

std::string joined(const std::vector<std::string>& lines) {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
}

void copy_tree(const fs::path& from, const fs::path& to, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {"cp", "-a"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), {"--no-target-directory", "--", from.string() + "/.", to.string()});
    run_checked(argv);
}

// Gives b/rel the atime and mtime of a/rel, so a mutation of b leaves only the intended change.
void copy_times(const fs::path& a, const fs::path& b, const std::string& rel) {
    struct stat st {};
    check_errno(::lstat((a / rel).c_str(), &st), "stat", rel);
    const std::array<timespec, 2> ts = {st.st_atim, st.st_mtim};
    check_errno(::utimensat(AT_FDCWD, (b / rel).c_str(), ts.data(), AT_SYMLINK_NOFOLLOW), "set times", rel);
}

std::string parent_of(std::string_view rel) { return fs::path(rel).parent_path().string(); }

void write_at(const fs::path& file, std::string_view data, off_t offset) {
    const Fd f(check_errno(::open(file.c_str(), O_WRONLY | O_CLOEXEC), "open", file.string()));
    REQUIRE(::pwrite(f.get(), data.data(), data.size(), offset) == static_cast<ssize_t>(data.size()));
}

constexpr uint64_t small_sparse = 8ull << 20;

}  // namespace

TEST_CASE("tree: two generated fixture trees compare equal and hold what they promise") {
    test::require_root_and_btrfs();
    test::TempDir a;
    test::TempDir b;
    test::make_fixture_tree(a.path());
    test::make_fixture_tree(b.path());
    const auto diffs = test::compare_trees(a.path(), b.path(), {.compare_atime = true});
    INFO(joined(diffs));
    CHECK(diffs.empty());

    struct stat st {};
    REQUIRE(::lstat((a.path() / fixture::setuid_binary).c_str(), &st) == 0);
    CHECK(st.st_mode == (S_IFREG | 04755));
    REQUIRE(::lstat((a.path() / fixture::sparse_file).c_str(), &st) == 0);
    CHECK(st.st_size == 100 << 20);
    CHECK(st.st_blocks * 512 < (1 << 20));
    REQUIRE(::lstat((a.path() / fixture::hardlink_triple[2]).c_str(), &st) == 0);
    CHECK(st.st_nlink == 3);
    REQUIRE(::lstat((a.path() / fixture::block_device).c_str(), &st) == 0);
    CHECK(S_ISBLK(st.st_mode));
    CHECK(st.st_rdev == makedev(7, 200));
    CHECK(::lgetxattr((a.path() / fixture::capability_binary).c_str(), "security.capability", nullptr, 0) == 20);
    CHECK(::lgetxattr((a.path() / fixture::acl_file).c_str(), "system.posix_acl_access", nullptr, 0) > 0);
    CHECK(::lgetxattr((a.path() / fixture::acl_default_dir).c_str(), "system.posix_acl_default", nullptr, 0) > 0);
    const bool selinux = test::selinux_xattr_supported(a.path());
    const std::string note =
        "security.selinux xattr on " + a.path().string() + ": " + (selinux ? "kept" : "refused, skipped");
    MESSAGE(note);
    CHECK((::lgetxattr((a.path() / fixture::setuid_binary).c_str(), "security.selinux", nullptr, 0) > 0) == selinux);
    CHECK(run_checked({"getcap", (a.path() / fixture::capability_binary).string()}).out.find("cap_net_raw=ep") !=
          std::string::npos);
}

TEST_CASE("tree: a different seed gives a different tree") {
    test::require_root_and_btrfs();
    test::TempDir a;
    test::TempDir b;
    test::make_fixture_tree(a.path(), {.sparse_size = small_sparse});
    test::make_fixture_tree(b.path(), {.sparse_size = small_sparse, .seed = 7});
    const auto diffs = test::compare_trees(a.path(), b.path());
    CHECK_FALSE(diffs.empty());
}

TEST_CASE("tree: cp -a keeps the whole fixture, across filesystems and by reflink on btrfs") {
    test::require_root_and_btrfs();
    test::TempDir a;
    test::make_fixture_tree(a.path());

    SUBCASE("same filesystem") {
        test::TempDir b;
        copy_tree(a.path(), b.path());
        const auto diffs = test::compare_trees(a.path(), b.path());
        INFO(joined(diffs));
        CHECK(diffs.empty());
    }
    SUBCASE("into btrfs, and reflinked within btrfs") {
        test::ScratchPool pool;
        const fs::path copy = pool.mountpoint() / "copy";
        fs::create_directory(copy);
        copy_tree(a.path(), copy);
        auto diffs = test::compare_trees(a.path(), copy);
        INFO(joined(diffs));
        CHECK(diffs.empty());

        const fs::path native = pool.mountpoint() / "native";
        const fs::path reflinked = pool.mountpoint() / "reflinked";
        fs::create_directory(native);
        fs::create_directory(reflinked);
        test::make_fixture_tree(native);
        copy_tree(native, reflinked, {"--reflink=always"});
        diffs = test::compare_trees(native, reflinked);
        INFO(joined(diffs));
        CHECK(diffs.empty());
        // The same fixture on ext4 and on btrfs: nothing filesystem-specific is compared.
        diffs = test::compare_trees(a.path(), native);
        INFO(joined(diffs));
        CHECK(diffs.empty());
    }
}

TEST_CASE("tree: the comparator reports exactly the path that changed") {
    test::require_root_and_btrfs();
    test::TempDir a_dir;
    test::TempDir b_dir;
    const fs::path& a = a_dir.path();
    const fs::path& b = b_dir.path();
    test::make_fixture_tree(a, {.sparse_size = small_sparse});
    copy_tree(a, b);
    REQUIRE(test::compare_trees(a, b).empty());

    std::vector<std::string> diffs;

    SUBCASE("mode") {
        REQUIRE(::chmod((b / fixture::setuid_binary).c_str(), 0755) == 0);
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"usr/bin/su: mode 104755 != 100755"});
    }
    SUBCASE("owner") {
        REQUIRE(::lchown((b / fixture::user_file).c_str(), 0, 0) == 0);
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"home/user/notes.txt: owner 1000:1000 != 0:0"});
    }
    SUBCASE("owner of a symlink") {
        REQUIRE(::lchown((b / "home/user/link").c_str(), 1000, 0) == 0);
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"home/user/link: owner 1000:1000 != 1000:0"});
    }
    SUBCASE("mtime of a file, by one nanosecond") {
        struct stat st {};
        REQUIRE(::lstat((a / "etc/hostname").c_str(), &st) == 0);
        timespec ts[2] = {st.st_atim, st.st_mtim};
        ts[1].tv_nsec = (ts[1].tv_nsec + 1) % 1'000'000'000;
        REQUIRE(::utimensat(AT_FDCWD, (b / "etc/hostname").c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
        diffs = test::compare_trees(a, b);
        REQUIRE(diffs.size() == 1);
        CHECK(diffs[0].rfind("etc/hostname: mtime ", 0) == 0);
    }
    SUBCASE("mtime of a symlink and of a directory") {
        const timespec ts[2] = {{0, UTIME_OMIT}, {1234567890, 5}};
        REQUIRE(::utimensat(AT_FDCWD, (b / "links/dangling").c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
        REQUIRE(::utimensat(AT_FDCWD, (b / fixture::empty_dir).c_str(), ts, 0) == 0);
        diffs = test::compare_trees(a, b);
        REQUIRE(diffs.size() == 2);
        CHECK(diffs[0].rfind("links/dangling: mtime ", 0) == 0);
        CHECK(diffs[0].find("!= 1234567890.000000005") != std::string::npos);
        CHECK(diffs[1].rfind("usr/share/empty: mtime ", 0) == 0);
    }
    SUBCASE("mtime of the root, unless the root is left out") {
        const timespec ts[2] = {{0, UTIME_OMIT}, {1234567890, 0}};
        REQUIRE(::utimensat(AT_FDCWD, b.c_str(), ts, 0) == 0);
        diffs = test::compare_trees(a, b);
        REQUIRE(diffs.size() == 1);
        CHECK(diffs[0].rfind(".: mtime ", 0) == 0);
        CHECK(test::compare_trees(a, b, {.compare_root = false}).empty());
    }
    SUBCASE("atime, only when asked for") {
        const timespec ts[2] = {{1234567890, 0}, {0, UTIME_OMIT}};
        REQUIRE(::utimensat(AT_FDCWD, (b / "etc/shadow").c_str(), ts, 0) == 0);
        CHECK(test::compare_trees(a, b).empty());
        diffs = test::compare_trees(a, b, {.compare_atime = true});
        // cp -a read every file of a, so a's atimes moved: check only that shadow is among them.
        CHECK(std::any_of(diffs.begin(), diffs.end(), [](const std::string& l) {
            return l.rfind("etc/shadow: atime ", 0) == 0 && l.find("!= 1234567890.000000000") != std::string::npos;
        }));
    }
    SUBCASE("binary xattr value") {
        const std::string value("\x00\x01\xff\xfe" "b\x00\x80", 7);
        REQUIRE(::lsetxattr((b / fixture::xattr_file).c_str(), "user.binary", value.data(), value.size(), 0) == 0);
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{
                           "xattrs/file: xattr user.binary '\\x00\\x01\\xff\\xfea\\x00\\x80' != "
                           "'\\x00\\x01\\xff\\xfeb\\x00\\x80'"});
    }
    SUBCASE("trusted xattr of a symlink removed") {
        REQUIRE(::lremovexattr((b / "xattrs/symlink").c_str(), "trusted.strata-test") == 0);
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"xattrs/symlink: xattr trusted.strata-test only in a"});
    }
    SUBCASE("capability") {
        REQUIRE(::removexattr((b / fixture::capability_binary).c_str(), "security.capability") == 0);
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"usr/bin/ping: xattr security.capability only in a"});
    }
    SUBCASE("access ACL") {
        run_checked({"setfacl", "-m", "u:1001:r--", (b / fixture::acl_file).string()});
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"acl/file: xattr system.posix_acl_access "
                                                "u::rw-,u:1000:rw-,g::r--,m::rw-,o::r-- != "
                                                "u::rw-,u:1000:rw-,u:1001:r--,g::r--,m::rw-,o::r--"});
    }
    SUBCASE("default ACL") {
        run_checked({"setfacl", "-d", "-x", "g:42", (b / fixture::acl_default_dir).string()});
        diffs = test::compare_trees(a, b);
        REQUIRE(diffs.size() == 1);
        CHECK(diffs[0].rfind("acl/default: xattr system.posix_acl_default ", 0) == 0);
    }
    SUBCASE("hardlink broken into a copy") {
        const std::string rel(fixture::hardlink_triple[2]);
        run_checked({"cp", "-a", (b / rel).string(), (b / (rel + ".tmp")).string()});
        fs::rename(b / (rel + ".tmp"), b / rel);
        copy_times(a, b, parent_of(rel));
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"usr/bin/busybox: hardlinks {usr/bin/busybox, usr/bin/sh, "
                                                "usr/sbin/init} != {usr/bin/busybox, usr/bin/sh} {usr/sbin/init}"});
    }
    SUBCASE("two files joined into a hardlink") {
        // names/- and etc/one-byte differ in content, so use two equal files of the fixture.
        fs::remove(b / fixture::hardlink_pair[1]);
        REQUIRE(::link((b / "etc/hostname").c_str(), (b / fixture::hardlink_pair[1]).c_str()) == 0);
        copy_times(a, b, parent_of(fixture::hardlink_pair[1]));
        diffs = test::compare_trees(a, b, {.max_differences = 1000});
        INFO(joined(diffs));
        // pair-b now differs in content and is linked to etc/hostname instead of pair-a.
        CHECK(std::any_of(diffs.begin(), diffs.end(), [](const std::string& l) {
            return l == "etc/hostname: hardlinks {etc/hostname} != {etc/hostname, usr/lib/data/pair-b}";
        }));
        CHECK(std::any_of(diffs.begin(), diffs.end(), [](const std::string& l) {
            return l == "usr/lib/data/pair-a: hardlinks {usr/lib/data/pair-a, usr/lib/data/pair-b} != "
                        "{etc/hostname, usr/lib/data/pair-b} {usr/lib/data/pair-a}";
        }));
    }
    SUBCASE("symlink target") {
        const std::string rel(fixture::relative_symlink);
        fs::remove(b / rel);
        fs::create_symlink("../etc/hostnamE", b / rel);
        copy_times(a, b, rel);
        copy_times(a, b, parent_of(rel));
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"links/relative: symlink target '../etc/hostname' != '../etc/hostnamE'"});
    }
    SUBCASE("one content byte") {
        write_at(b / fixture::random_file, "\x5a", 777777);
        copy_times(a, b, std::string(fixture::random_file));
        diffs = test::compare_trees(a, b);
        if (diffs.empty()) {
            // The byte happened to be 0x5a already.
            write_at(b / fixture::random_file, "\xa5", 777777);
            diffs = test::compare_trees(a, b);
        }
        CHECK(diffs == std::vector<std::string>{"usr/lib/data/random-1M: content differs at byte 777777"});
    }
    SUBCASE("content in a hole") {
        write_at(b / fixture::sparse_file, "x", 2 << 20);
        copy_times(a, b, std::string(fixture::sparse_file));
        diffs = test::compare_trees(a, b);
        REQUIRE(diffs.size() == 2);
        CHECK(diffs[0] == "usr/lib/data/sparse: content differs at byte 2097152");
        CHECK(diffs[1].rfind("usr/lib/data/sparse: not sparse: ", 0) == 0);
    }
    SUBCASE("hole filled with zeros") {
        write_at(b / fixture::sparse_file, std::string(1 << 20, '\0'), 1 << 20);
        copy_times(a, b, std::string(fixture::sparse_file));
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{
                           "usr/lib/data/sparse: not sparse: 1048576 bytes of data where a has holes, from byte 1048576"});
        CHECK(test::compare_trees(a, b, {.expect_sparse = false}).empty());
        // The other way round is fine: b may have holes where a has zeros.
        CHECK(test::compare_trees(b, a).empty());
    }
    SUBCASE("device number") {
        const std::string rel(fixture::char_device);
        fs::remove(b / rel);
        REQUIRE(::mknod((b / rel).c_str(), S_IFCHR | 0666, makedev(1, 5)) == 0);
        REQUIRE(::chmod((b / rel).c_str(), 0666) == 0);
        copy_times(a, b, rel);
        copy_times(a, b, parent_of(rel));
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"dev/null: rdev 1:3 != 1:5"});
    }
    SUBCASE("type") {
        const std::string rel = "run/fifo";
        fs::remove(b / rel);
        fs::create_directory(b / rel);
        copy_times(a, b, parent_of(rel));
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"run/fifo: type fifo != directory"});
    }
    SUBCASE("missing and extra names; a missing directory is one line") {
        fs::remove(b / "etc/empty");
        { const Fd f(check_errno(::open((b / "etc/new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644), "create", "etc/new")); }
        fs::remove_all(b / "deep/d01");
        copy_times(a, b, "etc");
        copy_times(a, b, "deep");
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"deep/d01: only in a (directory)",
                                                "etc/empty: only in a (regular file)",
                                                "etc/new: only in b (regular file)"});
    }
    SUBCASE("names are escaped") {
        const std::string rel = "names/new\nline";
        REQUIRE(::chmod((b / rel).c_str(), 0600) == 0);
        diffs = test::compare_trees(a, b);
        CHECK(diffs == std::vector<std::string>{"names/new\\nline: mode 100644 != 100600"});
    }
    SUBCASE("security.selinux, where the filesystem keeps it") {
        if (!test::selinux_xattr_supported(b)) return;
        const std::string label("system_u:object_r:bin_t:s0", 27);
        REQUIRE(::lsetxattr((b / fixture::setuid_binary).c_str(), "security.selinux", label.data(), label.size(), 0) == 0);
        diffs = test::compare_trees(a, b);
        INFO(joined(diffs));
        REQUIRE(diffs.size() == 1);
        CHECK(diffs[0].rfind("usr/bin/su: xattr security.selinux ", 0) == 0);
    }
    SUBCASE("the list stops after max_differences") {
        test::TempDir empty;
        diffs = test::compare_trees(a, empty.path(), {.max_differences = 5});
        REQUIRE(diffs.size() == 6);
        CHECK(diffs[5] == "... (stopped after 5 differences)");
    }
}
