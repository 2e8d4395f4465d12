#pragma once
// strata's own reader for btrfs send streams (what `btrfs send` writes and `btrfs receive`
// applies). `btrfs receive` trusts its input: it skips unknown commands and joins every path it
// is given, '..' included, to the target directory. So strata passes an untrusted stream through
// this reader and lets `btrfs receive` have no command that the reader has not checked whole. docs/send-stream.md
// describes the format and every check; in short:
//
//   stream   = header command* ; the first command is subvol or snapshot, the last is end
//   header   = "btrfs-stream\0" u32:version                       (version 1 or 2)
//   command  = u32:payload_length u16:type u32:crc32c payload      (crc over header+payload,
//   payload  = attribute*                                           with the crc field zeroed)
//   attribute= u16:type u16:length value    (v2: `data` has no length and runs to the end)
//   all integers little-endian
//
// The validator is push-based and keeps at most one command in memory, so a stream of any size
// can be checked as it arrives from a pipe or a download. A stream that fails any check is
// rejected as a whole with Error (Fault::InvalidInput) and a one-line message naming the command
// and the reason, e.g.
//   command 17 (rename): path_to '../etc/passwd': '..' component not allowed
//   truncated stream after command 41 (missing end command)
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "base/progress.hpp"
#include "stream/protocol.hpp"

namespace strata::stream {

using Uuid = std::array<uint8_t, 16>;
std::string format_uuid(const Uuid& uuid);  // 8-4-4-4-12 lowercase hex

// A command's payload may not exceed this. The kernel sends at most 64 KiB per command in v1
// and 16 KiB + 128 KiB (one compressed extent), page-aligned, in v2; the margin leaves room for
// future senders while keeping the memory of a validator bounded.
inline constexpr uint32_t max_command_payload = 16u << 20;
// CLONE commands name the subvolumes they copy extents from; the kernel only clones from the
// sent subvolume, its parent and the `-c` sources, so a long list means a hostile stream.
inline constexpr size_t max_clone_sources = 1024;

struct SubvolumeRef {
    Uuid uuid{};
    uint64_t ctransid = 0;  // the transaction the subvolume was sent at
};

struct StreamSummary {
    uint32_t version = 0;
    uint64_t command_count = 0;  // every command, from subvol/snapshot to end
    uint64_t total_bytes = 0;    // the whole stream, header included
    std::string subvolume_name;  // as the stream names it: one path component
    SubvolumeRef subvolume;      // the sent subvolume (becomes received_uuid on the receiver)
    // Only for an incremental stream (SNAPSHOT): the subvolume the receiver must already have.
    std::optional<SubvolumeRef> parent;
    // Subvolumes that CLONE commands copy extents from (may include the sent one and the parent).
    std::set<Uuid> clone_sources;
    // `btrfs receive` finds the parent and clone sources by uuid anywhere on the filesystem, so
    // before receiving, the caller checks that each is a subvolume this stream may read from.

    bool incremental() const noexcept { return parent.has_value(); }
};

class StreamValidator {
public:
    StreamValidator();

    // Checks the next bytes of the stream; pieces may have any size and split anything. Throws
    // Error (Fault::InvalidInput) as soon as the bytes so far cannot be the start of a valid
    // stream; after that every call throws the same error again.
    void feed(std::span<const std::byte> data);
    // The end of the input: throws unless the stream ended exactly with its END command.
    StreamSummary finish();

    uint64_t bytes_fed() const noexcept { return summary_.total_bytes; }
    // What the commands checked so far have shown: once the first command is through, the sent
    // subvolume and parent; the clone sources as they appear. A caller that forwards the bytes it
    // fed checks these before forwarding (a command is only recorded once it is complete and
    // valid, and a receiver cannot act on the incomplete command that may end a piece).
    const StreamSummary& seen() const noexcept { return summary_; }

private:
    enum class Phase { StreamHeader, CommandHeader, CommandPayload, Ended, Failed };

    void feed_unchecked(std::span<const std::byte> data);
    void on_unit(std::span<const std::byte> unit);
    void on_stream_header(std::span<const std::byte> header);
    void on_command_header(std::span<const std::byte> header);
    void on_command_payload(std::span<const std::byte> payload);
    void expect(Phase phase, size_t unit_size);
    [[noreturn]] void fail_truncated() const;
    [[noreturn]] void rethrow_failure() const;

    Phase phase_ = Phase::StreamHeader;
    size_t unit_size_ = stream_header_size;  // bytes the current phase consumes at once
    std::vector<std::byte> partial_;         // the current unit, when it arrives in pieces
    std::array<std::byte, command_header_size> command_header_{};
    uint16_t command_type_ = 0;
    StreamSummary summary_;
    std::string failure_;
};

// Reads fd to its end in chunks and validates everything read. progress, if set, is called with
// phase "validate" after each chunk (total is known when fd is a regular file). Read errors throw
// Error (Fault::Failed); stream errors as StreamValidator.
StreamSummary validate_stream(int fd, const ProgressFn& progress = {});

}  // namespace strata::stream
