#pragma once
// gzip files inside a tree (man pages, changelogs, initrds), seen through their content. A
// compressed file that changed a little is almost entirely different bytes, so a delta payload
// diffs the decompressed content instead and the client compresses it again, which is only
// sound when compressing again gives back the very bytes of the file. The publisher therefore
// looks for a deflate that reproduces the member exactly: zlib's at some level and memory level,
// or GNU gzip's own (the `gzip` program, which Debian makes its man pages, changelogs and
// initrds with; above a few kilobytes its blocks differ from zlib's). Files no deflate here
// reproduces stay opaque. The client rebuilds with its zlib or its gzip and the recorded
// parameters, and the payload's digest of the file's bytes catches one that compresses
// differently. A large member (an initrd, which `gzip -6` took seconds to compress again)
// instead travels with its recorded deflate parse (record_gzip), which the client replays
// without compressing, whatever deflate made it.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "delta/deflate_parse.hpp"

namespace strata::delta {

// The parameters that rebuild one gzip member from its content: the header as it was (name,
// time, flags, ...), the deflate and its level; the trailer follows from the content.
struct GzipParameters {
    std::string header;
    int level = 0;      // 1-9; 0: no deflate runs, the member's recorded parse is replayed
    int mem_level = 0;  // 1-9: zlib's deflate at this memory level; 0: GNU gzip's (`gzip -n -LEVEL`)
    bool replays() const { return level == 0; }
};

// The content of data when data is exactly one gzip member (nothing before or after it, a
// trailer that matches) of at most max_content bytes of content; nullopt otherwise.
std::optional<std::string> gunzip(std::string_view data, uint64_t max_content);

// How zlib or GNU gzip re-creates data byte for byte from its content (gunzip), if one can:
// zlib, then GNU gzip, at the level the header's XFL byte records (2: level 9 alone, 4: level 1
// alone; 0, which says little: 6 first, then the others). A failed attempt stops at the first
// piece that differs. gzip missing from PATH only means GNU gzip's members are not found
// reproducible.
std::optional<GzipParameters> reproducible_gzip(std::string_view data, std::string_view content);

// A member as its content and its parse (deflate_parse.hpp) in pieces of piece_bytes of
// content: whatever deflate made it, it is rebuilt without compressing again, at the price of
// the parse's bytes. nullopt when data is not one gzip member of that content.
struct RecordedGzip {
    GzipParameters parameters;  // level 0
    std::vector<std::string> parse;
};
std::optional<RecordedGzip> record_gzip(std::string_view data, std::string_view content, uint64_t piece_bytes);

// The reference parse (deflate_parse.hpp) of a gzip member: what the parse of its next version
// is diffed against; nullopt when data does not start with a gzip header and valid deflate data.
std::optional<DeflateParse> gzip_reference_parse(std::string_view data, uint64_t mark_bytes);

// The content and reference parse of a gzip member (DeflateWindows), read from it as needed;
// nullopt when it does not start with a gzip header. For a client whose old initrd is the source
// of a new one's diffs.
std::optional<DeflateWindows> open_gzip_windows(DeflateWindows::Reader read, uint64_t mark_bytes);

// Compresses content, given in pieces, into the gzip member the parameters describe: the header,
// the deflate data and the trailer. Refuses (Error, InvalidInput) a header that is not a gzip
// header or parameters out of range; the caller checks the result against its digest. Memory:
// the bytes made and not taken; GNU gzip runs as a child process writing into an anonymous file.
class GzipBuilder {
public:
    explicit GzipBuilder(const GzipParameters& parameters);
    ~GzipBuilder();
    GzipBuilder(const GzipBuilder&) = delete;
    GzipBuilder& operator=(const GzipBuilder&) = delete;

    // parse: the piece's parse when the parameters replay one, else nothing.
    void feed(std::string_view content, std::string_view parse = {});
    // The number of the member's bytes made so far, taken or not (a deflate holds some back
    // until more content comes).
    uint64_t size() const;
    // The bytes made since the last take: a caller that passes the member on as it is made
    // holds one piece's worth, not the member.
    std::string take();
    // The bytes not taken yet, the last ones included.
    std::string finish();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// GzipBuilder for content at hand.
std::string gzip_member(const GzipParameters& parameters, std::string_view content);

}  // namespace strata::delta
