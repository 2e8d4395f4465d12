#include "stream/crc32c.hpp"

#include <array>

#if defined(__x86_64__)
#include <nmmintrin.h>

#include <cstring>
#endif

namespace strata::stream {
namespace {

constexpr uint32_t kReflectedPolynomial = 0x82F63B78;

// Slicing-by-8: table[k][b] is the CRC of byte b followed by k zero bytes, so eight input bytes
// cost eight lookups instead of eight dependent shift-and-lookup steps.
using SliceTables = std::array<std::array<uint32_t, 256>, 8>;

constexpr SliceTables make_slice_tables() {
    SliceTables tables{};
    for (uint32_t byte = 0; byte < 256; ++byte) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ kReflectedPolynomial : crc >> 1;
        tables[0][byte] = crc;
    }
    for (size_t k = 1; k < tables.size(); ++k) {
        for (size_t byte = 0; byte < 256; ++byte) {
            const uint32_t previous = tables[k - 1][byte];
            tables[k][byte] = (previous >> 8) ^ tables[0][previous & 0xFFu];
        }
    }
    return tables;
}

constexpr SliceTables kTables = make_slice_tables();

uint32_t load_le32(const std::byte* p) {
    return std::to_integer<uint32_t>(p[0]) | std::to_integer<uint32_t>(p[1]) << 8 |
           std::to_integer<uint32_t>(p[2]) << 16 | std::to_integer<uint32_t>(p[3]) << 24;
}

uint32_t lookup(size_t table, uint32_t value, int shift) {
    return kTables[table][(value >> shift) & 0xFFu];
}

#if defined(__x86_64__)
// The crc32 instruction implements exactly the raw reflected update, without inversions.
__attribute__((target("sse4.2"))) uint32_t crc32c_update_sse42(uint32_t crc,
                                                                 std::span<const std::byte> data) {
    const std::byte* p = data.data();
    size_t left = data.size();
    uint64_t crc64 = crc;
    for (; left >= 8; p += 8, left -= 8) {
        uint64_t word;
        std::memcpy(&word, p, sizeof word);  // x86 is little-endian: the stream's byte order
        crc64 = _mm_crc32_u64(crc64, word);
    }
    auto crc32 = static_cast<uint32_t>(crc64);
    for (; left > 0; ++p, --left) crc32 = _mm_crc32_u8(crc32, std::to_integer<uint8_t>(*p));
    return crc32;
}

bool cpu_has_sse42() {
    static const bool has = __builtin_cpu_supports("sse4.2");
    return has;
}
#endif

}  // namespace

namespace detail {

uint32_t crc32c_update_portable(uint32_t crc, std::span<const std::byte> data) noexcept {
    const std::byte* p = data.data();
    size_t left = data.size();
    for (; left >= 8; p += 8, left -= 8) {
        const uint32_t low = load_le32(p) ^ crc;
        const uint32_t high = load_le32(p + 4);
        crc = lookup(7, low, 0) ^ lookup(6, low, 8) ^ lookup(5, low, 16) ^ lookup(4, low, 24) ^
              lookup(3, high, 0) ^ lookup(2, high, 8) ^ lookup(1, high, 16) ^ lookup(0, high, 24);
    }
    for (; left > 0; ++p, --left) crc = (crc >> 8) ^ lookup(0, crc ^ std::to_integer<uint32_t>(*p), 0);
    return crc;
}

}  // namespace detail

uint32_t crc32c_update(uint32_t crc, std::span<const std::byte> data) noexcept {
#if defined(__x86_64__)
    if (cpu_has_sse42()) return crc32c_update_sse42(crc, data);
#endif
    return detail::crc32c_update_portable(crc, data);
}

uint32_t crc32c(std::span<const std::byte> data) noexcept { return ~crc32c_update(~0u, data); }

}  // namespace strata::stream
