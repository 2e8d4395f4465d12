// The /etc merge on real trees (btrfs, root): what apply() writes, conflicts beside their files,
// modes, owners, xattrs and ACLs, a failure while staging, deploy's merge after the state
// snapshot, and etc sync into a read-only state snapshot by one swap.
#include "deploy/etc.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "base/error.hpp"
#include "btrfs/subvolume.hpp"
#include "deploy/database.hpp"
#include "deploy/deployment.hpp"
#include "deploy/root.hpp"
#include "factory/etc_merge.hpp"
#include "support/errors.hpp"
#include "support/scratch_pool.hpp"
#include "support/tree.hpp"
#include "vendor/import.hpp"

using namespace strata;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using factory::Action;
using factory::Verdict;

namespace {

void put(const fs::path& p, const std::string& content, mode_t mode = 0644, uid_t uid = 0, gid_t gid = 0) {
    fs::create_directories(p.parent_path());
    fs::remove(p);
    std::ofstream(p, std::ios::binary) << content;
    REQUIRE(::chown(p.c_str(), uid, gid) == 0);
    REQUIRE(::chmod(p.c_str(), mode) == 0);
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct stat lstat_of(const fs::path& p) {
    struct stat st {};
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    return st;
}

std::string xattr_of(const fs::path& p, const std::string& name) {
    char buffer[256];
    const ssize_t n = ::lgetxattr(p.c_str(), name.c_str(), buffer, sizeof buffer);
    return n < 0 ? std::string("<none>") : std::string(buffer, static_cast<size_t>(n));
}

void set_xattr(const fs::path& p, const std::string& name, const std::string& value) {
    REQUIRE(::lsetxattr(p.c_str(), name.c_str(), value.data(), value.size(), 0) == 0);
}

void set_immutable(const fs::path& p, bool on) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    int flags = 0;
    REQUIRE(::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0);
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    REQUIRE(::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0);
    ::close(fd);
}

// An ACL entry user:1000:rw- as the kernel stores it (system.posix_acl_access, version 2).
std::string acl_user_1000_rw() {
    std::string acl("\x02\x00\x00\x00", 4);
    const auto entry = [&](uint16_t tag, uint16_t perm, uint32_t id) {
        acl.append(reinterpret_cast<const char*>(&tag), 2);
        acl.append(reinterpret_cast<const char*>(&perm), 2);
        acl.append(reinterpret_cast<const char*>(&id), 4);
    };
    entry(0x01, 6, 0xffffffff);  // user::rw-
    entry(0x02, 6, 1000);        // user:1000:rw-
    entry(0x04, 4, 0xffffffff);  // group::r--
    entry(0x10, 6, 0xffffffff);  // mask::rw-
    entry(0x20, 4, 0xffffffff);  // other::r--
    return acl;
}

// factory(A), factory(B) and an /etc populated from A and then changed by the admin.
struct Trees {
    fs::path base;
    fs::path a = base / "a", b = base / "b", e = base / "e";

    explicit Trees(const fs::path& dir) : base(dir) {
        for (const auto& t : {a, b}) {
            put(t / "keep.conf", "same\n");
            put(t / "admin.conf", "vendor\n");
            put(t / "mode.conf", "m\n");
            put(t / "xattr.conf", "x\n");
            put(t / "ssh/sshd_config", "Port 22\n");
            fs::create_directory_symlink("../usr/share/zoneinfo/UTC", t / "localtime");
        }
        put(a / "vendor.conf", "v1\n");
        put(b / "vendor.conf", "v2\n", 0640, 0, 42);
        put(a / "both.conf", "base\n");
        put(b / "both.conf", "vendor's\n");
        put(a / "gone.conf", "old\n");
        put(a / "gone-edited.conf", "old\n");
        put(a / "old.d/f", "f\n");
        put(b / "new.conf", "new\n", 0600, 0, 42);
        set_xattr(b / "new.conf", "user.origin", "vendor");
        put(b / "new.d/inner/deep", "deep\n");
        REQUIRE(::chmod((b / "mode.conf").c_str(), 0600) == 0);
        set_xattr(b / "xattr.conf", "user.k", "v");
        fs::remove(b / "localtime");
        fs::create_symlink("../usr/share/zoneinfo/Europe/Berlin", b / "localtime");
        // A file that becomes a directory, and a directory that becomes a file.
        put(a / "tofile", "t\n");
        put(b / "tofile/child", "c\n");
        put(a / "todir.d/x", "x\n");
        put(b / "todir.d", "now a file\n");
        // A large file, changed by the vendor in its last byte only: compared as a stream.
        std::string big(3u << 20, 'z');
        put(a / "big.bin", big);
        big.back() = 'y';
        put(b / "big.bin", big);

        fs::copy(a, e, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
        for (const auto& p : fs::recursive_directory_iterator(e)) {
            const auto src = a / fs::relative(p.path(), e);
            const auto st = lstat_of(src);
            REQUIRE(::lchown(p.path().c_str(), st.st_uid, st.st_gid) == 0);
        }
        put(e / "admin.conf", "mine\n");
        put(e / "both.conf", "admin's\n", 0640);
        put(e / "gone-edited.conf", "edited\n");
        set_xattr(e / "ssh/sshd_config", "system.posix_acl_access", acl_user_1000_rw());
        put(e / "local.conf", "only mine\n");
        // mtime alone is no change.
        fs::last_write_time(e / "keep.conf", fs::file_time_type::clock::now() - std::chrono::hours(24));
    }
};

std::map<std::string, factory::Change> by_path(const std::vector<factory::Change>& changes) {
    std::map<std::string, factory::Change> out;
    for (const auto& c : changes) out[c.path] = c;
    return out;
}

}  // namespace

TEST_CASE("apply makes untouched files follow the vendor and keeps the admin's") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    Trees t(scratch.mountpoint());
    const Dir a = Dir::open(t.a), b = Dir::open(t.b), e = Dir::open(t.e);
    const factory::Trees trees{a, b, &e};
    const auto changes = factory::plan(factory::scan(trees), factory::populated(&e));
    auto m = by_path(changes);
    CHECK(m["keep.conf"].verdict == Verdict::Unchanged);
    CHECK(m["admin.conf"].verdict == Verdict::AdminChanged);
    CHECK(m["vendor.conf"].verdict == Verdict::VendorChanged);
    CHECK(m["both.conf"] == factory::Change{"both.conf", Verdict::Conflict, Action::WriteNew});
    CHECK(m["gone.conf"] == factory::Change{"gone.conf", Verdict::Removed, Action::Remove});
    CHECK(m["gone-edited.conf"] == factory::Change{"gone-edited.conf", Verdict::Conflict, Action::Keep});
    CHECK(m["new.conf"] == factory::Change{"new.conf", Verdict::Added, Action::Add});
    CHECK(m["new.d/inner/deep"] == factory::Change{"new.d/inner/deep", Verdict::Added, Action::Add});
    CHECK(m["mode.conf"].verdict == Verdict::VendorChanged);
    CHECK(m["xattr.conf"].verdict == Verdict::VendorChanged);
    CHECK(m["ssh/sshd_config"].verdict == Verdict::AdminChanged);  // the ACL
    CHECK(m["localtime"].verdict == Verdict::VendorChanged);
    CHECK(m["tofile"].verdict == Verdict::VendorChanged);
    CHECK(m["todir.d"].verdict == Verdict::VendorChanged);
    CHECK(m["big.bin"].verdict == Verdict::VendorChanged);
    CHECK(m["local.conf"].verdict == Verdict::AdminChanged);
    CHECK(m["old.d/f"] == factory::Change{"old.d/f", Verdict::Removed, Action::Remove});

    factory::apply(trees, changes);
    CHECK(slurp(t.e / "keep.conf") == "same\n");
    CHECK(slurp(t.e / "admin.conf") == "mine\n");
    CHECK(slurp(t.e / "vendor.conf") == "v2\n");
    CHECK((lstat_of(t.e / "vendor.conf").st_mode & 07777) == 0640);
    CHECK(lstat_of(t.e / "vendor.conf").st_gid == 42);
    CHECK(slurp(t.e / "both.conf") == "admin's\n");
    CHECK(slurp(t.e / "both.conf.strata-new") == "vendor's\n");
    CHECK((lstat_of(t.e / "both.conf.strata-new").st_mode & 07777) == 0644);
    CHECK_FALSE(fs::exists(t.e / "gone.conf"));
    CHECK(slurp(t.e / "gone-edited.conf") == "edited\n");
    CHECK(slurp(t.e / "new.conf") == "new\n");
    CHECK((lstat_of(t.e / "new.conf").st_mode & 07777) == 0600);
    CHECK(lstat_of(t.e / "new.conf").st_gid == 42);
    CHECK(xattr_of(t.e / "new.conf", "user.origin") == "vendor");
    CHECK(slurp(t.e / "new.d/inner/deep") == "deep\n");
    CHECK((lstat_of(t.e / "mode.conf").st_mode & 07777) == 0600);
    CHECK(xattr_of(t.e / "xattr.conf", "user.k") == "v");
    CHECK(xattr_of(t.e / "ssh/sshd_config", "system.posix_acl_access") == acl_user_1000_rw());
    CHECK(fs::read_symlink(t.e / "localtime") == "../usr/share/zoneinfo/Europe/Berlin");
    CHECK(slurp(t.e / "tofile/child") == "c\n");
    CHECK(slurp(t.e / "todir.d") == "now a file\n");
    CHECK(slurp(t.e / "big.bin") == slurp(t.b / "big.bin"));
    CHECK(slurp(t.e / "local.conf") == "only mine\n");
    CHECK_FALSE(fs::exists(t.e / "old.d"));
    for (const auto& p : fs::recursive_directory_iterator(t.e))
        CHECK_MESSAGE(p.path().filename().string().rfind(".#strata.", 0) != 0, p.path());

    // A second merge finds nothing more to do but the conflicts.
    const auto again = by_path(factory::plan(factory::scan(trees), true));
    for (const auto& [path, c] : again) {
        CAPTURE(path);
        CHECK((c.action == Action::None || c.action == Action::Keep || c.action == Action::WriteNew));
    }
    CHECK(again.at("vendor.conf").verdict == Verdict::Unchanged);
}

TEST_CASE("a merge that fails while staging leaves etc unchanged") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    Trees t(scratch.mountpoint());
    put(t.b / "ssh/new_config", "new\n");  // lands in a directory the admin made immutable
    set_immutable(t.e / "ssh", true);
    const Dir a = Dir::open(t.a), b = Dir::open(t.b), e = Dir::open(t.e);
    const factory::Trees trees{a, b, &e};
    const auto changes = factory::plan(factory::scan(trees), true);
    const auto message = test::error_of([&] { factory::apply(trees, changes); });
    set_immutable(t.e / "ssh", false);
    CHECK_MESSAGE(message.find("Operation not permitted") != std::string::npos, message);
    CHECK_MESSAGE(message.find("/etc/ssh/new_config") != std::string::npos, message);
    // Staged entries before it (vendor.conf sorts first) were not renamed in, and are gone.
    CHECK(slurp(t.e / "vendor.conf") == "v1\n");
    CHECK(slurp(t.e / "gone.conf") == "old\n");
    CHECK_FALSE(fs::exists(t.e / "new.conf"));
    for (const auto& p : fs::recursive_directory_iterator(t.e))
        CHECK_MESSAGE(p.path().filename().string().rfind(".#strata.", 0) != 0, p.path());
}

TEST_CASE("copy_paths replaces entries whole and checks every path first") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    const fs::path from = scratch.mountpoint() / "from", to = scratch.mountpoint() / "to";
    put(from / "shadow", "rotated\n", 0640, 0, 42);
    put(from / "ssh/sshd_config", "Port 2222\n");
    fs::create_symlink("/usr/share/zoneinfo/UTC", from / "localtime");
    put(to / "shadow", "old\n", 0640, 0, 42);
    put(to / "ssh", "a file where the source has a directory\n");
    put(to / "localtime", "x\n");
    const Dir f = Dir::open(from), t = Dir::open(to);

    // A missing source among several: nothing copied.
    CHECK(test::error_of([&] {
              factory::copy_paths(f, t, {"/etc/shadow", "/etc/nope"});
          }) == "'/etc/nope' does not exist in the source");
    CHECK(test::error_of([&] {
              factory::copy_paths(f, t, {"/etc/shadow", "/var/x"});
          }) == "path '/var/x' is not under /etc");
    CHECK(slurp(to / "shadow") == "old\n");

    factory::copy_paths(f, t, {"/etc/shadow", "ssh", "/etc/ssh/sshd_config", "/etc/localtime"});
    CHECK(slurp(to / "shadow") == "rotated\n");
    CHECK((lstat_of(to / "shadow").st_mode & 07777) == 0640);
    CHECK(lstat_of(to / "shadow").st_gid == 42);
    CHECK(slurp(to / "ssh/sshd_config") == "Port 2222\n");
    CHECK(fs::read_symlink(to / "localtime") == "/usr/share/zoneinfo/UTC");
    for (const auto& p : fs::directory_iterator(to))
        CHECK(p.path().filename().string().rfind(".#strata.", 0) != 0);
}

namespace {

// A root and usr versions 1 and 2, each with a kernel and a factory /etc (os.conf names the
// version; shadow is the same in both), and a directory as $BOOT.
struct TwoVersions {
    test::ScratchPool scratch;
    test::TempDir work;
    pool::Pool p = pool::Pool::open(scratch.mountpoint());
    pool::Lock lock = p.lock(1s);
    naming::Name root = naming::Name::parse("root:web:org.example.Demo:x86_64");
    std::optional<deploy::BootTarget> boot;

    TwoVersions() {
        deploy::create_root(p, lock, root);
        for (const std::string v : {"1", "2"}) {
            const auto tree = work.path() / v;
            test::write_kernel(tree, "6.1.0", "k" + v, "i" + v);
            put(tree / "share/factory/etc/os.conf", "version " + v + "\n");
            put(tree / "share/factory/etc/shadow", "root:*:1:\n", 0640, 0, 42);
            vendor::import_directory(p, lock, naming::Name::parse("usr:org.example.Demo:x86_64:" + v), tree);
        }
        fs::create_directories(work.path() / "boot");
        boot.emplace(Dir::open(work.path() / "boot"));
        boot->tries = 0;
        boot->efivars = work.path() / "no-efivars";
        boot->cmdline = work.path() / "cmdline";
    }
};

}  // namespace

TEST_CASE("a root whose /etc was never populated gets no merge, and the report says why") {
    test::require_root_and_btrfs();
    TwoVersions w;
    CHECK_FALSE(deploy::deploy(w.p, w.lock, *w.boot, w.root, std::string("1")).etc);
    const auto d = deploy::deploy(w.p, w.lock, *w.boot, w.root, std::string("2"));
    REQUIRE(d.etc);
    CHECK(d.etc->skipped ==
          "/etc of '" + w.root.str() + "' is empty: the first boot populates it from 'usr:org.example.Demo:x86_64:2'");
    CHECK(d.etc->changes.empty());
    CHECK(fs::is_empty(w.scratch.mountpoint() / w.root.str() / "etc"));
    // What a merge would do is still there to see.
    const auto diff = deploy::etc_diff(w.p, w.root.str(), std::string("1"));
    CHECK_FALSE(diff.skipped);
    CHECK(diff.summary.vendor_changed == 1);
}

TEST_CASE("deploy merges etc after keeping the old state and etc sync swaps a read-only snapshot") {
    test::require_root_and_btrfs();
    TwoVersions w;
    auto& scratch = w.scratch;
    auto& p = w.p;
    auto& lock = w.lock;
    const auto& root = w.root;
    auto& target = *w.boot;

    auto d = deploy::deploy(p, lock, target, root, std::string("1"));
    CHECK_FALSE(d.etc);  // the first deploy moves from nothing
    const fs::path etc = scratch.mountpoint() / root.str() / "etc";
    put(etc / "os.conf", "version 1\n");
    put(etc / "shadow", "root:$6$rotated:1:\n", 0640, 0, 42);

    d = deploy::deploy(p, lock, target, root, std::string("2"));
    REQUIRE(d.etc);
    CHECK_FALSE(d.etc->skipped);
    CHECK(d.etc->summary.vendor_changed == 1);
    CHECK(d.etc->summary.admin_changed == 1);
    CHECK(slurp(etc / "os.conf") == "version 2\n");
    CHECK(slurp(etc / "shadow") == "root:$6$rotated:1:\n");
    const auto db = deploy::load_database(p);
    const std::string kept = db.roots.at(root.str()).states.at("usr:org.example.Demo:x86_64:1");
    CHECK(slurp(scratch.mountpoint() / kept / "etc/os.conf") == "version 1\n");  // before the merge

    // The password rotated under 2 goes into the state kept for 1, as one swap.
    put(etc / "shadow", "root:$6$again:1:\n", 0640, 0, 42);
    const auto id_before = btrfs::subvolume_id(Dir::open(scratch.mountpoint() / kept));
    const std::string id1 = "org.example.Demo+web+1+x86_64", id2 = "org.example.Demo+web+2+x86_64";
    CHECK(test::error_of([&] {
              deploy::etc_sync(p, lock, target, id2, id1, {"/etc/shadow", "/etc/missing"});
          }) == "etc sync '" + id2 + "' to '" + id1 + "': '/etc/missing' does not exist in the source");
    CHECK(btrfs::subvolume_id(Dir::open(scratch.mountpoint() / kept)) == id_before);
    CHECK(slurp(scratch.mountpoint() / kept / "etc/shadow") == "root:$6$rotated:1:\n");

    const auto r = deploy::etc_sync(p, lock, target, id2, id1, {"/etc/shadow"});
    CHECK(r.target == kept);
    const Dir snapshot = Dir::open(scratch.mountpoint() / kept);
    CHECK(btrfs::read_only(snapshot));
    CHECK(btrfs::subvolume_id(snapshot) != id_before);
    CHECK(slurp(scratch.mountpoint() / kept / "etc/shadow") == "root:$6$again:1:\n");
    CHECK(slurp(scratch.mountpoint() / kept / "etc/os.conf") == "version 1\n");
    CHECK((lstat_of(scratch.mountpoint() / kept / "etc/shadow").st_mode & 07777) == 0640);
    std::vector<std::string> states;
    for (const auto& e : fs::directory_iterator(scratch.mountpoint() / ".strata/state"))
        states.push_back(e.path().filename());
    CHECK(states == std::vector<std::string>{fs::path(kept).filename()});

    // Into the default: the live root's /etc.
    const auto back = deploy::etc_sync(p, lock, target, id1, id2, {"os.conf"});
    CHECK(back.target == root.str());
    CHECK(slurp(etc / "os.conf") == "version 1\n");
    CHECK(test::error_of([&] { deploy::etc_sync(p, lock, target, id1, id1, {"/etc/shadow"}); }) ==
          "etc sync '" + id1 + "' to '" + id1 + "': --from and --to name the same deployment");
}
