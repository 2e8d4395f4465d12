#pragma once
// strata's delta payload: an incremental `btrfs send -p PARENT NEW` stream with the data of its
// write commands encoded against the parent tree, which the client already has. The client
// rebuilds the original stream byte for byte and hands it to the same validation and `btrfs
// receive` as a plain stream; the rebuilt stream's sha256, recorded in the signed index, proves
// that the tree is exactly the published one before it gets its name. docs/delta.md specifies
// the format; in short:
//
//   body    = "strata-delta 2\n" record* end
//   record  = u8:type u64:length bytes[length]           (integers little-endian)
//     'R' raw      stream bytes taken as they are (the stream header, every non-write command)
//     'W' writes   consecutive write commands to one file: each command's bytes before its data
//                  and its data length, the encoding of their data joined, its sha256
//     'Z' gzip     a gzip file larger than a 'W' record may hold (an initrd): its write commands,
//                  the digest of their data, its gzip header and the predecessor whose content
//                  and parse the 'C' records that follow diff against
//     'C' content  the next piece of that gzip file's content and its parse (deflate_parse.hpp),
//                  each literal or a patch against a window of the predecessor's
//     'E' end      empty; nothing may follow
//   encodings of the data of a 'W' record:
//     literal      the bytes
//     copy         the same bytes are in a file of the parent (path, offset)
//     same         the same bytes as an earlier group the client kept (a flag on that group)
//     bsdiff       a binary patch (bsdiff.hpp) against a range of a file of the parent
//     gzip         a gzip file zlib or GNU gzip rebuilds exactly (gzip.hpp): its parameters and its content,
//                  literal or a patch against the content of a gzip file of the parent
//
// The body is meant to be compressed as one solid stream (zstd, long window), so one entropy
// coder serves the patches of thousands of files. Unchanged files cost nothing: the send stream
// does not mention them.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/fd.hpp"
#include "stream/send_stream.hpp"

namespace strata::delta {

inline constexpr std::string_view payload_magic = "strata-delta 2\n";
// Write commands are grouped up to this many data bytes; a diff source is at most this large.
// Together they bound the client's memory (a record, its source and its output).
inline constexpr uint64_t max_group_bytes = 32u << 20;
inline constexpr uint64_t max_source_bytes = 32u << 20;
inline constexpr uint64_t max_record_bytes = 96u << 20;
// A gzip file of more than max_group_bytes is rebuilt whole ('Z'): the client holds its bytes
// and a window of its predecessor's content, never a content whole.
inline constexpr uint64_t max_gzip_file_bytes = 96u << 20;
inline constexpr uint64_t max_gzip_content_bytes = 1ull << 30;
// A file written whole more than once is sent once: the client keeps up to this many bytes of
// such files' data for the records that repeat it.
inline constexpr uint64_t max_kept_bytes = 64u << 20;

using Sink = std::function<void(std::string_view)>;

struct EncodeStats {
    uint64_t stream_bytes = 0;  // the send stream the payload rebuilds
    std::string stream_sha256;  // its digest, for the signed index
    uint64_t body_bytes = 0;    // the payload body, before compression
    uint64_t groups = 0;        // 'W' records
    uint64_t literal_bytes = 0, copied_bytes = 0, diffed_bytes = 0, recompressed_bytes = 0,
             repeated_bytes = 0;  // write data by encoding
};

// Encodes an incremental send stream (a seekable file, read twice: first to learn the final
// names of files the stream creates under temporary names) against the parent tree it was sent
// from. Writes the body to out in pieces.
EncodeStats encode_payload(int stream_fd, const Dir& parent, const Sink& out);

struct DecodeResult {
    uint64_t stream_bytes = 0;
    std::string stream_sha256;
};

// Rebuilds the send stream from a body arriving in pieces, reading the parent's files where the
// body refers to them. Untrusted input: a malformed record, a path that leaves the parent tree or
// a symlink in it, a source file too short, or data whose digest does not match (a wrong or
// modified parent) is refused with Error (InvalidInput for the payload's own faults) before a
// byte of that record is passed on. Records are decoded `lookahead` bytes of body behind what
// has arrived, and the parent ranges of the records in between are read ahead in a thread of
// their own (parent_files.hpp), so the decoder seldom waits for a cold read. Memory: the
// lookahead, one record, its source range and its output.
inline constexpr size_t default_lookahead_bytes = 16u << 20;

class PayloadDecoder {
public:
    // clone_from: for `btrfs receive` into the pool that holds the parent, the parent as receive
    // finds clone sources (its received_uuid and stransid). When the stream's first command
    // names exactly that parent, the whole blocks it writes that are the parent's bytes at the
    // same offset of the data's source file pass on as clone commands (clone_writes.hpp):
    // receive does not write them again, and the new tree shares them with its parent on disk.
    // Otherwise the stream passes on byte for byte. The result's digest is the original
    // stream's either way.
    PayloadDecoder(Dir parent, Sink out, size_t lookahead = default_lookahead_bytes,
                   std::optional<stream::SubvolumeRef> clone_from = std::nullopt);
    ~PayloadDecoder();
    PayloadDecoder(const PayloadDecoder&) = delete;
    PayloadDecoder& operator=(const PayloadDecoder&) = delete;

    void feed(std::string_view body);
    // The body must have ended with its end record.
    DecodeResult finish();

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace strata::delta
