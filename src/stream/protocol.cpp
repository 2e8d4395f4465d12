#include "stream/protocol.hpp"

#include <algorithm>
#include <array>

#include "stream/crc32c.hpp"

namespace strata::stream {
namespace {

void store_le(std::byte* out, uint64_t value, size_t width) {
    for (size_t i = 0; i < width; ++i) out[i] = static_cast<std::byte>(value >> (8 * i));
}

}  // namespace

uint32_t command_crc(std::span<const std::byte> header, std::span<const std::byte> payload) noexcept {
    std::array<std::byte, command_header_size> zeroed{};
    std::copy(header.begin(), header.begin() + command_crc_offset, zeroed.begin());
    return crc32c_update(crc32c_update(0, zeroed), payload);
}

std::string make_command(Cmd type, std::string_view payload, std::string_view payload_rest) {
    const size_t payload_size = payload.size() + payload_rest.size();
    std::string command(command_header_size + payload_size, '\0');
    auto* bytes = reinterpret_cast<std::byte*>(command.data());
    store_le(bytes, payload_size, 4);
    store_le(bytes + 4, static_cast<uint16_t>(type), 2);
    std::copy(payload_rest.begin(), payload_rest.end(),
              std::copy(payload.begin(), payload.end(), command.begin() + command_header_size));
    const std::span<const std::byte> all{bytes, command.size()};
    store_le(bytes + command_crc_offset,
             command_crc(all.first(command_header_size), all.subspan(command_header_size)), 4);
    return command;
}

}  // namespace strata::stream
