// gzip members seen through their content (src/delta/gzip.hpp): zlib's own members are found
// reproducible at the parameters that made them and rebuilt byte for byte, header included; a
// member another deflate made, and anything that is not exactly one intact member, is not.
#include <doctest/doctest.h>
#include <zlib.h>

#include <string>

#include "delta/gzip.hpp"
#include "support/errors.hpp"
#include "support/gzip.hpp"

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
        CHECK(test::error_of([&] { gzip_member(bad, "abc"); }) == "rebuild gzip file: zlib parameters out of range");
    }
}
