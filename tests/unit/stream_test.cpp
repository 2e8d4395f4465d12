// The send-stream validator against streams built here byte by byte, and against real streams
// made by `btrfs send` (tests/fuzz/corpus/valid-*).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "base/progress.hpp"
#include "stream/crc32c.hpp"
#include "stream/send_stream.hpp"

namespace strata::stream {
namespace {

using Bytes = std::vector<std::byte>;

// Numbers from the kernel's fs/btrfs/send.h, written out again here so that the tests check the
// reader against the format and not against its own tables.
namespace cmd {
constexpr uint16_t subvol = 1, snapshot = 2, mkfile = 3, mkdir = 4, symlink = 8, rename = 9,
                   link = 10, unlink = 11, set_xattr = 13, write = 15, clone = 16, chmod = 18,
                   chown = 19, utimes = 20, end = 21, fallocate = 23, fileattr = 24,
                   encoded_write = 25, enable_verity = 26;
}  // namespace cmd

namespace attr {
constexpr uint16_t uuid = 1, ctransid = 2, ino = 3, size = 4, mode = 5, uid = 6, gid = 7, ctime = 9,
                   mtime = 10, atime = 11, xattr_name = 13, xattr_data = 14, path = 15, path_to = 16,
                   path_link = 17, file_offset = 18, data = 19, clone_uuid = 20, clone_ctransid = 21,
                   clone_path = 22, clone_offset = 23, clone_len = 24, fallocate_mode = 25,
                   fileattr = 26, unencoded_file_len = 27, unencoded_len = 28, unencoded_offset = 29;
}  // namespace attr

Bytes bytes_of(std::string_view text) {
    Bytes out(text.size());
    std::memcpy(out.data(), text.data(), text.size());
    return out;
}

void put_le(Bytes& out, uint64_t value, size_t width) {
    for (size_t i = 0; i < width; ++i) out.push_back(static_cast<std::byte>(value >> (8 * i)));
}

// One command's payload, attribute by attribute.
class Command {
public:
    explicit Command(uint16_t type) : type_(type) {}

    Command& raw(uint16_t type, const Bytes& value) {
        put_le(payload_, type, 2);
        put_le(payload_, value.size(), 2);
        payload_.insert(payload_.end(), value.begin(), value.end());
        return *this;
    }
    Command& text(uint16_t type, std::string_view value) { return raw(type, bytes_of(value)); }
    Command& u64(uint16_t type, uint64_t value) {
        Bytes bytes;
        put_le(bytes, value, 8);
        return raw(type, bytes);
    }
    Command& u32(uint16_t type, uint32_t value) {
        Bytes bytes;
        put_le(bytes, value, 4);
        return raw(type, bytes);
    }
    Command& uuid(uint16_t type, uint8_t first, uint8_t rest = 0) {
        Bytes bytes(16, std::byte{rest});
        bytes[0] = std::byte{first};
        return raw(type, bytes);
    }
    Command& timespec(uint16_t type) { return raw(type, Bytes(12, std::byte{1})); }
    // Bytes that need not form an attribute, to build broken payloads.
    Command& append(const Bytes& bytes) {
        payload_.insert(payload_.end(), bytes.begin(), bytes.end());
        return *this;
    }
    // v2 and later: the data attribute has no length field and takes the rest of the command.
    Command& data_v2(const Bytes& value) {
        put_le(payload_, attr::data, 2);
        payload_.insert(payload_.end(), value.begin(), value.end());
        return *this;
    }

    uint16_t type() const { return type_; }
    const Bytes& payload() const { return payload_; }

private:
    uint16_t type_;
    Bytes payload_;
};

Command subvol(std::string_view name = "vol", uint8_t uuid = 0xAB, uint64_t ctransid = 7) {
    return std::move(Command(cmd::subvol).text(attr::path, name).uuid(attr::uuid, uuid, 0x11).u64(
        attr::ctransid, ctransid));
}
Command snapshot(std::string_view name, uint8_t uuid, uint8_t parent_uuid) {
    return std::move(Command(cmd::snapshot)
                         .text(attr::path, name)
                         .uuid(attr::uuid, uuid, 0x22)
                         .u64(attr::ctransid, 12)
                         .uuid(attr::clone_uuid, parent_uuid, 0x11)
                         .u64(attr::clone_ctransid, 7));
}
Command mkfile(std::string_view path) {
    return std::move(Command(cmd::mkfile).text(attr::path, path).u64(attr::ino, 257));
}
Command mkdir(std::string_view path) {
    return std::move(Command(cmd::mkdir).text(attr::path, path).u64(attr::ino, 258));
}
Command rename(std::string_view from, std::string_view to) {
    return std::move(Command(cmd::rename).text(attr::path, from).text(attr::path_to, to));
}
Command link(std::string_view path, std::string_view existing) {
    return std::move(Command(cmd::link).text(attr::path, path).text(attr::path_link, existing));
}
Command symlink(std::string_view path, std::string_view target) {
    return std::move(
        Command(cmd::symlink).text(attr::path, path).u64(attr::ino, 259).text(attr::path_link, target));
}
Command unlink(std::string_view path) { return std::move(Command(cmd::unlink).text(attr::path, path)); }
Command write_v1(std::string_view path, std::string_view data) {
    return std::move(Command(cmd::write).text(attr::path, path).u64(attr::file_offset, 0).text(attr::data, data));
}
Command write_v2(std::string_view path, std::string_view data) {
    return std::move(Command(cmd::write).text(attr::path, path).u64(attr::file_offset, 0).data_v2(bytes_of(data)));
}
Command clone(std::string_view path, std::string_view source_path, uint8_t source_uuid = 0xAB) {
    return std::move(Command(cmd::clone)
                         .text(attr::path, path)
                         .u64(attr::file_offset, 0)
                         .u64(attr::clone_len, 4096)
                         .uuid(attr::clone_uuid, source_uuid, 0x11)
                         .u64(attr::clone_ctransid, 7)
                         .text(attr::clone_path, source_path)
                         .u64(attr::clone_offset, 0));
}
Command utimes(std::string_view path) {
    return std::move(
        Command(cmd::utimes).text(attr::path, path).timespec(attr::atime).timespec(attr::mtime).timespec(attr::ctime));
}
Command chown(std::string_view path) {
    return std::move(Command(cmd::chown).text(attr::path, path).u64(attr::uid, 0).u64(attr::gid, 0));
}
Command end() { return Command(cmd::end); }

// A whole stream: header, then commands with correct lengths and CRCs unless told otherwise.
class StreamBuilder {
public:
    explicit StreamBuilder(uint32_t version = 1) {
        const Bytes magic = bytes_of(std::string_view("btrfs-stream\0", 13));
        bytes_.insert(bytes_.end(), magic.begin(), magic.end());
        put_le(bytes_, version, 4);
    }

    StreamBuilder& add(const Command& command) { return add_with_crc(command, crc_of(command)); }
    StreamBuilder& add_with_crc(const Command& command, uint32_t crc) {
        put_le(bytes_, command.payload().size(), 4);
        put_le(bytes_, command.type(), 2);
        put_le(bytes_, crc, 4);
        bytes_.insert(bytes_.end(), command.payload().begin(), command.payload().end());
        return *this;
    }
    StreamBuilder& append(const Bytes& raw) {
        bytes_.insert(bytes_.end(), raw.begin(), raw.end());
        return *this;
    }

    const Bytes& bytes() const { return bytes_; }

    // The btrfs convention: seed 0, no inversion, over the header with a zero crc field.
    static uint32_t crc_of(const Command& command) {
        Bytes header;
        put_le(header, command.payload().size(), 4);
        put_le(header, command.type(), 2);
        put_le(header, 0, 4);
        return crc32c_update(crc32c_update(0, header), command.payload());
    }

private:
    Bytes bytes_;
};

// A full stream of each kind of command the reader must accept, like a small `btrfs send`.
Bytes sample_stream(uint32_t version) {
    StreamBuilder stream(version);
    stream.add(subvol("vol"))
        .add(chown(""))  // the subvolume's top directory has the empty path
        .add(mkdir("o257-5-0"))
        .add(rename("o257-5-0", "dir"))
        .add(mkfile("o258-5-0"))
        .add(rename("o258-5-0", "dir/file"))
        .add(version == 1 ? write_v1("dir/file", "hello\n") : write_v2("dir/file", "hello\n"))
        .add(link("dir/hardlink", "dir/file"))
        .add(symlink("dir/up", "../../etc/passwd"))
        .add(symlink("dir/abs", "/etc/passwd"))
        .add(mkfile("o259-5-0"))
        .add(clone("o259-5-0", "dir/file"))
        .add(Command(cmd::set_xattr).text(attr::path, "dir/file").text(attr::xattr_name, "user.a").text(attr::xattr_data, "x"))
        .add(utimes("dir"))
        .add(utimes(""));
    if (version >= 2) {
        stream.add(Command(cmd::fallocate)
                       .text(attr::path, "dir/file")
                       .u32(attr::fallocate_mode, 0)
                       .u64(attr::file_offset, 0)
                       .u64(attr::size, 4096));
        stream.add(Command(cmd::fileattr).text(attr::path, "").u64(attr::fileattr, 0));
        stream.add(Command(cmd::encoded_write)
                       .text(attr::path, "dir/file")
                       .u64(attr::file_offset, 0)
                       .u64(attr::unencoded_file_len, 8192)
                       .u64(attr::unencoded_len, 8192)
                       .u64(attr::unencoded_offset, 0)
                       .data_v2(Bytes(100, std::byte{0x5A})));
    }
    stream.add(end());
    return stream.bytes();
}

// A stream with one command under test between a valid start and end.
Bytes stream_with(const Command& command, uint32_t version = 1) {
    return StreamBuilder(version).add(subvol()).add(command).add(end()).bytes();
}

StreamSummary validate(std::span<const std::byte> bytes, size_t chunk = 0) {
    StreamValidator validator;
    if (chunk == 0) chunk = std::max<size_t>(bytes.size(), 1);
    for (size_t pos = 0; pos < bytes.size(); pos += chunk) {
        validator.feed(bytes.subspan(pos, std::min(chunk, bytes.size() - pos)));
    }
    return validator.finish();
}

// The message of the error validating bytes throws; fails the test if it throws none.
std::string rejection(std::span<const std::byte> bytes) {
    try {
        validate(bytes);
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::InvalidInput);
        return e.what();
    }
    FAIL("stream accepted");
    return {};
}

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

Bytes read_binary(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    const std::vector<char> chars{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    Bytes out(chars.size());
    std::memcpy(out.data(), chars.data(), chars.size());
    return out;
}

std::vector<std::filesystem::path> corpus_files(std::string_view prefix) {
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(STRATA_SOURCE_DIR "/tests/fuzz/corpus")) {
        if (entry.path().filename().string().starts_with(prefix)) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

// A plain bit-at-a-time CRC-32C: the definition, to check the fast implementations against.
uint32_t reference_crc32c_update(uint32_t crc, std::span<const std::byte> data) {
    for (std::byte b : data) {
        crc ^= std::to_integer<uint32_t>(b);
        for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? 0x82F63B78u : 0u);
    }
    return crc;
}

}  // namespace

// ---- CRC32C --------------------------------------------------------------------------------

TEST_CASE("stream crc32c: standard check value and the btrfs convention") {
    const Bytes check = bytes_of("123456789");
    CHECK(crc32c(check) == 0xE3069283u);  // RFC 3720 / the "check" of CRC-32C: seed ~0, inverted
    CHECK(crc32c_update(0, check) == 0x58E3FA20u);  // btrfs: crc32c(0, buf, len), no inversion
    CHECK(crc32c_update(~0u, check) == ~0xE3069283u);
    CHECK(crc32c(Bytes{}) == 0u);
    CHECK(crc32c_update(0, Bytes{}) == 0u);
}

TEST_CASE("stream crc32c: updates chain, and hardware and table paths agree with the definition") {
    std::mt19937 random(42);
    Bytes data(20000);
    for (auto& b : data) b = static_cast<std::byte>(random());
    for (size_t offset : {0u, 1u, 3u, 7u}) {
        // Around the lengths the hardware path runs as three lanes of 1 KiB (3072 bytes a round).
        for (size_t size : {0u, 1u, 7u, 8u, 9u, 63u, 64u, 65u, 1000u, 3071u, 3072u, 3073u, 4000u, 6144u, 6151u, 19000u}) {
            const auto piece = std::span<const std::byte>(data).subspan(offset, size);
            const uint32_t expected = reference_crc32c_update(0x1234567u, piece);
            CHECK(crc32c_update(0x1234567u, piece) == expected);
            CHECK(detail::crc32c_update_portable(0x1234567u, piece) == expected);
        }
    }
    const auto all = std::span<const std::byte>(data);
    CHECK(crc32c_update(crc32c_update(0, all.first(1234)), all.subspan(1234)) == crc32c_update(0, all));
}

// ---- Accepted streams ----------------------------------------------------------------------

TEST_CASE("stream: a full v1 and v2 stream are accepted and summarized") {
    for (uint32_t version : {1u, 2u}) {
        CAPTURE(version);
        const Bytes bytes = sample_stream(version);
        const StreamSummary summary = validate(bytes);
        CHECK(summary.version == version);
        CHECK(summary.command_count == (version == 1 ? 16u : 19u));
        CHECK(summary.total_bytes == bytes.size());
        CHECK(summary.subvolume_name == "vol");
        CHECK(format_uuid(summary.subvolume.uuid) == "ab111111-1111-1111-1111-111111111111");
        CHECK(summary.subvolume.ctransid == 7);
        CHECK_FALSE(summary.incremental());
        REQUIRE(summary.clone_sources.size() == 1);
        CHECK(format_uuid(*summary.clone_sources.begin()) == "ab111111-1111-1111-1111-111111111111");
    }
}

TEST_CASE("stream: an incremental stream names its parent") {
    const Bytes bytes = StreamBuilder(2)
                            .add(snapshot("vol2", 0xCD, 0xAB))
                            .add(rename("dir", "newdir"))
                            .add(unlink("newdir/file"))
                            .add(clone("newdir/copy", "dir/file", 0xEF))
                            .add(end())
                            .bytes();
    const StreamSummary summary = validate(bytes);
    CHECK(summary.subvolume_name == "vol2");
    CHECK(format_uuid(summary.subvolume.uuid) == "cd222222-2222-2222-2222-222222222222");
    CHECK(summary.subvolume.ctransid == 12);
    REQUIRE(summary.incremental());
    CHECK(format_uuid(summary.parent->uuid) == "ab111111-1111-1111-1111-111111111111");
    CHECK(summary.parent->ctransid == 7);
    REQUIRE(summary.clone_sources.size() == 1);
    CHECK(format_uuid(*summary.clone_sources.begin()) == "ef111111-1111-1111-1111-111111111111");
}

TEST_CASE("stream: the smallest stream is subvol and end") {
    const StreamSummary summary = validate(StreamBuilder(1).add(subvol()).add(end()).bytes());
    CHECK(summary.command_count == 2);
    CHECK(summary.total_bytes == 17 + 10 + subvol().payload().size() + 10);
}

TEST_CASE("stream: any split into pieces gives the same result as one piece") {
    for (uint32_t version : {1u, 2u}) {
        const Bytes bytes = sample_stream(version);
        const StreamSummary whole = validate(bytes);
        for (size_t chunk : {1u, 2u, 3u, 9u, 10u, 11u, 17u, 64u, 4096u}) {
            CAPTURE(chunk);
            const StreamSummary pieces = validate(bytes, chunk);
            CHECK(pieces.version == whole.version);
            CHECK(pieces.command_count == whole.command_count);
            CHECK(pieces.total_bytes == whole.total_bytes);
            CHECK(pieces.subvolume_name == whole.subvolume_name);
            CHECK(pieces.subvolume.uuid == whole.subvolume.uuid);
            CHECK(pieces.clone_sources == whole.clone_sources);
        }
    }
}

TEST_CASE("stream: empty pieces are harmless") {
    const Bytes bytes = sample_stream(1);
    StreamValidator validator;
    validator.feed({});
    validator.feed(bytes);
    validator.feed({});
    CHECK(validator.finish().total_bytes == bytes.size());
    CHECK(validator.bytes_fed() == bytes.size());
}

TEST_CASE("stream: the top directory may be named by the empty path only for its metadata") {
    CHECK_NOTHROW(validate(stream_with(utimes(""))));
    CHECK_NOTHROW(validate(stream_with(chown(""))));
    CHECK_NOTHROW(validate(stream_with(Command(cmd::chmod).text(attr::path, "").u64(attr::mode, 0755))));
    CHECK(rejection(stream_with(mkfile(""))) == "command 2 (mkfile): path: empty path not allowed");
    CHECK(rejection(stream_with(unlink(""))) == "command 2 (unlink): path: empty path not allowed");
    CHECK(rejection(stream_with(rename("", "x"))) == "command 2 (rename): path: empty path not allowed");
    CHECK(rejection(stream_with(rename("x", ""))) == "command 2 (rename): path_to: empty path not allowed");
}

TEST_CASE("stream: a symlink may point anywhere, but a hard link may not") {
    CHECK_NOTHROW(validate(stream_with(symlink("s", "../../../../etc/shadow"))));
    CHECK_NOTHROW(validate(stream_with(symlink("s", "/etc/shadow"))));
    CHECK(contains(rejection(stream_with(symlink("s", ""))), "empty symlink target not allowed"));
    CHECK(contains(rejection(stream_with(symlink("s", std::string("a\0b", 3)))), "NUL byte not allowed"));
    CHECK(contains(rejection(stream_with(symlink("../s", "t"))), "path '../s': '..' component"));
    CHECK(rejection(stream_with(link("x", "../../etc/shadow"))) ==
          "command 2 (link): path_link '../../etc/shadow': '..' component not allowed");
}

// ---- Rejected streams: framing -------------------------------------------------------------

TEST_CASE("stream: truncation at every byte offset is reported as truncated") {
    for (uint32_t version : {1u, 2u}) {
        const Bytes bytes = sample_stream(version);
        for (size_t size = 0; size < bytes.size(); ++size) {
            CAPTURE(size);
            const std::string message = rejection(std::span(bytes).first(size));
            CHECK(contains(message, "truncated"));
        }
    }
}

TEST_CASE("stream: truncation messages say where") {
    const Bytes bytes = StreamBuilder(1).add(subvol()).add(mkfile("f")).add(end()).bytes();
    CHECK(rejection(std::span(bytes).first(5)) == "header: truncated stream (5 of 17 bytes)");
    CHECK(rejection(std::span(bytes).first(bytes.size() - 10)) ==
          "truncated stream after command 2 (missing end command)");
    CHECK(rejection(std::span(bytes).first(bytes.size() - 11)) == "truncated stream after command 1");
}

TEST_CASE("stream: flipping any single byte is an error, never a crash") {
    for (uint32_t version : {1u, 2u}) {
        const Bytes bytes = sample_stream(version);
        for (size_t pos = 0; pos < bytes.size(); ++pos) {
            for (std::byte mask : {std::byte{0x01}, std::byte{0x80}, std::byte{0xFF}}) {
                CAPTURE(pos);
                const int mask_value = std::to_integer<int>(mask);
                CAPTURE(mask_value);
                Bytes damaged = bytes;
                damaged[pos] ^= mask;
                CHECK_THROWS_AS(validate(damaged), Error);
            }
        }
    }
}

TEST_CASE("stream: header errors") {
    Bytes bytes = sample_stream(1);
    bytes[0] = std::byte{'B'};
    CHECK(rejection(bytes) == "header: bad magic");

    Bytes no_nul = sample_stream(1);
    no_nul[12] = std::byte{' '};
    CHECK(rejection(no_nul) == "header: bad magic");

    for (uint32_t version : {0u, 3u, 7u, 0xFFFFFFFFu}) {
        CHECK(rejection(StreamBuilder(version).add(subvol()).add(end()).bytes()) ==
              "header: unsupported version " + std::to_string(version));
    }
}

TEST_CASE("stream: CRC32C mismatch") {
    const Bytes bytes = StreamBuilder(1).add(subvol()).add(mkfile("f")).add_with_crc(mkfile("g"), 1).add(end()).bytes();
    CHECK(rejection(bytes) == "command 3 (mkfile): CRC32C mismatch");
    // The standard convention (seed ~0, inverted) is not what btrfs writes.
    const Command file = mkfile("f");
    Bytes header;
    put_le(header, file.payload().size(), 4);
    put_le(header, file.type(), 2);
    put_le(header, 0, 4);
    header.insert(header.end(), file.payload().begin(), file.payload().end());
    CHECK(rejection(StreamBuilder(1).add(subvol()).add_with_crc(file, crc32c(header)).add(end()).bytes()) ==
          "command 2 (mkfile): CRC32C mismatch");
}

TEST_CASE("stream: unknown commands and commands of a later version") {
    CHECK(rejection(stream_with(Command(99))) == "command 2 (type 99): unknown command type 99");
    CHECK(rejection(stream_with(Command(0))) == "command 2 (type 0): unknown command type 0");
    const Command fallocate = std::move(
        Command(cmd::fallocate).text(attr::path, "f").u32(attr::fallocate_mode, 0).u64(attr::file_offset, 0).u64(attr::size, 1));
    CHECK(rejection(stream_with(fallocate, 1)) == "command 2 (fallocate): not allowed in a version 1 stream");
    CHECK_NOTHROW(validate(stream_with(fallocate, 2)));
    CHECK(rejection(stream_with(Command(cmd::encoded_write).text(attr::path, "f"), 1)) ==
          "command 2 (encoded_write): not allowed in a version 1 stream");
    CHECK(rejection(stream_with(Command(cmd::enable_verity).text(attr::path, "f"), 1)) ==
          "command 2 (enable_verity): not allowed in a version 1 stream");
    CHECK(rejection(stream_with(Command(cmd::enable_verity).text(attr::path, "f"), 2)) ==
          "command 2 (enable_verity): not allowed in a version 2 stream");
}

TEST_CASE("stream: shape: one subvol or snapshot first, end last, nothing after") {
    CHECK(rejection(StreamBuilder(1).add(mkfile("f")).add(end()).bytes()) ==
          "command 1 (mkfile): the first command must be subvol or snapshot");
    CHECK(rejection(StreamBuilder(1).add(end()).bytes()) ==
          "command 1 (end): the first command must be subvol or snapshot");
    CHECK(rejection(StreamBuilder(1).add(subvol("a")).add(subvol("b")).add(end()).bytes()) ==
          "command 2 (subvol): a second subvol or snapshot command; one subvolume per stream is accepted");
    CHECK(contains(rejection(StreamBuilder(1).add(subvol("a")).add(snapshot("b", 1, 2)).add(end()).bytes()),
                   "command 2 (snapshot): a second subvol or snapshot command"));
    CHECK(rejection(StreamBuilder(1).add(subvol()).add(mkfile("f")).bytes()) ==
          "truncated stream after command 2 (missing end command)");
    CHECK(rejection(StreamBuilder(1).add(subvol()).add(end()).add(mkfile("f")).bytes()) ==
          "trailing data after command 2 (end)");
    CHECK(rejection(StreamBuilder(1).add(subvol()).add(end()).append(Bytes(1)).bytes()) ==
          "trailing data after command 2 (end)");
    // A second stream appended, which `btrfs receive` would apply as well.
    const Bytes one = StreamBuilder(1).add(subvol()).add(end()).bytes();
    CHECK(contains(rejection(StreamBuilder(1).add(subvol()).add(end()).append(one).bytes()), "trailing data"));
}

TEST_CASE("stream: an oversized command is rejected from its header alone") {
    Bytes bytes = StreamBuilder(1).add(subvol()).bytes();
    put_le(bytes, uint64_t{max_command_payload} + 1, 4);
    put_le(bytes, cmd::write, 2);
    put_le(bytes, 0, 4);
    StreamValidator validator;
    CHECK_THROWS_WITH_AS(validator.feed(bytes), "command 2 (write): length 16777217 exceeds the limit of 16777216 bytes",
                         Error);

    Bytes largest = StreamBuilder(1).add(subvol()).bytes();
    put_le(largest, max_command_payload, 4);
    put_le(largest, cmd::write, 2);
    put_le(largest, 0, 4);
    CHECK(rejection(largest) == "truncated stream after command 1");
}

TEST_CASE("stream: an error sticks") {
    Bytes bytes = sample_stream(1);
    bytes[0] = std::byte{'x'};
    StreamValidator validator;
    CHECK_THROWS_WITH(validator.feed(bytes), "header: bad magic");
    CHECK_THROWS_WITH(validator.feed(sample_stream(1)), "header: bad magic");
    CHECK_THROWS_WITH(validator.finish(), "header: bad magic");
}

// ---- Rejected streams: attributes ----------------------------------------------------------

TEST_CASE("stream: attribute errors") {
    CHECK(rejection(stream_with(Command(cmd::mkfile).text(attr::path, "f"))) ==
          "command 2 (mkfile): missing attribute 'ino'");
    CHECK(rejection(stream_with(Command(cmd::rename).text(attr::path, "f"))) ==
          "command 2 (rename): missing attribute 'path_to'");
    CHECK(rejection(StreamBuilder(1).add(Command(cmd::subvol).text(attr::path, "v").u64(attr::ctransid, 1)).add(end()).bytes()) ==
          "command 1 (subvol): missing attribute 'uuid'");
    CHECK(rejection(stream_with(mkfile("f").text(attr::path, "g"))) == "command 2 (mkfile): attribute 'path' repeated");
    CHECK(rejection(stream_with(mkfile("f").text(77, "x"))) == "command 2 (mkfile): unknown attribute type 77");
    CHECK(rejection(stream_with(mkfile("f").text(0, "x"))) == "command 2 (mkfile): unknown attribute type 0");
    CHECK(rejection(stream_with(mkfile("f").u64(attr::fileattr, 0), 1)) ==
          "command 2 (mkfile): attribute 'fileattr' not allowed in a version 1 stream");
    CHECK(rejection(stream_with(Command(cmd::mkfile).text(attr::path, "f").u32(attr::ino, 1))) ==
          "command 2 (mkfile): ino: length 4, expected 8");
    CHECK(rejection(stream_with(Command(cmd::utimes).text(attr::path, "f").timespec(attr::atime).timespec(attr::mtime).u64(attr::ctime, 0))) ==
          "command 2 (utimes): ctime: length 8, expected 12");
    CHECK(rejection(stream_with(clone("f", "g").raw(attr::uuid, Bytes(15)))) ==
          "command 2 (clone): uuid: length 15, expected 16");
    CHECK(rejection(stream_with(Command(cmd::set_xattr).text(attr::path, "f").text(attr::xattr_name, "").text(attr::xattr_data, ""))) ==
          "command 2 (set_xattr): xattr_name: empty name not allowed");
}

TEST_CASE("stream: attributes must fit their command") {
    Bytes overrun;
    put_le(overrun, attr::path_to, 2);
    put_le(overrun, 10, 2);  // claims 10 bytes, has 3
    overrun.insert(overrun.end(), 3, std::byte{'a'});
    CHECK(rejection(stream_with(mkfile("f").append(overrun))) ==
          "command 2 (mkfile): attribute 'path_to' runs past the end of the command");

    Bytes type_only;
    put_le(type_only, attr::path_to, 2);  // the command ends before the length field
    CHECK(rejection(stream_with(mkfile("f").append(type_only))) ==
          "command 2 (mkfile): attribute header cut off at the end of the command");
    CHECK(rejection(stream_with(mkfile("f").append(Bytes{std::byte{attr::path_to}}))) ==
          "command 2 (mkfile): attribute header cut off at the end of the command");
}

TEST_CASE("stream: the data attribute has a length in v1 and runs to the end in v2") {
    CHECK_NOTHROW(validate(stream_with(write_v1("f", "abc"), 1)));
    CHECK_NOTHROW(validate(stream_with(write_v2("f", "abc"), 2)));
    CHECK_NOTHROW(validate(stream_with(write_v2("f", ""), 2)));
    CHECK(contains(rejection(stream_with(write_v2("f", "abcdefgh"), 1)), "command 2 (write): "));
    // v1 layout in a v2 stream: data is last, so its length field just becomes part of the data.
    CHECK_NOTHROW(validate(stream_with(write_v1("f", "abc"), 2)));
}

// ---- Rejected streams: paths ---------------------------------------------------------------

TEST_CASE("stream: every confined path attribute rejects ways out of the subvolume") {
    struct BadPath {
        std::string path;
        std::string reason;
    };
    const std::vector<BadPath> bad_paths{
        {"../x", "'..' component not allowed"},
        {"..", "'..' component not allowed"},
        {"a/../b", "'..' component not allowed"},
        {"a/..", "'..' component not allowed"},
        {"/abs", "absolute path not allowed"},
        {"/", "absolute path not allowed"},
        {"a//b", "empty component not allowed"},
        {"a/", "trailing '/' not allowed"},
        {".", "'.' component not allowed"},
        {"./a", "'.' component not allowed"},
        {"a/./b", "'.' component not allowed"},
        {std::string("a\0/../../b", 10), "NUL byte not allowed"},
        {std::string(4096, 'a'), "longer than 4095 bytes"},
        {"a/" + std::string(256, 'b'), "component longer than 255 bytes"},
    };
    struct Carrier {
        std::string label;
        std::string attribute;
        std::function<Command(const std::string&)> make;
    };
    const std::vector<Carrier> carriers{
        {"command 2 (mkfile)", "path", [](const std::string& p) { return mkfile(p); }},
        {"command 2 (utimes)", "path", [](const std::string& p) { return utimes(p); }},
        {"command 2 (rename)", "path", [](const std::string& p) { return rename(p, "x"); }},
        {"command 2 (rename)", "path_to", [](const std::string& p) { return rename("x", p); }},
        {"command 2 (link)", "path", [](const std::string& p) { return link(p, "x"); }},
        {"command 2 (link)", "path_link", [](const std::string& p) { return link("x", p); }},
        {"command 2 (clone)", "path", [](const std::string& p) { return clone(p, "x"); }},
        {"command 2 (clone)", "clone_path", [](const std::string& p) { return clone("x", p); }},
        {"command 2 (symlink)", "path", [](const std::string& p) { return symlink(p, "x"); }},
        {"command 2 (write)", "path", [](const std::string& p) { return write_v1(p, "x"); }},
    };
    for (const Carrier& carrier : carriers) {
        for (const BadPath& bad : bad_paths) {
            CAPTURE(carrier.label);
            CAPTURE(carrier.attribute);
            CAPTURE(bad.path.substr(0, 20));
            const std::string message = rejection(stream_with(carrier.make(bad.path)));
            CHECK(message.starts_with(carrier.label + ": " + carrier.attribute + " "));
            CHECK(message.ends_with(": " + bad.reason));
        }
    }
}

TEST_CASE("stream: path messages quote the path safely and name the attribute") {
    CHECK(rejection(stream_with(rename("x", "../etc/passwd"))) ==
          "command 2 (rename): path_to '../etc/passwd': '..' component not allowed");
    CHECK(rejection(stream_with(mkfile(std::string("a\0b", 3)))) ==
          "command 2 (mkfile): path 'a\\x00b': NUL byte not allowed");
    CHECK(rejection(stream_with(mkfile("a\n/../b"))) == "command 2 (mkfile): path 'a\\n/../b': '..' component not allowed");
    const std::string message = rejection(stream_with(mkfile(std::string(5000, 'a'))));
    CHECK(message.size() < 300);
    CHECK(contains(message, "...': longer than 4095 bytes"));
}

TEST_CASE("stream: orphan names and ordinary names are fine") {
    CHECK_NOTHROW(validate(stream_with(mkfile("o257-5-0"))));
    CHECK_NOTHROW(validate(stream_with(rename("o257-5-0", "usr/lib/..hidden/.x/...")))) ;
    CHECK_NOTHROW(validate(stream_with(mkfile(std::string(255, 'n') + "/" + std::string(255, 'm')))));
    CHECK_NOTHROW(validate(stream_with(mkfile("\xff\xfe not utf-8"))));
}

TEST_CASE("stream: the subvolume name is one component") {
    for (const std::string& name : std::vector<std::string>{"a/b", "..", ".", "", "/abs", std::string(256, 'v')}) {
        CAPTURE(name);
        CHECK(rejection(StreamBuilder(1).add(subvol(name)).add(end()).bytes()).starts_with("command 1 (subvol): path"));
    }
    CHECK(rejection(StreamBuilder(1).add(snapshot("a/b", 1, 2)).add(end()).bytes()) ==
          "command 1 (snapshot): path 'a/b': '/' not allowed in a subvolume name");
}

TEST_CASE("stream: clone sources are bounded") {
    StreamBuilder stream(1);
    stream.add(subvol());
    for (size_t i = 0; i <= max_clone_sources; ++i) {
        Bytes uuid(16);
        uuid[0] = static_cast<std::byte>(i);
        uuid[1] = static_cast<std::byte>(i >> 8);
        stream.add(Command(cmd::clone)
                       .text(attr::path, "f")
                       .u64(attr::file_offset, 0)
                       .u64(attr::clone_len, 1)
                       .raw(attr::clone_uuid, uuid)
                       .u64(attr::clone_ctransid, 1)
                       .text(attr::clone_path, "g")
                       .u64(attr::clone_offset, 0));
    }
    stream.add(end());
    CHECK(rejection(stream.bytes()) == "command 1026 (clone): more than 1024 different clone sources");
}

// ---- validate_stream and real streams ------------------------------------------------------

TEST_CASE("validate_stream: reads a pipe to its end") {
    const Bytes bytes = sample_stream(2);
    REQUIRE(bytes.size() < 4096);  // fits the pipe buffer, so no writer thread is needed
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    REQUIRE(write(fds[1], bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    close(fds[1]);
    std::vector<Progress> reports;
    const StreamSummary summary = validate_stream(fds[0], [&](const Progress& p) { reports.push_back(p); });
    close(fds[0]);
    CHECK(summary.total_bytes == bytes.size());
    REQUIRE_FALSE(reports.empty());
    CHECK(reports.back().phase == "validate");
    CHECK(reports.back().bytes == bytes.size());
    CHECK_FALSE(reports.back().total.has_value());
}

TEST_CASE("validate_stream: a file's size is the progress total, errors are InvalidInput") {
    for (const auto& path : corpus_files("valid-v1-full")) {
        const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        std::optional<uint64_t> total;
        validate_stream(fd, [&](const Progress& p) { total = p.total; });
        close(fd);
        CHECK(total == std::filesystem::file_size(path));
    }
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    REQUIRE(write(fds[1], "btrfs-stream", 12) == 12);
    close(fds[1]);
    try {
        validate_stream(fds[0]);
        FAIL("accepted");
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::InvalidInput);
        CHECK(std::string(e.what()) == "header: truncated stream (12 of 17 bytes)");
    }
    close(fds[0]);
}

TEST_CASE("stream corpus: every valid-* seed is accepted") {
    // Real streams made by `btrfs send` (v1, v2, full, incremental, compressed) and minimal ones.
    const auto files = corpus_files("valid-");
    REQUIRE(files.size() >= 7);
    for (const auto& path : files) {
        const std::string name = path.filename().string();
        CAPTURE(name);
        const Bytes bytes = read_binary(path);
        const StreamSummary summary = validate(bytes);
        CHECK(summary.total_bytes == bytes.size());
        CHECK(summary.version == (contains(name, "-v2-") ? 2u : 1u));
        CHECK(summary.incremental() == contains(name, "incremental"));
        CHECK(summary.command_count >= 2);
        CHECK_FALSE(summary.subvolume_name.empty());
        // Byte by byte, too, and with a piece size that splits headers.
        CHECK(validate(bytes, 1).command_count == summary.command_count);
        CHECK(validate(bytes, 7).command_count == summary.command_count);
    }
}

TEST_CASE("stream corpus: every rejected-* seed is rejected") {
    const auto files = corpus_files("rejected-");
    REQUIRE(files.size() >= 2);
    for (const auto& path : files) {
        CAPTURE(path.filename().string());
        CHECK_THROWS_AS(validate(read_binary(path)), Error);
    }
}

TEST_CASE("stream corpus: a real incremental stream names the full one as its parent") {
    const StreamSummary full = validate(read_binary(STRATA_SOURCE_DIR "/tests/fuzz/corpus/valid-v1-full.stream"));
    const StreamSummary delta =
        validate(read_binary(STRATA_SOURCE_DIR "/tests/fuzz/corpus/valid-v1-incremental.stream"));
    REQUIRE(delta.parent.has_value());
    CHECK(delta.parent->uuid == full.subvolume.uuid);
    CHECK(delta.parent->ctransid == full.subvolume.ctransid);
    CHECK(delta.subvolume.uuid != full.subvolume.uuid);
    // The full stream reflinks one file to another inside the subvolume being sent.
    CHECK(full.clone_sources == std::set<Uuid>{full.subvolume.uuid});
}

}  // namespace strata::stream
