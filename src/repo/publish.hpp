#pragma once
// Publishing vendor trees of a pool into a repository directory (repo/index.hpp): a full zstd
// stream of each new tree and incremental ones from chosen parents, the index, SHA256SUMS and
// the index signature, each written atomically, the index last (a client never sees an index
// naming a payload that is not complete). Re-publishing what is there writes no payload again
// (a payload whose file is there with the size and sha256 the index records is reused); only
// the serial and the generation time change. --keep prunes old versions.
//
// Write order (docs/repository.md): new payloads (temp, fsync, rename) → SHA256SUMS →
// index.json.new and index.json.minisig.new → rename the signature into place → rename the
// index into place → delete payloads no entry references any more. Between the two renames a
// client can fetch the new signature with the old index: verification fails and the client
// retries; it never accepts a mismatched pair. A publisher killed between them leaves
// index.json.new behind, which the next publish finishes (it verifies with the signature in
// place) or discards (it does not).
//
// Concurrent publishers into one directory are serialized by a lock file in it
// (.strata-publish.lock).
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/progress.hpp"
#include "pool/pool.hpp"
#include "repo/index.hpp"
#include "sign/minisign.hpp"

namespace strata::repo {

// The zstd level of strata delta payloads. Every client fetches a payload that is made once, but
// the levels above cost much time for little: on bench/delta.sh's Debian update (a 143 MB body,
// 2 cores) level 16 made 28.6 MB in 16 s, 17 28.0 MB in 22 s, 18 27.2 MB in 26 s, 19 27.1 MB in
// 33 s. 16 keeps publishing well under a third of ostree's delta generation, still smaller than
// its delta; a publisher with time to spare picks 19.
inline constexpr int default_delta_level = 16;

struct PublishOptions {
    std::vector<std::string> parents;  // explicit parents (--parent), read-only ancestors in the pool
    unsigned deltas_from = 0;          // else: deltas from the N newest older versions of the series present in the pool
    std::optional<unsigned> keep;      // keep only the N newest versions of this series in the repo
    std::string changelog;
    // zstd level of strata delta payloads, 1..19 (default_delta_level).
    int delta_level = default_delta_level;
    std::optional<sign::PublicKey> announce;  // a new key to announce, signed by the signing key
    // An existing index must verify with the signing key, or with one of these (after a key
    // rotation: the key that signed the last index). Anything else is refused: the directory
    // belongs to another publisher, or the index was tampered with.
    std::vector<sign::PublicKey> previous_keys;
    // How long to wait for another publisher of the same directory (then Fault::Busy).
    std::chrono::milliseconds lock_timeout{0};
    // "send" phases of the full stream, called from the thread that writes it (the incremental
    // payloads are written meanwhile, silently).
    ProgressFn progress;
};

struct PublishReport {
    Tree tree;                              // what the index now says of it
    std::vector<std::string> written;       // payload files written now (existing ones are reused)
    std::vector<std::string> reused;        // payload files that were there with the right digest
    std::vector<std::string> pruned;        // tree names removed from the repo
    uint64_t serial = 0;
};

// The tree must be a read-only vendor tree of the pool; parents must be read-only vendor trees
// that are its ancestors (parent_uuid links), as export --parent requires. Every check on the
// input happens before the repository is touched, so a refused publish changes nothing there.
// Errors: Fault::NotFound (no such tree), Fault::InvalidInput (not a vendor tree, writable, not
// an ancestor, an index signed by another key or malformed), Fault::Exists (the name is published
// already as another subvolume), Fault::Busy (another publisher).
PublishReport publish(const pool::Pool& pool, const std::filesystem::path& repo_dir, const std::string& name,
                      const sign::SecretKey& key, const PublishOptions& options = {});

// The index of a repository directory after checking its signature against `trusted` and that
// the signed trusted comment carries the index's serial. Fault::NotFound without an index.
Index read_local_index(const std::filesystem::path& repo_dir, std::span<const sign::PublicKey> trusted);

}  // namespace strata::repo
