#pragma once
// gzip test data: text deflate has choices to make on, and gzip members as zlib and GNU gzip
// write them.
#include <functional>
#include <string>
#include <string_view>

namespace strata::test {

// n bytes of words from a small vocabulary, the same for the same seed.
std::string text_like(size_t n, unsigned seed);

// One gzip member of content as zlib's deflate makes it at these parameters (zlib.h's
// Z_DEFAULT_STRATEGY is 0), with a file name and a time in its header.
std::string zlib_gzip(std::string_view content, int level, int mem_level, int strategy = 0);

// One gzip member of content as GNU gzip makes it (`gzip -c -LEVEL` of a file named initrd.img,
// so the header has its name and time), as Debian's man pages, changelogs and initrds are.
std::string gnu_gzip(std::string_view content, int level);

// Reads data at most 1000 bytes a call, as the client reads its parent's file: for windows that
// read a file as they decode it.
std::function<size_t(char* into, size_t size)> reader_of(std::string data);

}  // namespace strata::test
