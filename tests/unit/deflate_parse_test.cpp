// Deflate streams as content plus parse (src/delta/deflate_parse.hpp): every block type and
// every compressor here (zlib at its levels and strategies, with flushes; GNU gzip) is recorded
// and replayed to the very bytes, in pieces of any size; a stream that is not exactly its
// content, or writes a length another way than the canonical one, is not recorded; a damaged
// or hostile parse is refused, never read out of bounds.
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "delta/deflate_parse.hpp"
#include "support/errors.hpp"
#include "support/gzip.hpp"
#include "support/random.hpp"

using namespace strata;
using namespace strata::delta;

namespace {

// content as zlib deflates it raw; a full flush after each `flush_every` bytes (0: none).
std::string zlib_raw(std::string_view content, int level, int strategy, size_t flush_every = 0) {
    z_stream z{};
    REQUIRE(deflateInit2(&z, level, Z_DEFLATED, -MAX_WBITS, 8, strategy) == Z_OK);
    std::string out;
    const size_t step = flush_every ? flush_every : std::max<size_t>(content.size(), 1);
    for (size_t at = 0;; at += step) {
        const auto piece = content.substr(std::min(at, content.size()), step);
        const bool last = at + step >= content.size();
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(piece.data()));
        z.avail_in = static_cast<uInt>(piece.size());
        int rc;
        do {
            char buffer[65536];
            z.next_out = reinterpret_cast<Bytef*>(buffer);
            z.avail_out = sizeof buffer;
            rc = deflate(&z, last ? Z_FINISH : Z_FULL_FLUSH);
            out.append(buffer, sizeof buffer - z.avail_out);
        } while (z.avail_out == 0 || (last && rc != Z_STREAM_END));
        if (last) break;
    }
    deflateEnd(&z);
    return out;
}

// The deflate data of a gzip member whose header has a file name and no other optional field.
std::string deflate_of(const std::string& member) {
    REQUIRE(member.size() > 18);
    const size_t name_end = member.find('\0', 10);
    REQUIRE((static_cast<uint8_t>(member[3]) & 8) != 0);
    return member.substr(name_end + 1, member.size() - name_end - 1 - 8);
}

std::string replay(std::string_view content, const std::vector<std::string>& parse, uint64_t piece_bytes) {
    DeflateReplay r;
    std::string out;
    for (size_t i = 0; i < parse.size(); ++i)
        r.feed(content.substr(std::min<uint64_t>(content.size(), i * piece_bytes), piece_bytes), parse[i], out);
    r.finish(out);
    return out;
}

// Content with long repeats, short repeats and stretches deflate cannot shorten.
std::string mixed_content(size_t n, unsigned seed) {
    std::string s = test::text_like(n / 2, seed);
    s += test::random_bytes(n / 8, seed);
    s += std::string(n / 8, '\0');
    s += test::text_like(n / 4, seed + 1);
    s += s.substr(100, n / 16);
    return s;
}

// Whether fn is refused as invalid input, with a message that says the parse is at fault.
bool refused(auto&& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.fault() == Fault::InvalidInput && std::string_view(e.what()).find("parse") != std::string_view::npos;
    }
    return false;
}

}  // namespace

TEST_CASE("every kind of deflate stream is replayed from its parse to the same bytes") {
    const auto content = mixed_content(400000, 7);
    struct Case {
        const char* name;
        std::string deflate;
    };
    std::vector<Case> cases{
        {"zlib level 1", zlib_raw(content, 1, Z_DEFAULT_STRATEGY)},
        {"zlib level 6", zlib_raw(content, 6, Z_DEFAULT_STRATEGY)},
        {"zlib level 9", zlib_raw(content, 9, Z_DEFAULT_STRATEGY)},
        {"zlib stored (level 0)", zlib_raw(content, 0, Z_DEFAULT_STRATEGY)},
        {"zlib fixed codes", zlib_raw(content, 6, Z_FIXED)},
        {"zlib Huffman only", zlib_raw(content, 6, Z_HUFFMAN_ONLY)},
        {"zlib run lengths", zlib_raw(content, 6, Z_RLE)},
        {"zlib with full flushes (empty stored blocks)", zlib_raw(content, 6, Z_DEFAULT_STRATEGY, 30011)},
        {"GNU gzip -6", deflate_of(test::gnu_gzip(content, 6))},
        {"GNU gzip -9", deflate_of(test::gnu_gzip(content, 9))},
        {"GNU gzip -1", deflate_of(test::gnu_gzip(content, 1))},
        {"empty content", zlib_raw("", 6, Z_DEFAULT_STRATEGY)},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const std::string_view data = std::string_view(c.name) == "empty content" ? std::string_view{} : content;
        for (const uint64_t piece_bytes : {uint64_t{1} << 40, uint64_t{65536}, uint64_t{4099}, uint64_t{7}}) {
            CAPTURE(piece_bytes);
            const auto parse = record_deflate_parse(c.deflate, data, piece_bytes);
            REQUIRE(parse);
            CHECK(parse->size() == std::max<uint64_t>(1, (data.size() + piece_bytes - 1) / piece_bytes));
            CHECK(replay(data, *parse, piece_bytes) == c.deflate);
        }
    }
}

TEST_CASE("a stream's content and parse read in forward windows are its content and reference parse") {
    const auto content = mixed_content(3 << 20, 5);
    const auto deflate = deflate_of(test::gnu_gzip(content, 6));
    constexpr uint64_t mark_bytes = 1 << 20;
    const auto reference = reference_parse(deflate, mark_bytes);
    REQUIRE(reference);
    CHECK(reference->marks.size() == content.size() / mark_bytes + 1);  // a mark a MiB of content
    CHECK(reference->marks.front() == 0);
    CHECK(std::is_sorted(reference->marks.begin(), reference->marks.end()));
    // The reference replays to the stream too: it is a parse, cut at the marks.
    CHECK(replay(content, {reference->bytes}, uint64_t{1} << 40) == deflate);

    DeflateWindows windows(test::reader_of(deflate), mark_bytes);
    const std::string_view bytes = reference->bytes, text = content;
    CHECK(windows.parse(0, 1000) == bytes.substr(0, 1000));
    CHECK(windows.content(10, 100) == text.substr(10, 100));
    CHECK(windows.parse(500, 100000) == bytes.substr(500, 100000));
    CHECK(windows.content(10, 300000) == text.substr(10, 300000));  // the same start again
    CHECK(windows.content(2 << 20, 1 << 20) == text.substr(2 << 20, 1 << 20));
    CHECK(windows.parse(bytes.size() / 2, 10) == bytes.substr(bytes.size() / 2, 10));
    CHECK_FALSE(windows.parse(100, 10));        // before an earlier range
    CHECK_FALSE(windows.content(1 << 20, 10));  // before an earlier range
    CHECK(windows.parse(bytes.size() - 7, 7) == bytes.substr(bytes.size() - 7));
    CHECK_FALSE(windows.parse(bytes.size() - 7, 8));  // past the end
    CHECK(windows.content(content.size() - 5, 5) == text.substr(content.size() - 5));
    CHECK_FALSE(windows.content(content.size() - 5, 6));

    // A cut or damaged stream ends the windows early.
    DeflateWindows cut(test::reader_of(deflate.substr(0, deflate.size() / 2)), mark_bytes);
    CHECK_FALSE(cut.content(0, content.size()));
    auto damaged = deflate;
    damaged[damaged.size() / 3] ^= 0x55;
    CHECK_FALSE(reference_parse(damaged.substr(0, damaged.size() / 2), mark_bytes));

    // Ranges of the two kinds far apart hold what lies between them: refused past the bound.
    const std::string big(DeflateWindows::max_held_bytes + (1 << 20), '\0');
    const auto big_deflate = zlib_raw(big, 1, Z_DEFAULT_STRATEGY);
    const auto big_reference = reference_parse(big_deflate, mark_bytes);
    REQUIRE(big_reference);
    DeflateWindows apart(test::reader_of(big_deflate), mark_bytes);
    CHECK(apart.content(0, 10));
    CHECK(refused([&] { apart.parse(big_reference->marks.back(), 1); }));  // where the content ends
}

TEST_CASE("a stream that is not exactly its content has no parse") {
    const auto content = mixed_content(100000, 9);
    const auto deflate = zlib_raw(content, 6, Z_DEFAULT_STRATEGY);
    REQUIRE(record_deflate_parse(deflate, content, 4096));
    auto other = content;
    other[5000] ^= 1;
    CHECK_FALSE(record_deflate_parse(deflate, other, 4096));
    CHECK_FALSE(record_deflate_parse(deflate, content.substr(1), 4096));
    CHECK_FALSE(record_deflate_parse(deflate, content + "x", 4096));
    CHECK_FALSE(record_deflate_parse(deflate.substr(0, deflate.size() - 1), content, 4096));
    CHECK_FALSE(record_deflate_parse(deflate + "x", content, 4096));
    CHECK_FALSE(record_deflate_parse(deflate + deflate, content, 4096));
    CHECK_FALSE(record_deflate_parse("", content, 4096));
    auto damaged = deflate;
    damaged[damaged.size() / 2] ^= 0x10;
    CHECK_FALSE(record_deflate_parse(damaged, content, 4096));
    CHECK(test::error_of([&] { record_deflate_parse(deflate, content, 0); }).find("pieces of no bytes") != std::string::npos);
}

namespace {

// Deflate bits written by hand: values least significant bit first, Huffman codes most
// significant bit first (RFC 1951 3.1.1).
struct HandBits {
    std::string out;
    unsigned byte = 0, count = 0;
    void value(uint32_t v, unsigned bits) {
        for (unsigned i = 0; i < bits; ++i) {
            byte |= ((v >> i) & 1u) << count;
            if (++count == 8) {
                out += static_cast<char>(byte);
                byte = count = 0;
            }
        }
    }
    void code(uint32_t c, unsigned bits) {
        for (unsigned i = bits; i > 0; --i) value((c >> (i - 1)) & 1u, 1);
    }
    std::string done() {
        if (count > 0) out += static_cast<char>(byte);
        return out;
    }
};

std::string zlib_inflate_raw(const std::string& deflate) {
    z_stream z{};
    REQUIRE(inflateInit2(&z, -MAX_WBITS) == Z_OK);
    std::string out(1 << 16, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(deflate.data()));
    z.avail_in = static_cast<uInt>(deflate.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    CHECK(inflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(out.size() - z.avail_out);
    inflateEnd(&z);
    return out;
}

}  // namespace

TEST_CASE("a stream that writes a length another way than the canonical one has no parse") {
    // One fixed block: 'a', then 258 bytes at distance 1, the end of the block. A length of 258
    // has a code of its own (285); code 284 with extra bits 31 says 258 too, but no replay can
    // know that it was written so.
    const auto stream = [](bool canonical) {
        HandBits b;
        b.value(1, 1);               // BFINAL
        b.value(1, 2);               // fixed codes
        b.code(0x30 + 'a', 8);       // literal 'a'
        if (canonical) {
            b.code(0xc0 + 5, 8);     // 285: 258
        } else {
            b.code(0xc0 + 4, 8);     // 284: 227 + extra
            b.value(31, 5);
        }
        b.code(0, 5);                // distance 1
        b.code(0, 7);                // end of block
        return b.done();
    };
    const std::string content(259, 'a');
    for (const bool canonical : {true, false}) {
        CAPTURE(canonical);
        const auto deflate = stream(canonical);
        REQUIRE(zlib_inflate_raw(deflate) == content);
        const auto parse = record_deflate_parse(deflate, content, 100);
        CHECK(parse.has_value() == canonical);
        if (parse) CHECK(replay(content, *parse, 100) == deflate);
    }
}

TEST_CASE("a damaged or hostile parse is refused, or replays to other bytes, never past its bounds") {
    const auto content = mixed_content(60000, 11);
    const auto deflate = zlib_raw(content, 6, Z_DEFAULT_STRATEGY, 20000);
    constexpr uint64_t piece_bytes = 16384;
    const auto parse = record_deflate_parse(deflate, content, piece_bytes);
    REQUIRE(parse);
    REQUIRE(parse->size() == 4);

    // Every byte of every piece flipped, one at a time, and every piece cut short.
    size_t refusals = 0, different = 0;
    for (size_t p = 0; p < parse->size(); ++p)
        for (size_t i = 0; i < (*parse)[p].size(); i += 1 + i / 64) {
            for (const auto change : {0x01, 0x80}) {
                auto bad = *parse;
                bad[p][i] = static_cast<char>(bad[p][i] ^ change);
                try {
                    different += replay(content, bad, piece_bytes) != deflate;
                } catch (const Error& e) {
                    CHECK(e.fault() == Fault::InvalidInput);
                    ++refusals;
                }
            }
            auto cut = *parse;
            cut[p].resize(i);
            CHECK(refused([&] { replay(content, cut, piece_bytes); }));
        }
    CHECK(refusals > 0);
    CHECK(refusals + different > 0);

    // A piece's parse given with the wrong content: literals outside the content at hand.
    CHECK(refused([&] {
        DeflateReplay r;
        std::string out;
        r.feed(std::string_view(content).substr(0, 100), (*parse)[0], out);
    }));
    // Pieces out of order, or one left out.
    CHECK(refused([&] {
        auto swapped = *parse;
        std::swap(swapped[1], swapped[2]);
        replay(content, swapped, piece_bytes);
    }));
    CHECK(refused([&] {
        auto missing = *parse;
        missing[3].clear();
        replay(content, missing, piece_bytes);
    }));
    // Anything after the end of the stream.
    CHECK(refused([&] {
        auto longer = *parse;
        longer[3] += '\0';
        replay(content, longer, piece_bytes);
    }));
    // A match before the content's start: literals 0, then a match of distance 1 at position 0.
    CHECK(refused([&] {
        DeflateReplay r;
        std::string out;
        r.feed("abc", std::string("\x03\x00\x00\x00\x00", 5), out);
    }));
}
