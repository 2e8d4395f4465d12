#pragma once
// gzip files inside a tree (man pages, changelogs, initrds), seen through their content. A
// compressed file that changed a little is almost entirely different bytes, so a delta payload
// diffs the decompressed content instead and the client compresses it again, which is only
// sound when compressing again gives back the very bytes of the file. The publisher therefore
// looks for zlib parameters that reproduce the member exactly; files made by another deflate
// (GNU gzip's own differs from zlib's on most files above a few kilobytes) stay opaque. The
// client rebuilds with its zlib and the recorded parameters, and the payload's digest of the
// file's bytes catches a zlib that compresses differently.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace strata::delta {

// The parameters that rebuild one gzip member from its content: the header as it was (name,
// time, flags, ...) and zlib's level and memory level; the trailer follows from the content.
struct GzipParameters {
    std::string header;
    int level = 0;      // 1-9
    int mem_level = 0;  // 1-9
};

// The content of data when data is exactly one gzip member (nothing before or after it, a
// trailer that matches) of at most max_content bytes of content; nullopt otherwise.
std::optional<std::string> gunzip(std::string_view data, uint64_t max_content);

// How zlib re-creates data byte for byte from its content (gunzip), if it can. A failed attempt
// stops at the first byte that differs, so files from another deflate cost little.
std::optional<GzipParameters> reproducible_gzip(std::string_view data, std::string_view content);

// The gzip member of content: the header, zlib's raw deflate at the given parameters and the
// trailer. Refuses (Error, InvalidInput) a header that is not a gzip header or parameters out of
// range; the caller checks the result against its digest.
std::string gzip_member(const GzipParameters& parameters, std::string_view content);

}  // namespace strata::delta
