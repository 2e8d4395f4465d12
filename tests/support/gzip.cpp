#include "support/gzip.hpp"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <iterator>
#include <random>
#include <stdexcept>

#include "base/process.hpp"

namespace strata::test {

std::string text_like(size_t n, unsigned seed) {
    static const char* const words[] = {"strata ", "btrfs ", "subvolume ", "snapshot ", "deploy ", "kernel\n",
                                        "initrd ", "the ", "of ", "usr ", "0x7f3a ", "factory\n"};
    std::mt19937 rng(seed);
    std::string s;
    while (s.size() < n) s += words[rng() % std::size(words)];
    s.resize(n);
    return s;
}

std::function<size_t(char* into, size_t size)> reader_of(std::string data) {
    return [data = std::move(data), at = size_t{0}](char* into, size_t size) mutable {
        const size_t n = std::min({size, size_t{1000}, data.size() - at});
        data.copy(into, n, at);
        at += n;
        return n;
    };
}

std::string zlib_gzip(std::string_view content, int level, int mem_level, int strategy) {
    z_stream z{};
    if (deflateInit2(&z, level, Z_DEFLATED, MAX_WBITS + 16, mem_level, strategy) != Z_OK)
        throw std::runtime_error("deflateInit2 failed");
    char name[] = "initrd.img";
    gz_header header{};
    header.name = reinterpret_cast<Bytef*>(name);
    header.time = 1764633600;
    header.os = 3;
    deflateSetHeader(&z, &header);
    std::string out(deflateBound(&z, content.size()) + 64, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(content.data()));
    z.avail_in = static_cast<uInt>(content.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    const int rc = deflate(&z, Z_FINISH);
    out.resize(z.total_out);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) throw std::runtime_error("deflate did not finish");
    return out;
}

std::string gnu_gzip(std::string_view content, int level) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("strata-gnu-gzip-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const fs::path file = dir / "initrd.img";
    std::ofstream(file, std::ios::binary | std::ios::trunc) << content;
    auto member = run_checked({"gzip", "-c", "-" + std::to_string(level), file.string()}).out;
    fs::remove_all(dir);
    return member;
}

}  // namespace strata::test
