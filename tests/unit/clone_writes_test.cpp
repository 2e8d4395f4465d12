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

// A whole write command.
std::string write_command(std::string_view path, uint64_t offset, std::string_view data, uint32_t version) {
    return stream::make_command(Cmd::Write, write_prefix(path, offset, data.size(), version), data);
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

// What btrfs receive makes of the commands: the files they name, starting from nothing; clones
// copy from the parent's files in `sources`.
struct Receiver {
    uint32_t version;
    std::map<std::string, std::string> sources;
    std::map<std::string, std::string> files;
    uint64_t cloned = 0, written = 0;
    std::vector<Parsed> commands;

    void operator()(std::string_view command) {
        auto p = parse(command, version);
        auto& file = files[text(p, Attr::Path)];
        const uint64_t offset = u64(p, Attr::FileOffset);
        std::string bytes;
        if (p.type == Cmd::Clone) {
            const uint64_t length = u64(p, Attr::CloneLen), from = u64(p, Attr::CloneOffset);
            const auto& source = sources.at(text(p, Attr::ClonePath));
            CHECK(text(p, Attr::CloneUuid) == std::string(parent_ref.uuid.begin(), parent_ref.uuid.end()));
            CHECK(u64(p, Attr::CloneCtransid) == 77);
            CHECK(from == offset);
            CHECK(offset % 4096 == 0);
            CHECK(length % 4096 == 0);
            CHECK(length > 0);
            REQUIRE(from + length <= source.size());
            bytes = source.substr(from, length);
            cloned += length;
        } else {
            REQUIRE(p.type == Cmd::Write);
            bytes = p.data;
            if (version == 1) CHECK(bytes.size() < 65536);
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
    Receiver r{1, {{"lib/old", old}}, {}, 0, 0, {}};
    CloneWriter w(1, parent_ref, 4096, std::ref(r));
    const ParentBytes parent{"lib/old", 0, old};
    w.write(write_command("f", 0, std::string_view(now).substr(0, 24576), 1), parent);
    w.write(write_command("f", 24576, std::string_view(now).substr(24576), 1), parent);
    w.flush();
    CHECK(r.files["f"] == now);
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

TEST_CASE("CloneWriter passes on a write none of whose blocks clone as the very command it got") {
    const std::string old = test::random_bytes(16384, 4), now = test::random_bytes(16384 + 100, 5);
    for (const uint32_t version : {1u, 2u}) {
        CAPTURE(version);
        std::vector<std::string> out;
        CloneWriter w(version, parent_ref, 4096, [&](std::string_view c) { out.emplace_back(c); });
        // Offset before path: a layout that rebuilding the command would change.
        std::string prefix = attr(Attr::FileOffset, le(0, 8)) + attr(Attr::Path, "f") + le(static_cast<uint16_t>(Attr::Data), 2);
        if (version == 1) prefix += le(now.size(), 2);
        const auto command = stream::make_command(Cmd::Write, prefix, now);
        w.write(command, ParentBytes{"lib/old", 0, old});
        w.flush();
        REQUIRE(out.size() == 1);
        CHECK(out[0] == command);
    }
}

TEST_CASE("CloneWriter never merges clones of other files, other sources or across a gap") {
    const std::string a = test::random_bytes(16384, 2), b = test::random_bytes(16384, 3);
    Receiver r{2, {{"lib/a", a}, {"lib/b", b}}, {}, 0, 0, {}};
    CloneWriter w(2, parent_ref, 4096, std::ref(r));
    const auto part = [](const std::string& s, size_t at, size_t n) { return std::string_view(s).substr(at, n); };
    w.write(write_command("f", 0, part(a, 0, 8192), 2), ParentBytes{"lib/a", 0, a});
    w.write(write_command("g", 8192, part(a, 8192, 8192), 2), ParentBytes{"lib/a", 0, a});  // another file
    w.write(write_command("g", 16384, part(b, 0, 4096), 2), ParentBytes{"lib/b", 0, b});  // b at another offset: written
    w.write(write_command("f", 8192, part(b, 8192, 4096), 2), ParentBytes{"lib/b", 0, b});  // another source
    w.write(write_command("f", 16384, part(b, 12288, 4096), 2), ParentBytes{"lib/b", 8192, part(b, 8192, 8192)});
    w.write(write_command("f", 12288, part(b, 12288, 4096), 2), ParentBytes{"lib/b", 8192, part(b, 8192, 4096)});
    w.flush();
    std::vector<std::pair<Cmd, uint64_t>> seen;
    for (const auto& c : r.commands)
        seen.emplace_back(c.type, c.type == Cmd::Clone ? u64(c, Attr::CloneLen) : c.data.size());
    // f 0+8K from a; g 8K+8K from a; g's 4K of b at another offset written; f 8K+4K from b; f
    // 16K written (b's bytes at 12K, not at 16K); f 12K: the window ends before it, written.
    CHECK(seen == std::vector<std::pair<Cmd, uint64_t>>{{Cmd::Clone, 8192}, {Cmd::Clone, 8192}, {Cmd::Write, 4096},
                                                         {Cmd::Clone, 4096}, {Cmd::Write, 4096}, {Cmd::Write, 4096}});
    CHECK(text(r.commands[1], Attr::ClonePath) == "lib/a");
    CHECK(text(r.commands[3], Attr::ClonePath) == "lib/b");
}

TEST_CASE("CloneWriter builds the original files from any split of writes, gaps, windows and offsets, v1 and v2") {
    std::mt19937 rng(11);
    for (unsigned round = 0; round < 300; ++round) {
        CAPTURE(round);
        const uint32_t version = 1 + rng() % 2;
        Receiver r{version, {}, {}, 0, 0, {}};
        CloneWriter w(version, parent_ref, 4096, std::ref(r));
        std::map<std::string, std::string> expected;
        for (const std::string name : {"f", "g"}) {
            const std::string old = test::random_bytes(4096 * (1 + rng() % 24) + rng() % 4096, round * 2 + (name == "g"));
            r.sources["lib/" + name] = old;
            std::string now = old.substr(0, rng() % (old.size() + 1));
            for (int edits = static_cast<int>(rng() % 4); edits > 0 && !now.empty(); --edits) now[rng() % now.size()] ^= 1;
            now += test::random_bytes(rng() % 9000, round + 1000);
            expected[name] = now;
        }
        // Writes of both files interleaved, in pieces, some bytes never written (holes, zeros).
        std::map<std::string, size_t> at{{"f", 0}, {"g", 0}};
        while (at["f"] < expected["f"].size() || at["g"] < expected["g"].size()) {
            const std::string name = at["f"] >= expected["f"].size() ? "g" : at["g"] >= expected["g"].size() ? "f" : (rng() % 2 ? "f" : "g");
            auto& pos = at[name];
            const auto& now = expected[name];
            const size_t n = std::min<size_t>(now.size() - pos, 1 + rng() % (version == 1 ? 60000 : 200000));
            if (rng() % 8 == 0) {  // a hole
                expected[name].replace(pos, n, std::string(n, '\0'));
                pos += n;
                continue;
            }
            // The parent's bytes the payload read: a window of the source file anywhere.
            const auto& old = r.sources["lib/" + name];
            const size_t from = rng() % 3 == 0 ? rng() % (old.size() + 1) : 0;
            const size_t to = rng() % 3 == 0 ? from + rng() % (old.size() - from + 1) : old.size();
            w.write(write_command(name, pos, std::string_view(expected[name]).substr(pos, n), version), ParentBytes{"lib/" + name, from, std::string_view(old).substr(from, to - from)});
            pos += n;
        }
        w.flush();
        for (const auto& [name, now] : expected) {
            auto got = r.files[name];
            got.resize(now.size());  // a hole at the end is a size that a later command sets
            REQUIRE(got == now);
        }
        CHECK(r.cloned + r.written <= expected["f"].size() + expected["g"].size());
    }
}

TEST_CASE("CloneWriter passes on as they are writes it cannot read and writes without a parent file") {
    const std::string old = test::random_bytes(8192, 3);
    std::vector<std::string> out;
    CloneWriter w(1, parent_ref, 4096, [&](std::string_view c) { out.emplace_back(c); });
    // An attribute a write does not have (a future sender's): not understood, not changed.
    const std::string odd = attr(Attr::Path, "f") + attr(Attr::Uuid, std::string(16, 'u')) +
                            attr(Attr::FileOffset, le(0, 8)) + le(static_cast<uint16_t>(Attr::Data), 2) + le(8192, 2);
    w.write(stream::make_command(Cmd::Write, odd, old), ParentBytes{"lib/old", 0, old});
    w.write(write_command("f", 0, old, 1), ParentBytes{});
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

    // Hostile starts: no parent, never a crash, and no waiting for more than a command's worth.
    const auto start_of = [&](uint32_t version, const std::string& payload) {
        StreamStart s;
        s.feed(std::string(stream::stream_magic) + le(version, 4) + stream::make_command(Cmd::Snapshot, payload));
        return s;
    };
    const auto uuid = std::string(parent_ref.uuid.begin(), parent_ref.uuid.end());
    auto v1 = start_of(1, attr(Attr::Path, "v2") + attr(Attr::CloneUuid, uuid) + attr(Attr::CloneCtransid, le(77, 8)));
    REQUIRE(v1.parent());
    CHECK(v1.version() == 1);
    CHECK_FALSE(start_of(2, attr(Attr::CloneUuid, uuid.substr(0, 15)) + attr(Attr::CloneCtransid, le(77, 8))).parent());
    CHECK_FALSE(start_of(2, attr(Attr::CloneUuid, uuid)).parent());  // no ctransid
    CHECK_FALSE(start_of(2, attr(Attr::CloneUuid, uuid) + attr(Attr::CloneCtransid, le(77, 4))).parent());
    CHECK_FALSE(start_of(2, attr(Attr::CloneUuid, uuid) + le(static_cast<uint16_t>(Attr::Path), 2) + le(500, 2)).parent());
    StreamStart huge;  // a first command said to be 1 GiB long
    huge.feed(std::string(stream::stream_magic) + le(2, 4) + le(1u << 30, 4) + le(static_cast<uint16_t>(Cmd::Snapshot), 2) +
              le(0, 4));
    CHECK(huge.known());
    CHECK_FALSE(huge.parent());
}
