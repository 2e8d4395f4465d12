#pragma once
// The btrfs send stream format as the kernel defines it (fs/btrfs/send.h), shared by strata's
// validator (send_stream.hpp) and by code that rewrites streams (the delta payload): command and
// attribute numbers, the framing, and the checksum of a command. docs/send-stream.md.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace strata::stream {

inline constexpr std::string_view stream_magic{"btrfs-stream\0", 13};
inline constexpr size_t stream_header_size = 17;   // magic + u32 version
inline constexpr size_t command_header_size = 10;  // u32 payload length, u16 type, u32 crc32c
inline constexpr size_t command_crc_offset = 6;

enum class Cmd : uint16_t {
    Subvol = 1, Snapshot, Mkfile, Mkdir, Mknod, Mkfifo, Mksock, Symlink, Rename, Link, Unlink, Rmdir,
    SetXattr, RemoveXattr, Write, Clone, Truncate, Chmod, Chown, Utimes, End, UpdateExtent,  // v1
    Fallocate, Fileattr, EncodedWrite,                                                       // v2
    EnableVerity,                                                                            // v3
};

enum class Attr : uint16_t {
    Uuid = 1, Ctransid, Ino, Size, Mode, Uid, Gid, Rdev, Ctime, Mtime, Atime, Otime, XattrName,
    XattrData, Path, PathTo, PathLink, FileOffset, Data, CloneUuid, CloneCtransid, ClonePath,
    CloneOffset, CloneLen,                                                                    // v1
    FallocateMode, Fileattr, UnencodedFileLen, UnencodedLen, UnencodedOffset, Compression,
    Encryption,                                                                               // v2
    VerityAlgorithm, VerityBlockSize, VeritySaltData, VeritySigData,                          // v3
};

// Little-endian integers at offset (the caller has checked the bounds).
inline uint64_t load_le(std::span<const std::byte> bytes, size_t offset, size_t width) {
    uint64_t value = 0;
    for (size_t i = width; i-- > 0;) value = value << 8 | std::to_integer<uint64_t>(bytes[offset + i]);
    return value;
}
inline uint16_t load_le16(std::span<const std::byte> bytes, size_t offset) {
    return static_cast<uint16_t>(load_le(bytes, offset, 2));
}
inline uint32_t load_le32(std::span<const std::byte> bytes, size_t offset) {
    return static_cast<uint32_t>(load_le(bytes, offset, 4));
}
inline uint64_t load_le64(std::span<const std::byte> bytes, size_t offset) { return load_le(bytes, offset, 8); }

// The checksum a command header carries: crc32c (seed 0, no inversion, as btrfs computes it)
// over the header with its crc field zeroed, then the payload.
uint32_t command_crc(std::span<const std::byte> header, std::span<const std::byte> payload) noexcept;

// A whole command, header and checksum included, from its type and payload (the attributes),
// given as the payload's first part and the rest (a write's attributes before its data, and the
// data), so that rebuilding a stream copies its data once.
std::string make_command(Cmd type, std::string_view payload, std::string_view payload_rest = {});

// A command's attributes by type, as a payload that strata itself checked or built holds them
// (each at most once, as the kernel sends them). `data_at` is where the data value starts in the
// payload; `whole` is false when the payload does not end with its last attribute. Not a
// validator: untrusted streams go through StreamValidator (send_stream.hpp).
struct AttributeView {
    std::map<uint16_t, std::string_view> values;
    size_t data_at = 0;
    bool whole = true;
    std::optional<std::string_view> get(Attr attr) const {
        const auto it = values.find(static_cast<uint16_t>(attr));
        if (it == values.end()) return std::nullopt;
        return it->second;
    }
    std::optional<uint64_t> get_u64(Attr attr) const;  // nullopt unless 8 bytes
};
AttributeView view_attributes(std::string_view payload, uint32_t version);

// Appends an attribute (type, u16 length, value) to a payload being built.
void put_attribute(std::string& payload, Attr type, std::string_view value);
void put_attribute(std::string& payload, Attr type, uint64_t value);  // as 8 bytes little-endian
// Appends the head of a payload's last attribute, the data of a write: its type and, in v1, its
// length; the data itself follows (make_command's payload_rest).
void put_data_head(std::string& payload, size_t data_size, uint32_t version);

}  // namespace strata::stream
