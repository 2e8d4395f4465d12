#pragma once
// Vendor trees out of the pool as `btrfs send` streams: full, or incremental against an ancestor
// the receiver already has (only the change travels).
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "base/progress.hpp"
#include "pool/pool.hpp"

namespace strata::vendor {

enum class Compression { None, Zstd };

struct ExportOptions {
    std::optional<std::string> parent;  // must be a read-only ancestor of the exported tree
    Compression compression = Compression::None;
    ProgressFn progress;
    // Sees every byte written to the output, in order (publish hashes the payload this way
    // instead of reading the file again).
    std::function<void(std::string_view)> observe_output;
};

struct ExportResult {
    std::string name;
    std::optional<std::string> parent;
    uint64_t bytes = 0;         // written, after compression
    uint64_t stream_bytes = 0;  // the send stream itself, before compression
};

// Writes the stream to out_fd. Reads only read-only subvolumes, so it takes no pool lock and
// runs beside imports.
ExportResult export_stream(const pool::Pool& pool, std::string_view name, const ExportOptions& options, int out_fd);

// As export_stream, into `file`, which appears complete or not at all (temporary, fsync, rename).
ExportResult export_stream_to_file(const pool::Pool& pool, std::string_view name, const ExportOptions& options,
                                   const std::filesystem::path& file);

}  // namespace strata::vendor
