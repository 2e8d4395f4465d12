#pragma once
// Unpacking vendor trees from tar archives (`strata import NAME --from-tar FILE`), faithfully and
// without letting the archive write anywhere but the destination.
//
// Kept: regular files, directories, symlinks, hardlinks, character and block devices, fifos; all
// mode bits (setuid, setgid, sticky); owner and group; mtime and atime (nanoseconds, when the
// archive has them, as pax archives do); extended attributes of any namespace with binary values
// (pax SCHILY.xattr / LIBARCHIVE.xattr: user.*, trusted.*, security.capability,
// security.selinux); POSIX ACLs, access and default; file flags (chattr), when the archive has
// them; holes of sparse files (GNU and pax sparse entries, and runs of zeros). The root entry
// ("./", as `tar -C dir .` writes it) sets the destination directory's own metadata. Directory
// times and ACLs are applied after everything else, so extracting into a directory neither bumps
// its mtime nor lets its default ACL leak into entries that did not have it.
//
// Owner, group and ACL qualifiers are the numbers in the archive, never looked up by name: the
// tree's ids belong to the OS inside it, not to the host that unpacks it. For ACLs the exact
// binary form (SCHILY.xattr.system.posix_acl_*, which GNU tar stores with
// --xattrs-include='*') is used when present; otherwise the text form (SCHILY.acl.*) must carry
// numeric ids (bsdtar's "user:alice:r--:1000"). GNU tar's text form names users without ids
// ("user:alice:r--"), and such an entry is refused rather than guessed.
//
// Formats: ustar, pax and GNU tar, uncompressed or compressed with gzip, bzip2, xz, lzma, zstd
// or lz4, recognised by content, not by file name. Other archive formats (cpio, zip) are
// refused, and so is an archive that ends without its end-of-archive marker (libarchive would
// accept one cut between two entries, which is what a truncated download looks like).
//
// Every entry is checked before anything is written for it; the first bad entry stops the
// extraction with Fault::InvalidInput and a one-line message naming it, e.g.
//   extract '/tmp/os.tar': tar entry '../etc/passwd': '..' component not allowed
// Refused: absolute names, '..' components, empty names; names that lead through a symlink of
// the archive (also a hardlinked one); an entry that appears twice; a hardlink whose target is
// not an earlier non-directory entry (so a hardlink never reaches a file outside the tree);
// sockets and unknown entry types; a root entry that is not a directory. Leading "./", "." and
// empty components are dropped ("./usr//bin/." is "usr/bin"). Symlink targets are not checked:
// they may be absolute, as they are resolved inside the booted OS, and nothing is written
// through them. libarchive's ARCHIVE_EXTRACT_SECURE_* checks stay on as a second line.
//
// Anything that would lose fidelity is an error, not a warning: libarchive's ARCHIVE_WARN (an
// xattr, owner, mode, time or file flag that could not be set, a name that cannot be decoded,
// a malformed pax record) fails the extraction like a hard error. So does an xattr the kernel
// refuses, e.g. a security.selinux label that an SELinux host will not accept. Truncated or
// corrupt input fails with Fault::InvalidInput; I/O errors and a full disk with Fault::Failed.
//
// Names: in ustar/GNU headers, and pax names marked hdrcharset=BINARY, they are taken byte for
// byte. Pax names are UTF-8 by definition and decoded as such whatever the caller's locale;
// libarchive also normalizes them to Unicode NFC, so a decomposed (NFD) name in a pax header
// comes out composed, and two names differing only in normalization collide (refused as a
// duplicate).
//
// The work runs on a helper thread whose working directory is the destination (unshare
// CLONE_FS, then fchdir): libarchive resolves names against the working directory, and neither
// the process's working directory nor its umask changes. A pipe on the input is read to its
// end, so the program writing it does not get SIGPIPE on the archive's trailing padding.
//
// Nothing is cleaned up on failure: `destination` is expected to be a staging subvolume that
// the caller throws away.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string_view>

#include "base/fd.hpp"

namespace strata::vendor {

// Reports archive bytes read from the source so far (compressed bytes, as stored) and the
// source's size when known (a regular file). Called about every MiB and once at the end, when
// bytes_read equals the total for a file; always on the thread that called extract_tar. An
// exception thrown by the callback cancels the extraction and propagates to the caller.
using TarProgress = std::function<void(uint64_t bytes_read, std::optional<uint64_t> total)>;

// Extracts the archive at `source` ("-" is standard input) into `destination`, an existing empty
// directory. Throws strata::Error as described above; its message starts with
// "extract '<source>': " (or "extract from standard input: ").
void extract_tar(const std::filesystem::path& source, const Dir& destination,
                 const TarProgress& on_progress = {});

// The same for an archive read from an open file descriptor at its current offset, which is
// left open. source_name is for messages only ("-" reads as "standard input").
void extract_tar(int fd, std::string_view source_name, const Dir& destination,
                 const TarProgress& on_progress = {});

}  // namespace strata::vendor
