#pragma once
// Write commands of a rebuilt send stream handed to `btrfs receive` with the blocks they share
// with the parent as clone commands: receive then reflinks those blocks from the parent's extents
// instead of writing (and the final sync flushing) them again, and the new tree shares them with
// its parent on disk. A file that gained a line keeps all of its blocks but the last.
//
// Only whole blocks of the file system are cloned, from the same offset of the parent file the
// payload names as the data's source, where the parent's bytes are the data's, and only after
// that data matched its digest: the tree receive builds is byte for byte the one the original
// writes would have built. The stream's own digest is the
// caller's business and is taken over the original commands.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "stream/send_stream.hpp"

namespace strata::delta {

// The parent of an incremental stream as its first command names it (btrfs receive looks it up
// by this reference for the snapshot and for every clone), and the stream's version, read from
// the stream's first bytes as they pass.
class StreamStart {
public:
    void feed(std::string_view bytes);
    bool known() const noexcept { return done_; }
    uint32_t version() const noexcept { return version_; }
    // nullopt: a full stream, or a start that could not be read (then no clones: receive checks).
    const std::optional<stream::SubvolumeRef>& parent() const noexcept { return parent_; }

private:
    std::string start_;
    bool done_ = false;
    uint32_t version_ = 0;
    std::optional<stream::SubvolumeRef> parent_;
};

// Bytes of a parent file at its offsets [offset, offset + bytes.size()).
struct ParentBytes {
    std::string_view path;  // in the parent tree
    uint64_t offset = 0;
    std::string_view bytes;
};

using CommandSink = std::function<void(std::string_view command)>;

// Turns write commands (whole, as make_command builds them) into writes and clones for out. A
// command that is not path, offset, data as the kernel lays them out passes on as it is.
class CloneWriter {
public:
    CloneWriter(uint32_t version, stream::SubvolumeRef parent, uint64_t block_size, CommandSink out);
    // One write command; clones of consecutive blocks are merged across calls until flush().
    void write(std::string_view command, const ParentBytes& parent);
    void flush();

private:
    void put_write(std::string_view path, uint64_t offset, std::string_view data);
    bool same_block(uint64_t offset, std::string_view block, const ParentBytes& parent) const;

    uint32_t version_;
    stream::SubvolumeRef parent_;
    uint64_t block_size_;
    CommandSink out_;
    struct Clone {
        std::string path, source_path;
        uint64_t offset = 0, length = 0;
    };
    std::optional<Clone> pending_;
};

// The block size clones must be aligned to on the file system of fd (btrfs: its sector size);
// nullopt when it cannot be told.
std::optional<uint64_t> clone_block_size(int fd);

}  // namespace strata::delta
