#pragma once
// A fixture tree with every file type and attribute strata must carry through import, send and
// receive, and a comparator that says, path by path, what differs between two trees. Both are
// built on plain syscalls (and libacl for the ACL text form), not on strata's own copy code, so
// the fixture does not share bugs with the code under test. Needs root (chown, mknod, trusted.*).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace strata::test {

struct FixtureOptions {
    // Size of the sparse file: data at the start, the middle and the end, holes between. The
    // default is the size a real tree may have; tests that copy the tree often may shrink it
    // (at least 1 MiB).
    uint64_t sparse_size = 100ull << 20;
    // Seeds the generator of all file data; the same options always give the same tree,
    // including every timestamp.
    uint64_t seed = 0x5747a7a;
};

// Creates under `root` (an existing empty directory) a tree of about 90 entries:
//  - directories: nested, empty, 0700, 0555, sticky 1777, setgid 02775 owned 0:42, 20 levels deep;
//  - regular files of 0, 1, 4095, 4096, 4097, 65537 bytes and 1 MiB of random data, a sparse file
//    of options.sparse_size, a setuid-root binary (04755), files owned 1000:1000, 0:42 and
//    65534:65534, a symlink owned 1000:1000;
//  - symlinks: relative, absolute, dangling, to a directory;
//  - hardlinks: a group of 3 names in two directories, and a pair;
//  - a char device 1:3, a block device 7:200, a fifo, a unix socket;
//  - xattrs: user.* text and binary (NUL, 0xff), user.* on a directory, trusted.* on a file and on
//    a symlink, security.capability (v2, cap_net_raw+ep), security.selinux if the filesystem
//    takes it (selinux_xattr_supported);
//  - POSIX ACLs: an access ACL on a file, a default ACL on a directory and a file that inherited it;
//  - names with spaces, UTF-8, a newline, a leading dash, and a 255-byte name;
//  - explicit atime and mtime with nanoseconds on every entry, root and symlinks included
//    (directories last, after their children exist).
// The paths below name some of these entries for tests that change one of them.
void make_fixture_tree(const std::filesystem::path& root, FixtureOptions options = {});

// Bytes shaped like machine code: `records` instructions that each hold an address; `shift` moves
// every address, as relinking a library after an inserted function does. For delta tests.
std::string code_like(size_t records, uint32_t shift, unsigned seed = 11);

namespace fixture {
inline constexpr std::string_view setuid_binary = "usr/bin/su";           // 0:0 04755
inline constexpr std::string_view capability_binary = "usr/bin/ping";     // security.capability
inline constexpr std::string_view hardlink_triple[] = {"usr/bin/busybox", "usr/bin/sh", "usr/sbin/init"};
inline constexpr std::string_view hardlink_pair[] = {"usr/lib/data/pair-a", "usr/lib/data/pair-b"};
inline constexpr std::string_view random_file = "usr/lib/data/random-1M";  // 1 MiB random data
inline constexpr std::string_view sparse_file = "usr/lib/data/sparse";
inline constexpr std::string_view user_file = "home/user/notes.txt";      // 1000:1000
inline constexpr std::string_view xattr_file = "xattrs/file";             // user.text, user.binary, trusted.*
inline constexpr std::string_view acl_file = "acl/file";                  // access ACL user:1000:rw-
inline constexpr std::string_view acl_default_dir = "acl/default";        // default ACL
inline constexpr std::string_view relative_symlink = "links/relative";    // -> ../etc/hostname
inline constexpr std::string_view char_device = "dev/null";               // 1:3
inline constexpr std::string_view block_device = "dev/loop200";           // 7:200
inline constexpr std::string_view empty_dir = "usr/share/empty";
}  // namespace fixture

// Whether the filesystem holding `dir` (an existing directory) stores a security.selinux xattr:
// it refuses with EOPNOTSUPP when it has no security xattrs, and with EINVAL when SELinux is
// active and the label is unknown. Probes on a temporary file that it removes again.
bool selinux_xattr_supported(const std::filesystem::path& dir);

struct CompareOptions {
    bool compare_atime = false;  // atime changes on reads and is seldom kept; off by default
    // Compare the attributes of `a` and `b` themselves (mode, owner, times, xattrs), not only of
    // what is below them.
    bool compare_root = true;
    // A regular file of b may not have data where a's file has a hole (SEEK_DATA/SEEK_HOLE);
    // holes in b where a has (zero) data are fine.
    bool expect_sparse = true;
    size_t max_differences = 50;  // then one line "... (stopped after N differences)"
};

// Compares two trees completely without following symlinks; returns the differences as readable
// one-line messages in walk order ("usr/bin/su: mode 104755 != 100755"), empty when the trees
// are identical. Names are relative to the roots ("." is the root) and escaped (escape.hpp).
// Compared: the set of names; per name the type, all 12 mode bits, uid, gid, atime (optional),
// mtime in nanoseconds, and all xattrs by name and binary value (ACLs, capabilities and SELinux
// labels are xattrs); per kind the size, content and holes of regular files, the target of
// symlinks, the rdev of devices; and the hardlink structure: the names that share an inode in a
// must share one inode in b, with no other names. Not compared: ctime, inode numbers, st_nlink
// and size of directories (they differ between filesystems). Missing directories are reported
// once, not name by name.
std::vector<std::string> compare_trees(const std::filesystem::path& a, const std::filesystem::path& b,
                                       CompareOptions options = {});

// A usr tree's kernel as deploy finds it: lib/modules/<kver>/vmlinuz and initrd.img holding
// `vmlinuz` and `initrd` (directories made as needed).
void write_kernel(const std::filesystem::path& tree, const std::string& kver, std::string_view vmlinuz,
                  std::string_view initrd);

// Where on the device the byte at `offset` of `file` lies (FIEMAP, its data written out first):
// two files share that block when they give the same answer. Throws when it cannot tell.
uint64_t physical_at(const std::filesystem::path& file, uint64_t offset);

}  // namespace strata::test
