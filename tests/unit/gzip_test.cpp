// gzip members seen through their content (src/delta/gzip.hpp): zlib's and GNU gzip's members
// are found reproducible at the parameters that made them and rebuilt byte for byte, header
// included; a member another deflate made, and anything that is not exactly one intact member,
// is not. A member's content is read in windows that only move forward.
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "delta/gzip.hpp"
#include "support/errors.hpp"
#include "support/gzip.hpp"
#include "support/random.hpp"

using namespace strata;
using namespace strata::delta;

using test::text_like;
using test::zlib_gzip;

TEST_CASE("zlib's gzip members are rebuilt byte for byte from their content") {
    const auto content = text_like(300000, 1);
    for (const int mem_level : {8, 9})
        for (const int level : {1, 6, 9}) {
            CAPTURE(level);
            CAPTURE(mem_level);
            const auto member = zlib_gzip(content, level, mem_level);
            const auto unpacked = gunzip(member, content.size());
            REQUIRE(unpacked);
            CHECK(*unpacked == content);
            const auto parameters = reproducible_gzip(member, *unpacked);
            REQUIRE(parameters);
            CHECK(parameters->header.find("initrd.img") != std::string::npos);
            CHECK(gzip_member(*parameters, content) == member);
        }
    const auto empty = zlib_gzip("", 9, 8);
    const auto parameters = reproducible_gzip(empty, "");
    REQUIRE(parameters);
    CHECK(gzip_member(*parameters, "") == empty);
}

TEST_CASE("the level a member's XFL records is the only one tried, and with XFL 0 every level is") {
    const auto content = text_like(200000, 4);
    const auto with_xfl = [](std::string member, uint8_t xfl) {
        member[8] = static_cast<char>(xfl);
        return member;
    };
    // Level 6 (XFL 0) under a header that claims level 9 or 1: no attempt at 6, so opaque.
    const auto six = zlib_gzip(content, 6, 8);
    REQUIRE(static_cast<uint8_t>(six[8]) == 0);
    CHECK_FALSE(reproducible_gzip(with_xfl(six, 2), content));
    CHECK_FALSE(reproducible_gzip(with_xfl(six, 4), content));
    // Level 9 under XFL 0, as writers that always put 0 make it: found.
    const auto nine = with_xfl(zlib_gzip(content, 9, 8), 0);
    const auto parameters = reproducible_gzip(nine, content);
    REQUIRE(parameters);
    CHECK(parameters->level == 9);
    CHECK(gzip_member(*parameters, content) == nine);
}

TEST_CASE("a member zlib does not reproduce stays opaque") {
    const auto content = text_like(200000, 2);
    for (const int strategy : {Z_HUFFMAN_ONLY, Z_RLE}) {
        const auto member = zlib_gzip(content, 9, 8, strategy);
        REQUIRE(gunzip(member, content.size()) == content);
        CHECK_FALSE(reproducible_gzip(member, content));
    }
}

TEST_CASE("anything but exactly one intact gzip member has no content") {
    const auto content = text_like(50000, 3);
    const auto member = zlib_gzip(content, 6, 8);
    REQUIRE(gunzip(member, content.size()) == content);
    CHECK_FALSE(gunzip(member + member, 2 * content.size()));  // two members
    CHECK_FALSE(gunzip(member + "x", content.size()));          // bytes after the trailer
    CHECK_FALSE(gunzip(member.substr(0, member.size() - 1), content.size()));
    CHECK_FALSE(gunzip(member.substr(0, member.size() / 2), content.size()));
    CHECK_FALSE(gunzip(member, content.size() - 1));  // more content than allowed
    CHECK_FALSE(gunzip("", 100));
    CHECK_FALSE(gunzip("not gzip at all", 100));
    auto bad_crc = member;
    bad_crc[bad_crc.size() - 8] ^= 1;
    CHECK_FALSE(gunzip(bad_crc, content.size()));
    auto bad_size = member;
    bad_size[bad_size.size() - 4] ^= 1;
    CHECK_FALSE(gunzip(bad_size, content.size()));
    auto reserved_flag = member;
    reserved_flag[3] = static_cast<char>(reserved_flag[3] | 0x20);
    CHECK_FALSE(gunzip(reserved_flag, content.size()));
    auto damaged = member;
    damaged[member.size() / 2] ^= 0x55;
    CHECK_FALSE(gunzip(damaged, content.size()));  // the trailer's crc32 no longer matches
}

TEST_CASE("rebuilding refuses a header that is not gzip's and parameters out of range") {
    const auto member = zlib_gzip("abc", 9, 8);
    auto parameters = reproducible_gzip(member, "abc");
    REQUIRE(parameters);
    auto bad = *parameters;
    bad.header = "PK\x03\x04 not gzip";
    CHECK(test::error_of([&] { gzip_member(bad, "abc"); }) == "rebuild gzip file: not a gzip header");
    bad = *parameters;
    bad.header += "x";
    CHECK(test::error_of([&] { gzip_member(bad, "abc"); }) == "rebuild gzip file: not a gzip header");
    for (const int level : {0, 10}) {
        bad = *parameters;
        bad.level = level;
        CHECK(test::error_of([&] { gzip_member(bad, "abc"); }) == "rebuild gzip file: deflate parameters out of range");
    }
    for (const int mem_level : {-1, 10}) {
        bad = *parameters;
        bad.mem_level = mem_level;
        CHECK(test::error_of([&] { gzip_member(bad, "abc"); }) == "rebuild gzip file: deflate parameters out of range");
    }
}

TEST_CASE("GNU gzip's members, which zlib does not reproduce, are rebuilt byte for byte by gzip") {
    // Machine code (this test's own): GNU gzip ends its blocks where zlib does not.
    std::ifstream self("/proc/self/exe", std::ios::binary);
    std::string content(3000000, '\0');
    self.read(content.data(), static_cast<std::streamsize>(content.size()));
    content.resize(static_cast<size_t>(self.gcount()));
    for (const int level : {1, 6, 9}) {
        CAPTURE(level);
        const auto member = test::gnu_gzip(content, level);
        REQUIRE(gunzip(member, content.size()) == content);
        const auto parameters = reproducible_gzip(member, content);
        REQUIRE(parameters);
        CHECK(parameters->mem_level == 0);  // GNU gzip, not zlib
        CHECK(parameters->level == level);
        CHECK(parameters->header.find("initrd.img") != std::string::npos);
        CHECK(gzip_member(*parameters, content) == member);
        // Fed in uneven pieces, as a payload's content records bring it.
        GzipBuilder builder(*parameters);
        for (size_t at = 0; at < content.size(); at += 777777) builder.feed(std::string_view(content).substr(at, 777777));
        CHECK(builder.finish() == member);
    }
    // Rebuilt at another level, the bytes differ: the payload's digest refuses them.
    auto parameters = reproducible_gzip(test::gnu_gzip(content, 6), content);
    REQUIRE(parameters);
    parameters->level = 9;
    CHECK(gzip_member(*parameters, content) != test::gnu_gzip(content, 6));
}

TEST_CASE("a recorded member is rebuilt from its content and parse, taken as it is made") {
    std::ifstream self("/proc/self/exe", std::ios::binary);
    std::string content(3000000, '\0');
    self.read(content.data(), static_cast<std::streamsize>(content.size()));
    content.resize(static_cast<size_t>(self.gcount()));
    const auto member = test::gnu_gzip(content, 6);
    constexpr uint64_t piece = 700000;
    const auto recorded = record_gzip(member, content, piece);
    REQUIRE(recorded);
    CHECK(recorded->parameters.replays());
    REQUIRE(recorded->parse.size() == (content.size() + piece - 1) / piece);
    GzipBuilder builder(recorded->parameters);
    std::string rebuilt;
    for (size_t i = 0; i < recorded->parse.size(); ++i) {
        builder.feed(std::string_view(content).substr(i * piece, piece), recorded->parse[i]);
        const auto taken = builder.take();
        CHECK(!taken.empty());  // a piece's deflate bytes, past the first piece's header
        rebuilt += taken;
        CHECK(builder.size() == rebuilt.size());
        CHECK(builder.take().empty());
    }
    rebuilt += builder.finish();
    CHECK(rebuilt == member);
}

TEST_CASE("headers with every optional field (extra, name, comment, header crc) are kept as they are") {
    const auto content = text_like(100000, 7);
    // FEXTRA 0x04, FNAME 0x08, FCOMMENT 0x10, FHCRC 0x02; the header crc is the low half of the
    // header's crc32.
    std::string header = std::string("\x1f\x8b\x08\x1e", 4) + std::string("\x01\x02\x03\x04\x00\x03", 6);
    const std::string extra("SP\x04\x00" "abcd", 8);  // one subfield: id "SP", 4 bytes
    header += static_cast<char>(extra.size()) + std::string(1, '\0') + extra;
    header += std::string("initrd.img", 10) + '\0' + "built by a test" + '\0';
    const auto crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(header.data()), static_cast<uInt>(header.size())));
    header += static_cast<char>(crc & 0xff);
    header += static_cast<char>(crc >> 8 & 0xff);
    std::string body;  // deflate data and trailer
    for (const bool gnu : {false, true}) {
        CAPTURE(gnu);
        const auto plain = gnu ? test::gnu_gzip(content, 9) : zlib_gzip(content, 9, 8);
        // The plain member's own header: 10 bytes and the name.
        const size_t body_at = 10 + std::string_view(plain).substr(10).find('\0') + 1;
        body = plain.substr(body_at);
        const auto member = header + body;
        REQUIRE(gunzip(member, content.size()) == content);
        const auto parameters = reproducible_gzip(member, content);
        REQUIRE(parameters);
        CHECK(parameters->header == header);
        CHECK(gzip_member(*parameters, content) == member);
    }
    // An extra field that runs past the member's end: not a gzip member.
    auto longer = header;
    longer[10] = longer[11] = '\xff';
    REQUIRE(longer.size() + body.size() < 0xffff);
    CHECK_FALSE(gunzip(longer + body, content.size()));
}

TEST_CASE("a member's content and parse are read in windows from after its header") {
    const auto content = test::text_like(1000000, 6);
    const auto member = test::gnu_gzip(content, 6);
    const auto reference = gzip_reference_parse(member, 1 << 20);
    REQUIRE(reference);
    auto windows = open_gzip_windows(test::reader_of(member), 1 << 20);
    REQUIRE(windows);
    CHECK(windows->content(10, 100) == std::string_view(content).substr(10, 100));
    CHECK(windows->parse(0, reference->bytes.size()) == reference->bytes);
    CHECK(windows->content(500000, 500000) == std::string_view(content).substr(500000));  // up to the end
    CHECK_FALSE(windows->content(999990, 11));                                           // past the end
    CHECK_FALSE(open_gzip_windows(test::reader_of("not gzip"), 1 << 20));
    CHECK_FALSE(gzip_reference_parse("not gzip", 1 << 20));
}
