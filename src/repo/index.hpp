#pragma once
// A repository is a directory of static files any web server or object store can serve:
//   index.json            what is published (this model), JSON, docs/repository.md
//   index.json.minisig    minisign signature over index.json; its trusted comment carries
//                         "strata-index serial=<serial>" so a replayed old index is detectable
//   SHA256SUMS            "<sha256>  <file>" for every payload, for `sha256sum -c`
//   payloads/<file>       the payloads (zstd send streams, full and incremental)
//   keys/                 reserved for announced keys; today they travel in the index's "keys"
//                         array (KeyAnnouncement), see sign/trust.hpp
// A payload has a `kind`, so a later payload format can be added without changing how clients
// establish trust: clients skip kinds they do not know.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace strata::repo {

inline constexpr std::string_view index_file = "index.json";
inline constexpr std::string_view signature_file = "index.json.minisig";
inline constexpr std::string_view sums_file = "SHA256SUMS";
inline constexpr std::string_view payload_dir = "payloads";
inline constexpr std::string_view send_stream_kind = "btrfs-send";
// strata's delta payload (delta/payload.hpp, docs/delta.md): an incremental send stream with its
// file data as binary diffs against the parent, compressed with zstd as one solid stream.
inline constexpr std::string_view delta_kind = "strata-delta";

// How a client recognizes that it has the parent of an incremental payload: a pool subvolume
// whose uuid or received_uuid is one of these (as `btrfs receive` looks parents up).
struct ParentRef {
    std::string name;
    std::string uuid;           // the parent's uuid in the publisher's pool
    std::string received_uuid;  // "" when the publisher made it itself
};

// A consecutive byte range of a payload file with its own digest, so a download can be checked
// and resumed part by part.
struct Part {
    uint64_t size = 0;
    std::string sha256;
    bool operator==(const Part&) const = default;
};

struct Payload {
    std::string kind;               // send_stream_kind or delta_kind
    std::string compression;        // "zstd" or "none"
    std::string file;               // relative to the repository, under payload_dir
    std::optional<ParentRef> parent; // nullopt: full
    uint64_t size = 0;              // uncompressed stream bytes (what the pool will receive)
    uint64_t compressed_size = 0;   // bytes to download
    std::string sha256;             // of the file as downloaded
    std::vector<Part> parts;        // optional; when present their sizes add up to compressed_size
    std::string stream_sha256;      // delta_kind: of the send stream it rebuilds ("" otherwise)
};

struct Tree {
    std::string name;           // e.g. usr:org.example.Demo:x86_64:3
    std::string uuid;           // in the publisher's pool
    std::string received_uuid;  // "" when made there
    std::string published;      // RFC 3339 UTC
    std::string changelog;      // optional free text
    std::vector<Payload> payloads;
};

struct KeyAnnouncement {
    std::string public_key;  // base64 line of the new key
    std::string signature;   // .minisig text over public_key by a key clients trust now
};

struct Index {
    unsigned format = 1;
    uint64_t serial = 0;        // increases with every publish
    std::string generated;      // RFC 3339 UTC
    std::vector<Tree> trees;    // sorted by kind, id, arch, version order
    std::vector<KeyAnnouncement> keys;
};

// Deterministic: sorted object keys, two-space indent, trees in list order (kind, id, arch,
// version order), each tree's payloads full first, then by parent in list order; ends in "\n".
// Equal indexes render to equal bytes, so the signature covers one spelling.
std::string render_index(const Index& index);
// Strict: unknown format, missing fields, names that are not valid vendor-tree names, file
// names outside payloads/ or with "..", bad digests → Fault::InvalidInput naming the place
// ("invalid index: trees[1].payloads[0].sha256: ..."). Also refused: two entries for one tree,
// one file listed twice, a second full payload or a second payload from the same parent uuid.
// Unknown payload kinds are kept (clients skip them); they need only file, compressed_size and
// sha256. A delta_kind payload needs a parent, zstd compression and stream_sha256; parts, when
// listed, must add up to compressed_size. Unknown object members are ignored (additions do not need a new format). The result
// is in render_index's order.
Index parse_index(std::string_view text);

// One tree's entry as index.json spells it (a JSON object, same keys and order), for reports.
std::string render_tree(const Tree& tree);

// The SHA256SUMS text for every payload of the index: "<sha256>  <file>\n" sorted by file, the
// format `sha256sum -c` reads.
std::string render_sums(const Index& index);

// The entry for a tree name, or nullptr.
const Tree* find_tree(const Index& index, std::string_view name);

// The trusted comment strata puts on an index signature ("strata-index serial=7"), and its
// serial back: nullopt unless the first word is "strata-index" and exactly one canonical
// "serial=<decimal>" word follows (other words are ignored, for later additions).
std::string index_trusted_comment(uint64_t serial);
std::optional<uint64_t> serial_of_trusted_comment(std::string_view comment);

}  // namespace strata::repo
