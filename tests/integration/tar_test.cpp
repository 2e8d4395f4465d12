#include "support/errors.hpp"
#include "vendor/tar.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <thread>
#include <vector>

#include "base/error.hpp"
#include "btrfs/subvolume.hpp"
#include "support/scratch_pool.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

void sh(const std::string& script) {
    const auto r = run_process({"sh", "-euc", script});
    INFO(script);
    INFO(r.err);
    REQUIRE(r.exit_status == 0);
}

std::string q(const fs::path& p) {
    return "'" + p.string() + "'";
}

using test::error_of;

// GNU tar, as the brief for `strata import --from-tar` documents it.
void gnu_tar(const fs::path& source, const fs::path& archive, const std::string& extra = "") {
    sh("tar --xattrs --xattrs-include='*' --acls --sparse --numeric-owner " + extra + " -C " + q(source) +
       " -cf " + q(archive) + " .");
}

// A small OS-like tree with every kind of metadata a vendor tree can carry. Times are set last,
// as creating entries changes directory mtimes.
void make_fixture(const fs::path& src) {
    fs::create_directory(src);
    sh("cd " + q(src) + R"SH(
mkdir -p usr/bin usr/lib etc dev run acldir emptydir
mkdir -p "deep/$(printf 'd%.0s' $(seq 120))/$(printf 'e%.0s' $(seq 120))"
printf 'long\n' > "deep/$(printf 'd%.0s' $(seq 120))/$(printf 'e%.0s' $(seq 120))/$(printf 'f%.0s' $(seq 120))"

printf 'tool\n' > usr/bin/tool
chown 0:0 usr/bin/tool
chmod 4755 usr/bin/tool
if command -v setcap >/dev/null; then setcap cap_net_raw+ep usr/bin/tool
else setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= usr/bin/tool; fi
# Refused by a kernel whose SELinux policy does not know the label; the tree is tested without.
setfattr -n security.selinux -v system_u:object_r:bin_t:s0 usr/bin/tool 2>/dev/null || true
printf 'lib' > usr/lib/libx.so.1
chown 0:50 usr/lib/libx.so.1
chmod 2711 usr/lib/libx.so.1
ln -s libx.so.1 usr/lib/libx.so

printf 'secret' > etc/owned
chown 1234:5678 etc/owned
chmod 0640 etc/owned
setfacl -m u:4321:r,g:8765:rw etc/owned
setfacl -m u:1000:rwx,g:2000:r acldir
touch acldir/before
setfacl -d -m u:1001:rx acldir
touch acldir/after

mknod dev/null c 1 3
mknod dev/loop7 b 7 7
mkfifo run/fifo
chown 42:43 run/fifo
chmod 0620 run/fifo
ln -s /etc/os-release abslink
ln -s usr/bin/tool rellink

printf 'shared' > hl1
ln hl1 hl2
ln hl1 usr/hl3
ln -s somewhere symhl1
ln symhl1 symhl2

printf 'bin\000\377\001' > xattrs
setfattr -n user.binary -v 0x62696e00ff01 xattrs
setfattr -n user.empty xattrs
setfattr -n trusted.overlay.opaque -v y xattrs

truncate -s 100M sparse
printf x | dd of=sparse bs=1 seek=50000000 conv=notrunc status=none
printf tail >> sparse
printf 'utf8' > "$(printf 'caf\303\251')"

chmod 1777 emptydir
chmod 0750 .
chown 7:8 .
touch -h -d '2004-04-04 04:04:04.444444444' rellink
touch -d '2003-03-03 03:03:03.333333333' usr/bin/tool
touch -a -d '2005-05-05 05:05:05.5' etc/owned
touch -d '2001-02-03 04:05:06.123456789' emptydir usr/bin usr acldir dev
touch -d '2002-01-01 00:00:00.25' .
)SH");
}

struct Node {
    struct stat st {};
    std::map<std::string, std::string> xattrs;
    std::string link;
};

std::map<std::string, std::string> xattrs_of(const fs::path& p) {
    std::map<std::string, std::string> out;
    std::vector<char> names(65536);
    const ssize_t n = ::llistxattr(p.c_str(), names.data(), names.size());
    REQUIRE(n >= 0);
    for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(names.data() + i)) + 1) {
        const char* name = names.data() + i;
        std::vector<char> value(65536);
        const ssize_t size = ::lgetxattr(p.c_str(), name, value.data(), value.size());
        REQUIRE(size >= 0);
        out[name] = std::string(value.data(), static_cast<size_t>(size));
    }
    return out;
}

std::map<std::string, Node> tree_of(const fs::path& root) {
    std::map<std::string, Node> out;
    auto add = [&](const fs::path& p, const std::string& key) {
        Node node;
        REQUIRE(::lstat(p.c_str(), &node.st) == 0);
        node.xattrs = xattrs_of(p);
        if (S_ISLNK(node.st.st_mode)) node.link = fs::read_symlink(p).string();
        out[key] = std::move(node);
    };
    add(root, ".");
    for (const auto& e : fs::recursive_directory_iterator(root))
        add(e.path(), fs::relative(e.path(), root).string());
    return out;
}

// Every attribute a faithful copy keeps, entry by entry.
void check_same_tree(const fs::path& expected_root, const fs::path& actual_root) {
    const auto expected = tree_of(expected_root);
    const auto actual = tree_of(actual_root);
    std::vector<std::string> expected_names, actual_names;
    for (const auto& [name, node] : expected) expected_names.push_back(name);
    for (const auto& [name, node] : actual) actual_names.push_back(name);
    REQUIRE(expected_names == actual_names);
    for (const auto& [name, e] : expected) {
        INFO("entry: ", name);
        const Node& a = actual.at(name);
        CHECK(a.st.st_mode == e.st.st_mode);
        CHECK(a.st.st_uid == e.st.st_uid);
        CHECK(a.st.st_gid == e.st.st_gid);
        CHECK(a.st.st_rdev == e.st.st_rdev);
        CHECK(a.st.st_size == e.st.st_size);
        CHECK(a.st.st_mtim.tv_sec == e.st.st_mtim.tv_sec);
        CHECK(a.st.st_mtim.tv_nsec == e.st.st_mtim.tv_nsec);
        CHECK(a.st.st_atim.tv_sec == e.st.st_atim.tv_sec);
        CHECK(a.st.st_atim.tv_nsec == e.st.st_atim.tv_nsec);
        if (!S_ISDIR(e.st.st_mode)) CHECK(a.st.st_nlink == e.st.st_nlink);
        CHECK(a.xattrs == e.xattrs);  // includes system.posix_acl_*: the ACLs, bit for bit
        CHECK(a.link == e.link);
        if (S_ISREG(e.st.st_mode))
            CHECK(run_process({"cmp", "--", (expected_root / name).string(), (actual_root / name).string()})
                      .exit_status == 0);
    }
}

struct stat lstat_of(const fs::path& p) {
    struct stat st {};
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    return st;
}

// The scratch filesystem without atime updates, so archiving the source does not change the
// atimes the test compares.
void remount_noatime(const test::ScratchPool& scratch) {
    sh("mount -o remount,noatime " + q(scratch.mountpoint()));
}

Dir make_destination(const test::ScratchPool& scratch, const std::string& name) {
    const Dir top = Dir::open(scratch.mountpoint());
    btrfs::create_subvolume(top, name);
    return top.open_dir(name);
}

// Puts a file or pipe on standard input for the lifetime of the object.
class StdinFrom {
public:
    explicit StdinFrom(int fd) : saved_(::dup(STDIN_FILENO)) {
        REQUIRE(saved_ >= 0);
        REQUIRE(::dup2(fd, STDIN_FILENO) == STDIN_FILENO);
    }
    ~StdinFrom() {
        ::dup2(saved_, STDIN_FILENO);
        ::close(saved_);
    }
    StdinFrom(const StdinFrom&) = delete;
    StdinFrom& operator=(const StdinFrom&) = delete;

private:
    int saved_;
};

// Builds the archives GNU tar would not: python's tarfile writes what it is told.
const char* hostile_script = R"PY(
import io, sys, tarfile
case, out, outside = sys.argv[1], sys.argv[2], sys.argv[3]
def add(t, name, type=tarfile.REGTYPE, data=b"x", linkname="", pax=None):
    i = tarfile.TarInfo(name); i.type = type; i.linkname = linkname
    if pax: i.pax_headers = pax
    if type == tarfile.REGTYPE:
        i.size = len(data); t.addfile(i, io.BytesIO(data))
    else:
        t.addfile(i)
cases = {
 "dotdot": lambda t: add(t, "../canary"),
 "absolute": lambda t: add(t, outside + "/canary"),
 "inner-dotdot": lambda t: (add(t, "a", tarfile.DIRTYPE), add(t, "a/../../canary")),
 "pax-path": lambda t: add(t, "harmless", pax={"path": "../canary"}),
 "symlink-then-file": lambda t: (add(t, "evil", tarfile.SYMTYPE, linkname=outside), add(t, "evil/canary")),
 "symlink-then-hardlink": lambda t: (add(t, "evil", tarfile.SYMTYPE, linkname="/etc"),
                                     add(t, "h", tarfile.LNKTYPE, linkname="evil/passwd")),
 "hardlinked-symlink": lambda t: (add(t, "evil", tarfile.SYMTYPE, linkname=outside),
                                  add(t, "alias", tarfile.LNKTYPE, linkname="evil"), add(t, "alias/canary")),
 "hardlink-dotdot": lambda t: add(t, "h", tarfile.LNKTYPE, linkname="../../etc/passwd"),
 "hardlink-absolute": lambda t: add(t, "h", tarfile.LNKTYPE, linkname="/etc/shadow"),
 "hardlink-forward": lambda t: (add(t, "h", tarfile.LNKTYPE, linkname="later"), add(t, "later")),
 "hardlink-directory": lambda t: (add(t, "d", tarfile.DIRTYPE), add(t, "h", tarfile.LNKTYPE, linkname="d")),
 "duplicate": lambda t: (add(t, "f"), add(t, "./f", data=b"replaced")),
 "empty-name": lambda t: add(t, ""),
 "root-symlink": lambda t: add(t, ".", tarfile.SYMTYPE, linkname="/etc"),
 "acl-numeric": lambda t: add(t, "f", pax={"SCHILY.acl.access":
     "user::rw-\nuser:alice:r--:1234\ngroup::r--\ngroup:staff:rw-:4321\nmask::rw-\nother::r--\n"}),
 "acl-name-only": lambda t: add(t, "f", pax={"SCHILY.acl.access":
     "user::rw-\nuser:alice:r--\ngroup::r--\nmask::r--\nother::r--\n"}),
 "acl-malformed": lambda t: add(t, "f", pax={"SCHILY.xattr.system.posix_acl_access": "\x02\x00\x00\x00\x07\x00"}),
 "nfd": lambda t: add(t, "cafe\u0301"),
 "nfc-and-nfd": lambda t: (add(t, "caf\u00e9"), add(t, "cafe\u0301")),
 "boundary": lambda t: (add(t, "first"), add(t, "second")),
 "newline-long-name": lambda t: add(t, "a\n" + "b" * 300),
 "xattr-unsupported": lambda t: add(t, "f", pax={"SCHILY.xattr.system.strata_bogus": "1"}),
 "fflags": lambda t: (add(t, "d", tarfile.DIRTYPE, pax={"SCHILY.fflags": "schg", "mtime": "1000000000.5"}),
                      add(t, "d/f"), add(t, "n", pax={"SCHILY.fflags": "nodump"})),
}
fmt = tarfile.PAX_FORMAT
if case == "raw-bytes":
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as t:
        add(t, b"latin1-caf\xe9".decode("utf-8", "surrogateescape"))
    sys.exit(0)
with tarfile.open(out, "w", format=fmt) as t:
    cases[case](t)
if case == "boundary":  # cut after the first entry: a complete entry, no end-of-archive marker
    data = open(out, "rb").read()
    open(out, "wb").write(data[:1024])
)PY";

struct Hostile {
    test::TempDir dir;
    fs::path outside = dir.path() / "outside";
    fs::path destination = outside / "tree";

    Hostile() { fs::create_directories(destination); }

    fs::path archive(const std::string& name) {
        const auto script = dir.path() / "hostile.py";
        std::ofstream(script) << hostile_script;
        const auto out = dir.path() / (name + ".tar");
        const auto r = run_process({"python3", script.string(), name, out.string(), outside.string()});
        INFO(r.err);
        REQUIRE(r.exit_status == 0);
        return out;
    }

    std::string extract(const std::string& name) {
        const auto file = archive(name);
        return error_of([&] { vendor::extract_tar(file, Dir::open(destination)); });
    }
};

}  // namespace

TEST_CASE(
    "a GNU tar archive of a tree extracts identically: owners, modes, times, xattrs, ACLs, "
    "devices, hardlinks, holes, compressed or not") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    remount_noatime(scratch);
    const auto src = scratch.mountpoint() / "src";
    make_fixture(src);

    for (const std::string flag : {"", "-z", "-J", "--zstd"}) {
        INFO("compression: '", flag, "'");
        const std::string name = "tree" + (flag.empty() ? "" : flag.substr(flag.rfind('-') + 1));
        const auto archive = scratch.dir() / (name + ".tar");
        gnu_tar(src, archive, flag);
        const Dir dest = make_destination(scratch, name);
        vendor::extract_tar(archive, dest);
        check_same_tree(src, dest.path());

        // Holes stay holes: 100 MiB apparent size, a few KiB allocated.
        const auto sparse = lstat_of(dest.path() / "sparse");
        CHECK(sparse.st_size == (100 << 20) + 4);
        CHECK(sparse.st_blocks * 512 < (1 << 20));
        const auto hl1 = lstat_of(dest.path() / "hl1");
        CHECK(hl1.st_nlink == 3);
        CHECK(lstat_of(dest.path() / "hl2").st_ino == hl1.st_ino);
        CHECK(lstat_of(dest.path() / "usr/hl3").st_ino == hl1.st_ino);
        CHECK(lstat_of(dest.path() / "symhl2").st_ino == lstat_of(dest.path() / "symhl1").st_ino);
        // The file created before the default ACL did not inherit it during extraction.
        CHECK(xattrs_of(dest.path() / "acldir/before").count("system.posix_acl_access") == 0);
        CHECK(xattrs_of(dest.path() / "acldir/after").count("system.posix_acl_access") == 1);
        CHECK(xattrs_of(dest.path() / "usr/bin/tool").count("security.capability") == 1);
    }
}

TEST_CASE("GNU and pax sparse formats keep holes") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    const auto src = scratch.mountpoint() / "src";
    fs::create_directory(src);
    sh("cd " + q(src) +
       " && truncate -s 100M sparse && printf x >> sparse && "
       "printf y | dd of=sparse bs=1 seek=30000000 conv=notrunc status=none");
    const std::vector<std::string> formats = {"--format=gnu", "--format=posix --sparse-version=0.0",
                                              "--format=posix --sparse-version=0.1",
                                              "--format=posix --sparse-version=1.0"};
    for (size_t i = 0; i < formats.size(); ++i) {
        const std::string& format = formats[i];
        INFO(format);
        const std::string name = "sparse" + std::to_string(i);
        const auto archive = scratch.dir() / (name + ".tar");
        sh("tar --sparse " + format + " -C " + q(src) + " -cf " + q(archive) + " sparse");
        const Dir dest = make_destination(scratch, name);
        vendor::extract_tar(archive, dest);
        const auto st = lstat_of(dest.path() / "sparse");
        CHECK(st.st_size == (100 << 20) + 1);
        CHECK(st.st_blocks * 512 < (1 << 20));
        CHECK(
            run_process({"cmp", (src / "sparse").string(), (dest.path() / "sparse").string()}).exit_status ==
            0);
    }
}

TEST_CASE("'-' reads standard input: a file, or a pipe that is read to its end") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    remount_noatime(scratch);
    const auto src = scratch.mountpoint() / "src";
    make_fixture(src);
    const auto archive = scratch.dir() / "tree.tar.zst";
    gnu_tar(src, archive, "--zstd");
    const auto size = fs::file_size(archive);

    SUBCASE("a file") {
        const Fd file(::open(archive.c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(file);
        const Dir dest = make_destination(scratch, "from-file");
        std::optional<uint64_t> last_total;
        uint64_t last = 0;
        {
            StdinFrom in(file.get());
            vendor::extract_tar("-", dest, [&](uint64_t bytes, std::optional<uint64_t> total) {
                last = bytes;
                last_total = total;
            });
        }
        check_same_tree(src, dest.path());
        CHECK(last == size);
        CHECK(last_total == size);
    }
    SUBCASE("a pipe") {
        // GNU tar pads to whole records, here 1 MiB, far more than a pipe buffer holds. The writer
        // must see all of it taken: a reader that stopped at the end-of-archive marker would leave
        // `curl ... | strata import` with a broken pipe.
        const auto padded = scratch.dir() / "padded.tar";
        gnu_tar(src, padded, "--blocking-factor=2048");
        std::ifstream in(padded, std::ios::binary);
        const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        REQUIRE(content.size() % (1 << 20) == 0);

        std::signal(SIGPIPE, SIG_IGN);
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        size_t written = 0;
        std::thread writer([&, fd = Fd(fds[1])] {
            while (written < content.size()) {
                const ssize_t n = ::write(fd.get(), content.data() + written, content.size() - written);
                if (n <= 0) return;
                written += static_cast<size_t>(n);
            }
        });
        const Dir dest = make_destination(scratch, "from-pipe");
        std::optional<uint64_t> last_total = 0;
        uint64_t last = 0;
        std::string error;
        {
            // Closed before the join, so a writer still blocked gets EPIPE instead of hanging.
            const Fd read_end(fds[0]);
            StdinFrom stdin_pipe(read_end.get());
            error = error_of([&] {
                vendor::extract_tar("-", dest, [&](uint64_t bytes, std::optional<uint64_t> total) {
                    last = bytes;
                    last_total = total;
                });
            });
        }
        writer.join();
        REQUIRE(error == "");
        CHECK(written == content.size());
        CHECK(last == content.size());
        CHECK_FALSE(last_total);
        check_same_tree(src, dest.path());
    }
}

TEST_CASE("progress reports compressed bytes on the caller's thread, and throwing from it cancels") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    const auto src = scratch.mountpoint() / "src";
    fs::create_directory(src);
    sh("cd " + q(src) +
       " && head -c 5000000 /dev/urandom > random && mkdir d && head -c 3000000 /dev/urandom > d/more");
    const auto archive = scratch.dir() / "random.tar.gz";
    sh("tar -C " + q(src) + " -czf " + q(archive) + " .");
    const auto size = fs::file_size(archive);
    const auto cwd_before = fs::current_path();
    const mode_t umask_before = ::umask(022);
    ::umask(umask_before);

    std::vector<uint64_t> seen;
    bool same_thread = true;
    const auto caller = std::this_thread::get_id();
    const Dir dest = make_destination(scratch, "dest");
    vendor::extract_tar(archive, dest, [&](uint64_t bytes, std::optional<uint64_t> total) {
        seen.push_back(bytes);
        same_thread = same_thread && std::this_thread::get_id() == caller;
        CHECK(total == size);
    });
    REQUIRE(seen.size() >= 3);  // about every MiB of an 8 MB archive, and at the end
    CHECK(std::is_sorted(seen.begin(), seen.end()));
    CHECK(seen.back() == size);
    CHECK(same_thread);
    // The extraction ran in its own working directory; the process's is untouched.
    CHECK(fs::current_path() == cwd_before);
    CHECK(::umask(umask_before) == umask_before);

    const Dir cancelled = make_destination(scratch, "cancelled");
    CHECK_THROWS_WITH_AS(
        vendor::extract_tar(archive, cancelled,
                            [](uint64_t, std::optional<uint64_t>) { throw std::runtime_error("stop"); }),
        "stop", std::runtime_error);
}

TEST_CASE("hostile archives are refused at the first bad entry, naming it, and nothing lands outside") {
    test::require_root_and_btrfs();
    const std::map<std::string, std::string> expected = {
        {"dotdot", "tar entry '../canary': '..' component not allowed"},
        {"inner-dotdot", "tar entry 'a/../../canary': '..' component not allowed"},
        {"pax-path", "tar entry '../canary': '..' component not allowed"},
        {"symlink-then-file", "tar entry 'evil/canary': leads through symlink 'evil'"},
        {"symlink-then-hardlink",
         "tar entry 'h': hardlink target 'evil/passwd' is not an earlier file entry of the archive"},
        {"hardlinked-symlink", "tar entry 'alias/canary': leads through symlink 'alias'"},
        {"hardlink-dotdot", "tar entry 'h': hardlink target '../../etc/passwd': '..' component not allowed"},
        {"hardlink-absolute", "tar entry 'h': hardlink target '/etc/shadow': absolute path not allowed"},
        {"hardlink-forward",
         "tar entry 'h': hardlink target 'later' is not an earlier file entry of the archive"},
        {"hardlink-directory",
         "tar entry 'h': hardlink target 'd' is not an earlier file entry of the archive"},
        {"duplicate", "tar entry './f': appears twice in the archive"},
        {"empty-name", "tar entry with an empty name"},
        {"root-symlink", "tar entry '.': the root entry is not a directory"},
        {"acl-name-only", "tar entry 'f': ACL entry 'user:alice' has a name but no numeric id"},
        {"acl-malformed", "tar entry 'f': set ACL: Invalid argument"},
        {"xattr-unsupported", "tar entry 'f': Cannot restore extended attributes on this file system."},
        {"boundary", "truncated archive: ends after tar entry 'first' without an end-of-archive marker"},
    };
    for (const auto& [name, message] : expected) {
        INFO("archive: ", name);
        Hostile h;
        const std::string error = h.extract(name);
        CHECK(error.find("extract '" + (h.dir.path() / (name + ".tar")).string() + "': " + message) == 0);
        CHECK(error.find('\n') == std::string::npos);
        CHECK_FALSE(fs::exists(fs::symlink_status(h.outside / "canary")));
        CHECK_FALSE(fs::exists(fs::symlink_status(h.destination / "h")));
        CHECK_FALSE(fs::exists(fs::symlink_status(h.destination / "canary")));
    }

    Hostile h;
    const std::string absolute = h.extract("absolute");
    CHECK(absolute.find("tar entry '" + (h.outside / "canary").string() + "': absolute path not allowed") !=
          std::string::npos);
    CHECK_FALSE(fs::exists(h.outside / "canary"));

    // libarchive's own messages quote names raw; they are kept on one line too.
    Hostile l;
    const std::string long_name = l.extract("newline-long-name");
    CHECK(long_name.find("File name too long") != std::string::npos);
    CHECK(long_name.find('\n') == std::string::npos);

    // The first entry of "duplicate" was written, the second did not replace it.
    Hostile d;
    d.extract("duplicate");
    CHECK(read_file(Dir::open(d.destination), "f") == "x");
}

TEST_CASE("truncated, corrupt and non-tar input fails with Fault::InvalidInput") {
    test::require_root_and_btrfs();
    test::TempDir dir;
    const auto src = dir.path() / "src";
    fs::create_directories(src);
    sh("cd " + q(src) + " && head -c 100000 /dev/urandom > big && echo small > small");
    const auto tar = dir.path() / "x.tar";
    sh("tar -C " + q(src) + " -cf " + q(tar) + " . && gzip -k " + q(tar) + " && zstd -q " + q(tar) +
       " && head -c 60000 " + q(tar) + " > " + q(dir.path() / "cut.tar") + " && head -c 600 " + q(tar) +
       " > " + q(dir.path() / "cut-header.tar") + " && head -c 20000 " + q(tar.string() + ".gz") + " > " +
       q(dir.path() / "cut.tar.gz") + " && head -c 20000 " + q(tar.string() + ".zst") + " > " +
       q(dir.path() / "cut.tar.zst") + " && head -c 4096 /dev/urandom > " + q(dir.path() / "garbage") +
       " && : > " + q(dir.path() / "empty") + " && cd " + q(src) + " && python3 -m zipfile -c " +
       q(dir.path() / "x.zip") + " small");

    const std::map<std::string, std::string> expected = {
        {"cut.tar", "Truncated tar archive"},       {"cut-header.tar", "Truncated tar archive"},
        {"cut.tar.gz", "truncated gzip input"},     {"cut.tar.zst", "Truncated zstd input"},
        {"garbage", "Unrecognized archive format"}, {"empty", "Unrecognized archive format"},
        {"x.zip", "Unrecognized archive format"},
    };
    for (const auto& [name, reason] : expected) {
        INFO("input: ", name);
        const auto destination = dir.path() / ("dest-" + name);
        fs::create_directory(destination);
        try {
            vendor::extract_tar(dir.path() / name, Dir::open(destination));
            FAIL("extracted");
        } catch (const Error& e) {
            CHECK(std::string(e.what()).find("extract '" + (dir.path() / name).string() + "': ") == 0);
            CHECK(std::string(e.what()).find(reason) != std::string::npos);
            CHECK(e.fault() == Fault::InvalidInput);
        }
    }

    const auto full = dir.path() / "dest-full";
    fs::create_directory(full);
    CHECK(error_of([&] { vendor::extract_tar(tar, Dir::open(full)); }) == "");
    CHECK(error_of([&] { vendor::extract_tar(tar, Dir::open(full)); }) ==
          "extract '" + tar.string() + "': destination '" + full.string() + "': not empty");
    CHECK(error_of([&] { vendor::extract_tar(dir.path() / "missing.tar", Dir::open(full)); }) ==
          "extract '" + (dir.path() / "missing.tar").string() + "': No such file or directory");
}

TEST_CASE("ACLs: numeric ids from the text form are kept, names without ids are refused") {
    test::require_root_and_btrfs();
    Hostile h;
    CHECK(h.extract("acl-numeric") == "");
    const auto r = run_process({"getfacl", "-n", "--omit-header", (h.destination / "f").string()});
    CHECK(r.out == "user::rw-\nuser:1234:r--\ngroup::r--\ngroup:4321:rw-\nmask::rw-\nother::r--\n\n");

    Hostile named;
    CHECK(named.extract("acl-name-only").find("ACL entry 'user:alice' has a name but no numeric id") !=
          std::string::npos);
    CHECK_FALSE(fs::exists(named.destination / "f"));
}

TEST_CASE("names: ustar/GNU names are bytes, pax names are UTF-8 (normalized to NFC by libarchive)") {
    test::require_root_and_btrfs();
    {
        Hostile h;
        CHECK(h.extract("raw-bytes") == "");
        CHECK(fs::exists(h.destination / "latin1-caf\xe9"));
    }
    {
        // A known limit of libarchive: decomposed (NFD) names in pax headers come out composed.
        Hostile h;
        CHECK(h.extract("nfd") == "");
        CHECK(fs::exists(h.destination / "caf\xc3\xa9"));
    }
    {
        // So two names that differ only in normalization collide, and that is refused.
        Hostile h;
        CHECK(h.extract("nfc-and-nfd").find("appears twice in the archive") != std::string::npos);
    }
}

TEST_CASE("file flags are kept, and an immutable directory still gets its contents and times") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    Hostile h;
    const auto archive = h.archive("fflags");
    const Dir dest = make_destination(scratch, "dest");
    vendor::extract_tar(archive, dest);
    auto flags_of = [&](const char* name) {
        const Fd fd(::open((dest.path() / name).c_str(), O_RDONLY | O_CLOEXEC));
        int flags = 0;
        REQUIRE(::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) == 0);
        return flags;
    };
    CHECK((flags_of("d") & FS_IMMUTABLE_FL) != 0);
    CHECK((flags_of("n") & FS_NODUMP_FL) != 0);
    CHECK(fs::exists(dest.path() / "d/f"));
    const auto d = lstat_of(dest.path() / "d");
    CHECK(d.st_mtim.tv_sec == 1000000000);
    CHECK(d.st_mtim.tv_nsec == 500000000);

    const Fd fd(::open((dest.path() / "d").c_str(), O_RDONLY | O_CLOEXEC));
    int none = 0;
    CHECK(::ioctl(fd.get(), FS_IOC_SETFLAGS, &none) == 0);
}
