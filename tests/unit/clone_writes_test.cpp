// CloneWriter and StreamStart: write commands of a rebuilt stream turned into clones of the
// parent's blocks and the writes left over; the file they build must be the original writes'.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "delta/clone_writes.hpp"
#include "stream/protocol.hpp"
#include "support/random.hpp"

using namespace strata;
using namespace strata::delta;
using stream::Attr;
using stream::Cmd;

namespace {

std::string le(uint64_t value, size_t width) {
    std::string out;
    for (size_t i = 0; i < width; ++i) out += static_cast<char>(value >> (8 * i) & 0xff);
    return out;
}

std::string attr(Attr type, std::string_view value) {
    return le(static_cast<uint16_t>(type), 2) + le(value.size(), 2) + std::string(value);
}

// A write's payload before its data, as the kernel lays it out.
std::string write_prefix(std::string_view path, uint64_t offset, size_t data_size, uint32_t version) {
    std::string p = attr(Attr::Path, path) + attr(Attr::FileOffset, le(offset, 8)) + le(static_cast<uint16_t>(Attr::Data), 2);
    if (version == 1) p += le(data_size, 2);
    return p;
}

std::span<const std::byte> bytes_of(std::string_view s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

struct Parsed {
    Cmd type{};
    std::map<uint16_t, std::string> attrs;
    std::string data;
};

Parsed parse(std::string_view command, uint32_t version) {
    const auto all = bytes_of(command);
    REQUIRE(command.size() >= stream::command_header_size);
    const uint32_t length = stream::load_le32(all, 0);
    REQUIRE(command.size() == stream::command_header_size + length);
    CHECK(stream::load_le32(all, stream::command_crc_offset) ==
          stream::command_crc(all.first(stream::command_header_size), all.subspan(stream::command_header_size)));
    Parsed p{static_cast<Cmd>(stream::load_le16(all, 4)), {}, {}};
    size_t pos = stream::command_header_size;
    while (pos < command.size()) {
        const uint16_t type = stream::load_le16(all, pos);
        pos += 2;
        size_t n = command.size() - pos;
        if (version == 1 || type != static_cast<uint16_t>(Attr::Data)) {
            n = stream::load_le16(all, pos);
            pos += 2;
        }
        REQUIRE(pos + n <= command.size());
        const std::string value(command.substr(pos, n));
        if (type == static_cast<uint16_t>(Attr::Data)) p.data = value;
        else p.attrs[type] = value;
        pos += n;
    }
    return p;
}

uint64_t u64(const Parsed& p, Attr a) {
    const auto& v = p.attrs.at(static_cast<uint16_t>(a));
    REQUIRE(v.size() == 8);
    return stream::load_le64(bytes_of(v), 0);
}
std::string text(const Parsed& p, Attr a) { return p.attrs.at(static_cast<uint16_t>(a)); }

const stream::SubvolumeRef parent_ref{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, 77};

// What btrfs receive makes of the commands: the file "f", starting from nothing; clones copy
// from `source`, the parent's file.
struct Receiver {
    uint32_t version;
    std::string_view source;
    std::string file;
    uint64_t cloned = 0, written = 0;
    std::vector<Parsed> commands;

    void operator()(std::string_view command) {
        auto p = parse(command, version);
        CHECK(text(p, Attr::Path) == "f");
        const uint64_t offset = u64(p, Attr::FileOffset);
        std::string bytes;
        if (p.type == Cmd::Clone) {
            const uint64_t length = u64(p, Attr::CloneLen), from = u64(p, Attr::CloneOffset);
            CHECK(text(p, Attr::ClonePath) == "lib/old");
            CHECK(text(p, Attr::CloneUuid) == std::string(parent_ref.uuid.begin(), parent_ref.uuid.end()));
            CHECK(u64(p, Attr::CloneCtransid) == 77);
            CHECK(offset % 4096 == 0);
            CHECK(length % 4096 == 0);
            CHECK(from + length <= source.size());
            bytes = source.substr(from, length);
            cloned += length;
        } else {
            REQUIRE(p.type == Cmd::Write);
            bytes = p.data;
            written += bytes.size();
        }
        if (file.size() < offset + bytes.size()) file.resize(offset + bytes.size());
        file.replace(offset, bytes.size(), bytes);
        commands.push_back(std::move(p));
    }
};

}  // namespace

TEST_CASE("CloneWriter clones the whole blocks the parent has at the same offset and writes the rest") {
    const std::string old = test::random_bytes(40960, 1);
    std::string now = old;
    now[20000] ^= 0x5a;
    now += "a line appended at the end\n";
    Receiver r{1, old, {}, 0, 0, {}};
    CloneWriter w(1, parent_ref, 4096, std::ref(r));
    const ParentBytes parent{"lib/old", 0, old};
    w.write(write_prefix("f", 0, 24576, 1), std::string_view(now).substr(0, 24576), parent);
    w.write(write_prefix("f", 24576, now.size() - 24576, 1), std::string_view(now).substr(24576), parent);
    w.flush();
    CHECK(r.file == now);
    // Blocks 0-3 cloned, block 4 (the changed byte) written, blocks 5-9 one clone across both
    // writes, the appended tail written.
    REQUIRE(r.commands.size() == 4);
    CHECK(r.commands[0].type == Cmd::Clone);
    CHECK(u64(r.commands[0], Attr::CloneLen) == 16384);
    CHECK(r.commands[1].type == Cmd::Write);
    CHECK(u64(r.commands[1], Attr::FileOffset) == 16384);
    CHECK(r.commands[1].data.size() == 4096);
    CHECK(r.commands[2].type == Cmd::Clone);
    CHECK(u64(r.commands[2], Attr::FileOffset) == 20480);
    CHECK(u64(r.commands[2], Attr::CloneLen) == 20480);
    CHECK(r.commands[3].type == Cmd::Write);
    CHECK(r.commands[3].data == "a line appended at the end\n");
}

TEST_CASE("CloneWriter builds the original file from any split of writes, edits and offsets, v1 and v2") {
    std::mt19937 rng(11);
    for (unsigned round = 0; round < 200; ++round) {
        CAPTURE(round);
        const uint32_t version = 1 + rng() % 2;
        const std::string old = test::random_bytes(4096 * (1 + rng() % 24) + rng() % 4096, round);
        std::string now = old.substr(0, rng() % (old.size() + 1));
        for (int edits = rng() % 4; edits > 0 && !now.empty(); --edits) now[rng() % now.size()] ^= 1;
        now += test::random_bytes(rng() % 9000, round + 1000);
        if (now.empty()) now = "x";
        // The parent's bytes the payload read: all of its file, or a window of it.
        const uint64_t from = rng() % 3 == 0 ? (rng() % (old.size() + 1)) : 0;
        const ParentBytes parent{"lib/old", from, std::string_view(old).substr(from)};
        Receiver r{version, old, {}, 0, 0, {}};
        CloneWriter w(version, parent_ref, 4096, std::ref(r));
        for (size_t at = 0; at < now.size();) {
            const size_t n = std::min<size_t>(now.size() - at, 1 + rng() % (version == 1 ? 60000 : 200000));
            w.write(write_prefix("f", at, n, version), std::string_view(now).substr(at, n), parent);
            at += n;
        }
        w.flush();
        REQUIRE(r.file == now);
        CHECK(r.cloned + r.written == now.size());
    }
}

TEST_CASE("CloneWriter passes on as they are writes it cannot read and writes without a parent file") {
    const std::string old = test::random_bytes(8192, 3);
    std::vector<std::string> out;
    CloneWriter w(1, parent_ref, 4096, [&](std::string_view c) { out.emplace_back(c); });
    // An attribute a write does not have (a future sender's): not understood, not changed.
    const std::string odd = attr(Attr::Path, "f") + attr(Attr::Uuid, std::string(16, 'u')) +
                            attr(Attr::FileOffset, le(0, 8)) + le(static_cast<uint16_t>(Attr::Data), 2) + le(8192, 2);
    w.write(odd, old, ParentBytes{"lib/old", 0, old});
    w.write(write_prefix("f", 0, 8192, 1), old, ParentBytes{});
    w.flush();
    REQUIRE(out.size() == 2);
    CHECK(out[0] == stream::make_command(Cmd::Write, odd, old));
    CHECK(out[1] == stream::make_command(Cmd::Write, write_prefix("f", 0, 8192, 1), old));
}

TEST_CASE("StreamStart reads the version and the parent an incremental stream's first command names") {
    const std::string header = std::string(stream::stream_magic) + le(2, 4);
    const std::string snapshot = stream::make_command(
        Cmd::Snapshot, attr(Attr::Path, "v2") + attr(Attr::Uuid, std::string(16, 'n')) + attr(Attr::Ctransid, le(9, 8)) +
                           attr(Attr::CloneUuid, std::string(parent_ref.uuid.begin(), parent_ref.uuid.end())) +
                           attr(Attr::CloneCtransid, le(77, 8)));
    const std::string stream = header + snapshot + stream::make_command(Cmd::End, "");
    StreamStart start;
    for (char c : stream) start.feed(std::string_view(&c, 1));  // pieces split anything
    REQUIRE(start.known());
    CHECK(start.version() == 2);
    REQUIRE(start.parent());
    CHECK(start.parent()->uuid == parent_ref.uuid);
    CHECK(start.parent()->ctransid == 77);

    StreamStart full;
    full.feed(header + stream::make_command(Cmd::Subvol, attr(Attr::Path, "v1") + attr(Attr::Uuid, std::string(16, 'n')) +
                                                             attr(Attr::Ctransid, le(9, 8))));
    CHECK(full.known());
    CHECK_FALSE(full.parent());

    StreamStart garbage;
    garbage.feed("not a send stream at all");
    CHECK(garbage.known());
    CHECK_FALSE(garbage.parent());
}
