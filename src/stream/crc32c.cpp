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
// The crc32 instruction has a latency of three cycles and a throughput of one a cycle, so one
// dependent chain runs at a third of its speed: long inputs (every write command of a stream,
// checked on receipt and made again by a delta's decoder) go as three chains over three
// neighbouring lanes, joined by shifting a lane's CRC over the bytes that follow it.
constexpr size_t crc_lane_bytes = 1024;

// shift[k][b]: the raw CRC register holding byte b at byte k, after crc_lane_bytes zero bytes.
// The register's update over zeros is linear, so a register shifts as the xor of its bytes' rows.
using ShiftTables = std::array<std::array<uint32_t, 256>, 4>;

__attribute__((target("sse4.2"))) ShiftTables make_shift_tables() {
    ShiftTables tables{};
    for (size_t k = 0; k < tables.size(); ++k)
        for (uint32_t b = 0; b < 256; ++b) {
            uint64_t crc = uint64_t{b} << (8 * k);
            for (size_t i = 0; i < crc_lane_bytes; i += 8) crc = _mm_crc32_u64(crc, 0);
            tables[k][b] = static_cast<uint32_t>(crc);
        }
    return tables;
}

uint32_t shift_over_lane(const ShiftTables& t, uint32_t crc) {
    return t[0][crc & 0xFFu] ^ t[1][crc >> 8 & 0xFFu] ^ t[2][crc >> 16 & 0xFFu] ^ t[3][crc >> 24];
}

// The crc32 instruction implements exactly the raw reflected update, without inversions.
__attribute__((target("sse4.2"))) uint32_t crc32c_update_sse42(uint32_t crc,
                                                                 std::span<const std::byte> data) {
    const std::byte* p = data.data();
    size_t left = data.size();
    const auto word_at = [](const std::byte* at) {
        uint64_t word;
        std::memcpy(&word, at, sizeof word);  // x86 is little-endian: the stream's byte order
        return word;
    };
    if (left >= 3 * crc_lane_bytes) {
        static const ShiftTables shift = make_shift_tables();
        for (; left >= 3 * crc_lane_bytes; p += 3 * crc_lane_bytes, left -= 3 * crc_lane_bytes) {
            uint64_t a = crc, b = 0, c = 0;
            for (size_t i = 0; i < crc_lane_bytes; i += 8) {
                a = _mm_crc32_u64(a, word_at(p + i));
                b = _mm_crc32_u64(b, word_at(p + crc_lane_bytes + i));
                c = _mm_crc32_u64(c, word_at(p + 2 * crc_lane_bytes + i));
            }
            crc = shift_over_lane(shift, shift_over_lane(shift, static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b)) ^
                  static_cast<uint32_t>(c);
        }
    }
    uint64_t crc64 = crc;
    for (; left >= 8; p += 8, left -= 8) crc64 = _mm_crc32_u64(crc64, word_at(p));
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
