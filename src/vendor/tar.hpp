#pragma once
// Unpacking vendor trees from tar archives (`strata import NAME --from-tar FILE`), faithfully and
// without letting the archive write anywhere but the destination.
//
// What is kept: regular files, directories, symlinks, hardlinks, character and block devices and
// fifos; all mode bits (setuid, setgid, sticky); numeric owner and group; mtime and atime;
// extended attributes (pax SCHILY.xattr / LIBARCHIVE.xattr, binary values, security.capability
// and security.selinux included); POSIX ACLs (pax SCHILY.acl); file flags (chattr, when the
// archive has them); holes of sparse files (GNU and pax sparse entries, and runs of zeros).
// Directory modes and times are applied after their contents, when the archive is finished.
//
// Owner and group are the numbers in the archive, never looked up by name: the tree's ids belong
// to the OS inside it, not to the host that unpacks it.
//
// Formats: ustar, pax and GNU tar, uncompressed or compressed with gzip, bzip2, xz, lzma, zstd or
// lz4; the compression is recognised by content, not by file name. Other archive formats
// (cpio, zip, ...) are refused.
//
// Every entry is checked before anything is written for it, and the first bad entry stops the
// extraction with Fault::InvalidInput and a one-line message naming it, e.g.
//   extract '/tmp/os.tar': tar entry '../etc/passwd': '..' component not allowed
// Refused: absolute names, '..' components, empty names; names that lead through a symlink of
// the archive; an entry that appears twice; a hardlink whose target is not an earlier
// non-directory entry (so a hardlink can never reach a file outside the tree); sockets and
// unknown entry types; a root entry ("./") that is not a directory. Leading "./", "." and empty
// components are dropped ("./usr//bin/." is "usr/bin"). Symlink targets are not checked: they
// may be absolute, as they are resolved inside the booted OS, and nothing is written through
// them (libarchive's ARCHIVE_EXTRACT_SECURE_* checks are on as a second line of defense).
// The root entry, if present, sets the destination directory's own mode, owner and times.
//
// Anything that would lose fidelity is an error, not a warning: libarchive's ARCHIVE_WARN (an
// xattr, ACL, owner, mode, time or file flag that could not be set, a name that cannot be
// decoded, a malformed pax record) fails the extraction like a hard error. Truncated or corrupt
// archives fail with Fault::InvalidInput; I/O errors and a full disk with Fault::Failed.
//
// Names in pax headers are UTF-8 by definition; libarchive decodes them (independent of the
// caller's locale) and, as it always does for UTF-8 headers, normalizes them to Unicode NFC.
// Names in ustar/GNU headers, and pax names marked hdrcharset=BINARY, are taken byte for byte.
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

// Reports archive bytes consumed so far (compressed bytes, as read from the source) and the
// source's size when it is known (a regular file). Called about every MiB and once at the end
// with the final count, always on the thread that called extract_tar. An exception thrown by the
// callback cancels the extraction and propagates to the caller.
using TarProgress = std::function<void(uint64_t bytes_read, std::optional<uint64_t> total)>;

// Extracts the archive at `source` ("-" is standard input) into `destination`, an existing empty
// directory. Throws strata::Error as described above; the message starts with
// "extract '<source>'" (or "extract from standard input").
void extract_tar(const std::filesystem::path& source, const Dir& destination, const TarProgress& on_progress = {});

// The same for an archive read from an open file descriptor, which is left open. source_name is
// used in messages only.
void extract_tar(int fd, std::string_view source_name, const Dir& destination, const TarProgress& on_progress = {});

}  // namespace strata::vendor
