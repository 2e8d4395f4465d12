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
    // Appended, not written into a string of zeros: a delta's rebuilt writes pass here, hundreds
    // of megabytes for a kernel update, and zeroing them first cost a pass over memory.
    std::string command;
    command.reserve(command_header_size + payload_size);
    command.append(command_header_size, '\0');
    command.append(payload);
    command.append(payload_rest);
    auto* bytes = reinterpret_cast<std::byte*>(command.data());
    store_le(bytes, payload_size, 4);
    store_le(bytes + 4, static_cast<uint16_t>(type), 2);
    const std::span<const std::byte> all{bytes, command.size()};
    store_le(bytes + command_crc_offset,
             command_crc(all.first(command_header_size), all.subspan(command_header_size)), 4);
    return command;
}

std::optional<uint64_t> AttributeView::get_u64(Attr attr) const {
    const auto value = get(attr);
    if (!value || value->size() != 8) return std::nullopt;
    return load_le64(std::as_bytes(std::span(value->data(), value->size())), 0);
}

AttributeView view_attributes(std::string_view payload, uint32_t version) {
    AttributeView attrs;
    const auto bytes = std::as_bytes(std::span(payload.data(), payload.size()));
    size_t pos = 0;
    while (pos + 2 <= payload.size()) {
        const uint16_t type = load_le16(bytes, pos);
        pos += 2;
        size_t length = payload.size() - pos;
        if (version == 1 || type != static_cast<uint16_t>(Attr::Data)) {
            if (pos + 2 > payload.size()) break;
            length = load_le16(bytes, pos);
            pos += 2;
        }
        if (length > payload.size() - pos) break;
        if (type == static_cast<uint16_t>(Attr::Data)) attrs.data_at = pos;
        attrs.values.emplace(type, payload.substr(pos, length));
        pos += length;
    }
    attrs.whole = pos == payload.size();
    return attrs;
}

void put_attribute(std::string& payload, Attr type, std::string_view value) {
    std::array<std::byte, 4> head{};
    store_le(head.data(), static_cast<uint16_t>(type), 2);
    store_le(head.data() + 2, value.size(), 2);
    payload.append(reinterpret_cast<const char*>(head.data()), head.size());
    payload += value;
}

void put_attribute(std::string& payload, Attr type, uint64_t value) {
    std::array<std::byte, 8> bytes{};
    store_le(bytes.data(), value, 8);
    put_attribute(payload, type, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

void put_data_head(std::string& payload, size_t data_size, uint32_t version) {
    std::array<std::byte, 4> head{};
    store_le(head.data(), static_cast<uint16_t>(Attr::Data), 2);
    store_le(head.data() + 2, data_size, 2);
    payload.append(reinterpret_cast<const char*>(head.data()), version == 1 ? 4 : 2);
}

}  // namespace strata::stream
