#pragma once
// Vendor trees (usr, runtime, framework, app) enter the pool read-only and whole, or not at all:
// every import builds in staging and publishes by rename (pool/staging.hpp), so an interrupted
// import leaves no subvolume with a typed name.
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/progress.hpp"
#include "naming/name.hpp"
#include "pool/pool.hpp"

namespace strata::vendor {

// Lineage: a new version built as a snapshot of an older one (its base) shares the extents of
// every unchanged file, so `btrfs send -p base` carries only the change.
struct BaseChoice {
    std::optional<std::string> name;  // --base NAME; nullopt: the newest older version of the series
    bool none = false;                // --no-base
};

struct ImportOptions {
    BaseChoice base;                                   // ignored for streams: they name their parent
    pool::OnConflict on_conflict = pool::OnConflict::Fail;  // --replace swaps atomically
    ProgressFn progress;
};

struct ImportResult {
    pool::Subvolume subvolume;
    std::optional<std::string> base;    // the pool object it was built on or received against
    std::string source_kind;            // "directory", "tar", "stream"
};

// The read-only vendor tree older than `name` in its series to build on, as chosen.
std::optional<pool::Subvolume> resolve_base(const pool::Pool& pool, const naming::Name& name, const BaseChoice& choice);

// Copies the tree at `source`: ownership, modes, timestamps, xattrs, ACLs, hardlinks, special
// files and holes are kept. Without a base the copy is `cp -a --reflink=auto` (on the same
// filesystem, data is shared, not copied); with a base it is a snapshot of the base into which
// only the differences are synced (`rsync --checksum`, so equal-size, equal-mtime edits count).
ImportResult import_directory(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name,
                              const std::filesystem::path& source, const ImportOptions& options = {});

// Unpacks a tar archive (any compression libarchive knows; "-" is standard input) with the
// checks of vendor/tar.hpp; with a base, unpacks to scratch and syncs as import_directory does.
ImportResult import_tar(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name,
                        const std::filesystem::path& source, const ImportOptions& options = {});

// Applies a `btrfs send` stream (v1 or v2, full or incremental, optionally zstd-compressed;
// "-" is standard input), read once. Every command is checked by stream/send_stream.hpp, and the
// parent and clone sources it names are looked up (received_uuid, then uuid; read-only vendor
// trees only), before `btrfs receive` gets it; an invalid stream leaves nothing but staging,
// which is deleted. The stream's own subvolume name is ignored: `name` wins.
ImportResult import_stream(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name,
                           const std::filesystem::path& source, const ImportOptions& options = {});

// The same for a stream that code produces (say, rebuilt from a delta payload): `produce` hands
// the uncompressed stream to the sink it is given, in order, and returns at its end. Everything
// it throws fails the import as an invalid stream does, and the tree is named only after it
// returned, so a producer's last check (a digest over the whole stream) decides. `label` names
// the stream in errors.
using StreamProducer = std::function<void(const std::function<void(std::string_view)>& sink)>;
ImportResult import_stream(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name, std::string_view label,
                           const StreamProducer& produce, const ImportOptions& options = {});

}  // namespace strata::vendor
