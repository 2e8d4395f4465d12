#pragma once
// A deflate stream (RFC 1951) is its content plus the choices its compressor made: where blocks
// end, each block's Huffman code lengths, and which stretches are back-references (length,
// distance) rather than literal bytes - the *parse*. Given the content, the parse gives back the
// exact deflate bytes, because the Huffman codes follow from their lengths and every literal,
// length and distance has one way to be written. That is how a delta payload ships a large gzip
// file (an initrd) as its content, diffed against the old one, without the client compressing
// it again: replaying a parse costs a table lookup per symbol, where finding it again (`gzip -6`)
// cost ~5 s of one core for a 130 MB initrd, and it works for any compressor's output (GNU gzip,
// zlib, pigz), not only those a client can run. docs/delta.md has the format.
//
// A parse is recorded in pieces that follow the content: piece i holds what the stream says at
// content positions [i * piece_bytes, (i + 1) * piece_bytes), so a client that gets the content
// in pieces can compress each piece as it arrives and hold neither whole.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace strata::delta {

// The parse of deflate (a raw deflate stream, the whole of it) in pieces of piece_bytes of
// content (at least one piece); nullopt when deflate is not one valid deflate stream whose
// content is exactly `content`, or when replaying the parse would not give back its bytes (a
// length written another way than the canonical one, which no common compressor does).
std::optional<std::vector<std::string>> record_deflate_parse(std::string_view deflate, std::string_view content,
                                                             uint64_t piece_bytes);

// The parse of a whole deflate stream as the source of diffs for the parse of its next version:
// cut every mark_bytes of content (marks[j] is the offset in bytes of what the stream says at
// content position j * mark_bytes), which is how DeflateWindows reads it too; nullopt when
// deflate is not a valid deflate stream.
struct DeflateParse {
    std::string bytes;
    std::vector<uint64_t> marks;
};
std::optional<DeflateParse> reference_parse(std::string_view deflate, uint64_t mark_bytes);

// A deflate stream's content and reference_parse's bytes, each in ranges that never start
// before an earlier range of its kind did, decoded once from the stream on a thread of its own
// some way ahead: for a client that diffs against an old file's content and parse and must hold
// neither the file, nor its content, nor its parse whole. Ranges of the two kinds far apart make
// the bytes between them wait; more than max_held_bytes of those are refused (Error,
// InvalidInput). The reader runs on that thread; what it throws, the ranges throw.
class DeflateWindows {
public:
    // The stream's next bytes into buffer, at most size of them; 0 at its end.
    using Reader = std::function<size_t(char* buffer, size_t size)>;
    static constexpr uint64_t max_held_bytes = 160u << 20;

    DeflateWindows(Reader read, uint64_t mark_bytes);
    DeflateWindows(DeflateWindows&&) noexcept;
    DeflateWindows& operator=(DeflateWindows&&) noexcept;
    ~DeflateWindows();

    // length bytes of the content, or of the parse, at offset; nullopt when it ends before
    // them, the stream is damaged, or offset is before the start of an earlier range of its kind.
    std::optional<std::string_view> content(uint64_t offset, uint64_t length);
    std::optional<std::string_view> parse(uint64_t offset, uint64_t length);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Rebuilds a deflate stream from its content and parse, given piece after piece as
// record_deflate_parse cut them. Memory: the output not yet taken and one piece's content. A
// parse that does not fit its content (a back-reference before the start, a literal past the
// content given, a symbol its block has no code for, truncated or trailing data) is refused with
// Error (InvalidInput); whether the bytes are the file's is the caller's digest to check.
class DeflateReplay {
public:
    DeflateReplay();
    ~DeflateReplay();
    DeflateReplay(const DeflateReplay&) = delete;
    DeflateReplay& operator=(const DeflateReplay&) = delete;

    // Appends to out the deflate bytes that content (the next piece) and its parse complete.
    void feed(std::string_view content, std::string_view parse, std::string& out);
    // Appends the last bits; refuses a parse that has not ended its final block.
    void finish(std::string& out);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace strata::delta
