#pragma once
// `strata update`: bring a root instance to the newest usr its remote publishes.
//
//   1. fetch index.json and its signature; verify against the trusted keys (keys the index
//      announces are accepted when a trusted key signed them); refuse an index older (serial)
//      than one seen before from that remote — a replayed index — unless downgrades are allowed;
//   2. pick the newest usr of the root's vendor and arch; newer than what the root runs, or it
//      is up to date;
//   3. choose the smallest payload the pool can apply: a strata delta or an incremental stream
//      whose parent it has (by received_uuid or uuid, read-only), else the full one;
//   4. plan the space before downloading: what is left to download plus the stream's size in the
//      pool, the kernel copy on $BOOT; too little is an error with the numbers (or gc first with
//      prune);
//   5. download into .strata/downloads/<sha256>.part, resuming what an earlier run left (for a
//      payload with parts, from the end of the last part whose digest matches); check size and
//      sha256 against the signed index before a byte is applied;
//   6. import (stream validation and confined receive, vendor/import.hpp) — a strata delta is
//      first rebuilt into the send stream against the local parent (delta/payload.hpp), and the
//      tree is named only once the rebuilt stream's sha256 is the signed one; when that fails
//      (a modified parent, say), the plain incremental or full stream is used instead — then
//      deploy with boot counting.
// Each step is recorded in .strata/update.json (the journal), so a crash is reported by the next
// `update` or `status` and the next `update` continues from what is done: a finished download is
// not fetched again, an imported tree is not received again. docs/updates.md has the details.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/progress.hpp"
#include "config/config.hpp"
#include "deploy/deployment.hpp"
#include "pool/pool.hpp"
#include "repo/index.hpp"

namespace strata::update {

struct UpdateOptions {
    std::optional<std::string> root;    // default: the booted root, else the pool's only one
    std::optional<std::string> remote;  // default: update.remote, else the only remote
    bool check_only = false;            // stop after the plan; download nothing
    bool download_only = false;         // stop after the verified download
    bool allow_downgrade = false;       // accept an older index or an older version
    bool prune = false;                 // when space is short, gc (gc.keep) and plan again
    // Keys trusted when a remote names none (the system's key directories).
    std::vector<std::filesystem::path> default_key_dirs = {"/usr/lib/strata/keys.d", "/etc/strata/keys.d"};
    ProgressFn progress;
};

struct Plan {
    std::string remote;
    std::string root;
    std::string current;                 // the usr the root runs ("" before its first deploy)
    std::optional<std::string> target;   // the usr to go to; nullopt: up to date
    std::optional<std::string> parent;   // the local tree an incremental payload applies on
    std::string payload_kind;            // repo::send_stream_kind or repo::delta_kind
    std::string payload_url;
    std::string payload_sha256;
    std::vector<repo::Part> parts;       // the payload's parts, when the index lists them
    std::string stream_sha256;           // delta: the digest of the stream it rebuilds
    uint64_t download_bytes = 0;         // the payload's size as downloaded
    uint64_t already_downloaded = 0;     // kept from an interrupted earlier run
    uint64_t stream_bytes = 0;           // what the receive writes into the pool (upper bound)
    uint64_t boot_bytes = 0;             // estimated kernel + initrd copy on $BOOT
    uint64_t pool_free = 0, boot_free = 0;
    uint64_t serial = 0;                 // the index's serial
    bool signed_index = true;            // false only for a remote configured insecure
    std::optional<std::string> fallback; // why a chosen delta was not applied (then this plan is the plain one)
};

struct UpdateReport {
    Plan plan;
    bool downloaded = false;
    bool imported = false;
    std::optional<deploy::Deployment> deployment;
    std::optional<std::string> interrupted;  // what an earlier, unfinished update had reached
};

UpdateReport update(const pool::Pool& pool, const pool::Lock& lock, const deploy::BootTarget& target,
                    const config::Config& config, const UpdateOptions& options);

// The journal of the last update, when it did not finish: "<step> <target>" for status.
std::optional<std::string> unfinished_update(const pool::Pool& pool);

}  // namespace strata::update
