#pragma once
// CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected), the checksum of every btrfs send-stream
// command. Two conventions are in use and they give different numbers for the same bytes:
//   - btrfs (kernel send.c, btrfs-progs common/send-stream.c) calls crc32c(0, buf, len): seed 0,
//     no inversion before or after. That is crc32c_update(0, buf) below.
//   - The standard CRC-32C (iSCSI, RFC 3720; "check" value 0xE3069283 for "123456789") starts
//     from ~0 and inverts the result. That is crc32c(buf) below.
// Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise.
#include <cstddef>
#include <cstdint>
#include <span>

namespace strata::stream {

// Continues a raw CRC-32C over data: no inversion, so updates chain
// (crc32c_update(crc32c_update(0, a), b) == crc32c_update(0, a + b)).
uint32_t crc32c_update(uint32_t crc, std::span<const std::byte> data) noexcept;

// The standard CRC-32C of data: ~crc32c_update(~0u, data).
uint32_t crc32c(std::span<const std::byte> data) noexcept;

namespace detail {
// The table implementation, whatever the CPU; exposed so tests can check that the hardware path
// computes the same function.
uint32_t crc32c_update_portable(uint32_t crc, std::span<const std::byte> data) noexcept;
}  // namespace detail

}  // namespace strata::stream
