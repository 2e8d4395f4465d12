// The delta payload on real btrfs: an incremental `btrfs send -p` stream of a changed tree is
// encoded against its parent, decoded against the parent again and must give the same stream,
// byte for byte, which `btrfs receive` then applies. Damaged bodies and wrong parents are
// refused without a wrong byte passed on.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>

#include "base/fd.hpp"
#include "base/process.hpp"
#include "btrfs/subvolume.hpp"
#include "delta/parent_files.hpp"
#include "delta/payload.hpp"
#include "sign/sha256.hpp"
#include "support/errors.hpp"
#include "support/gzip.hpp"
#include "support/random.hpp"
#include "support/scratch_pool.hpp"
#include "support/tree.hpp"
#include "stream/zstd.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

using test::random_bytes;

void write_file(const fs::path& file, std::string_view content) {
    fs::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary | std::ios::trunc) << content;
}

std::string read_file(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void run_btrfs(const std::vector<std::string>& args) {
    std::vector<std::string> argv{"btrfs"};
    argv.insert(argv.end(), args.begin(), args.end());
    run_checked(argv);
}

// A manual page, and the next version of it: a paragraph inserted, a word changed.
std::string manual_v1() { return test::text_like(60000, 7); }
std::string manual_v2() {
    auto page = manual_v1();
    page.insert(20000, "a new option, documented\n");
    page.replace(40000, 6, "STRATA");
    return page;
}

// v1 and v2 (a snapshot of v1, changed the ways package updates change trees), both read-only,
// and the incremental stream from v1 to v2.
struct World {
    test::ScratchPool pool{512ull << 20};
    fs::path v1 = pool.mountpoint() / "v1", v2 = pool.mountpoint() / "v2";
    fs::path stream_file = pool.dir() / "v2.stream";
    std::string stream;

    World() {
        run_btrfs({"subvolume", "create", v1.string()});
        write_file(v1 / "etc/unchanged.conf", "key = value\n");
        write_file(v1 / "lib/libfoo.so.1", test::code_like(20000, 0, 1));
        write_file(v1 / "lib/modules/6.1.0-50/kernel/net/e1000.ko", test::code_like(8000, 0, 2));
        write_file(v1 / "bin/tool", random_bytes(100000, 3));
        write_file(v1 / "share/old-name.bin", random_bytes(70000, 4));
        write_file(v1 / "share/big.img", random_bytes(300000, 5));
        write_file(v1 / "share/gone.txt", "removed in v2\n");
        write_file(v1 / "share/man/man1/tool.1.gz", test::zlib_gzip(manual_v1(), 9, 8));
        write_file(v1 / "boot/initrd.img", random_bytes(1 << 20, 12));
        write_file(v1 / "var/log.bin", random_bytes(3 << 20, 14));
        fs::create_symlink("libfoo.so.1", v1 / "lib/libfoo.so");
        run_btrfs({"subvolume", "snapshot", v1.string(), v2.string()});

        // Same path, new inode (as dpkg replaces files), relinked code: a binary diff.
        fs::remove(v2 / "lib/libfoo.so.1");
        write_file(v2 / "lib/libfoo.so.1", test::code_like(20000, 100, 1) + "new function");
        // The kernel's version moved: the module's predecessor is under the old version.
        fs::remove_all(v2 / "lib/modules/6.1.0-50");
        write_file(v2 / "lib/modules/6.1.0-56/kernel/net/e1000.ko", test::code_like(8000, 32, 2));
        // Rewritten with the same content: a copy from the parent.
        fs::remove(v2 / "bin/tool");
        write_file(v2 / "bin/tool", random_bytes(100000, 3));
        // The same content under a name of its own: a copy found by size.
        write_file(v2 / "share/new-name.bin", random_bytes(70000, 4));
        // New content: literal.
        write_file(v2 / "share/fresh.bin", random_bytes(50000, 6));
        // One new program under three names (not hardlinks): sent once, kept, then referred to.
        for (const char* twin : {"bin/twin", "lib/twin/twin", "libexec/twin"})
            write_file(v2 / twin, random_bytes(60000, 21));
        // gzip files zlib made: diffed (or shipped) decompressed, compressed again by the client.
        fs::remove(v2 / "share/man/man1/tool.1.gz");
        write_file(v2 / "share/man/man1/tool.1.gz", test::zlib_gzip(manual_v2(), 9, 8));
        write_file(v2 / "share/doc/tool/changelog.gz", test::zlib_gzip(test::text_like(30000, 8), 6, 8));
        // A compressed file with a new header that shares only the next 80 KiB with its
        // predecessor (a compressed stream differs from its first change on): those come from the
        // parent.
        fs::remove(v2 / "boot/initrd.img");
        write_file(v2 / "boot/initrd.img", "new header" + random_bytes(1 << 20, 12).substr(10, 80 << 10) +
                                               random_bytes((1 << 20) - (80 << 10) - 10, 13));
        // One another deflate made (here: zlib's Huffman-only strategy): opaque, literal.
        write_file(v2 / "share/doc/tool/NEWS.gz", test::zlib_gzip(test::text_like(8000, 9), 9, 8, 2));
        // Changed in place in its middle: writes at an offset of the same inode.
        {
            Fd fd(::open((v2 / "share/big.img").c_str(), O_WRONLY | O_CLOEXEC));
            REQUIRE(fd);
            const std::string patch = "patched in place";
            REQUIRE(pwrite(fd.get(), patch.data(), patch.size(), 150000) == static_cast<ssize_t>(patch.size()));
        }
        // Its last MiB written again, a line appended: the stream carries the tail, whose writes
        // before the last are copies, and the last is diffed against the parent's bytes at the
        // same offset.
        {
            Fd fd(::open((v2 / "var/log.bin").c_str(), O_WRONLY | O_CLOEXEC));
            REQUIRE(fd);
            const std::string tail = random_bytes(3 << 20, 14).substr(2 << 20) + "appended line\n";
            REQUIRE(pwrite(fd.get(), tail.data(), tail.size(), 2 << 20) == static_cast<ssize_t>(tail.size()));
        }
        fs::remove(v2 / "share/gone.txt");
        fs::rename(v2 / "etc/unchanged.conf", v2 / "etc/renamed.conf");
        fs::create_hard_link(v2 / "share/fresh.bin", v2 / "share/fresh-link.bin");
        run_checked({"setfattr", "-n", "user.origin", "-v", "v2", (v2 / "share/fresh.bin").string()});
        run_btrfs({"property", "set", v1.string(), "ro", "true"});
        run_btrfs({"property", "set", v2.string(), "ro", "true"});
        run_btrfs({"send", "-q", "-p", v1.string(), "-f", stream_file.string(), v2.string()});
        stream = read_file(stream_file);
    }

    std::pair<std::string, delta::EncodeStats> encode() const {
        Fd fd(::open(stream_file.c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(fd);
        std::string body;
        const auto stats = delta::encode_payload(fd.get(), Dir::open(v1), [&](std::string_view b) { body += b; });
        return {body, stats};
    }
};

// Decodes body in pieces of `piece` bytes, each record as soon as it is complete; returns the
// error message ("" when none) and what was passed on before it.
std::pair<std::string, std::string> decode(const fs::path& parent, std::string_view body, size_t piece = 4096) {
    std::string out;
    const auto error = test::error_of([&] {
        delta::PayloadDecoder decoder(Dir::open(parent), [&](std::string_view b) { out += b; }, 0);
        for (size_t at = 0; at < body.size(); at += piece) decoder.feed(body.substr(at, piece));
        decoder.finish();
    });
    return {error, out};
}

}  // namespace

TEST_CASE("a delta payload rebuilds the incremental send stream byte for byte, and btrfs receive applies it") {
    test::require_root_and_btrfs();
    World w;
    const auto [body, stats] = w.encode();

    CHECK(stats.stream_bytes == w.stream.size());
    CHECK(stats.body_bytes == body.size());
    CHECK(stats.diffed_bytes > 0);   // libfoo, e1000.ko, big.img
    // bin/tool and share/new-name.bin, and the writes of var/log.bin's tail before its last
    CHECK(stats.copied_bytes >= 170000 + (900u << 10));
    CHECK(stats.literal_bytes >= 50000 + 60000);  // share/fresh.bin, the first twin, NEWS.gz
    CHECK(stats.literal_bytes < 100000 + 60000);
    CHECK(stats.repeated_bytes == 2 * 60000);  // the other two twins
    CHECK(stats.diffed_bytes >= (1u << 20));  // boot/initrd.img among them
    CHECK(stats.recompressed_bytes == fs::file_size(w.v2 / "share/man/man1/tool.1.gz") +
                                          fs::file_size(w.v2 / "share/doc/tool/changelog.gz"));
    // Compressed, the payload is far smaller than the stream it stands for, beyond the new random
    // bytes of initrd.img that both carry.
    const size_t random_in_both = (1 << 20) - (80 << 10) - 10;
    const auto compressed = [](std::string_view data) {
        std::string out;
        stream::ZstdEncoder zstd(19);
        const stream::Sink sink = [&](std::string_view b) { out += b; };
        zstd.feed(data, sink);
        zstd.finish(sink);
        return out.size();
    };
    MESSAGE("stream ", w.stream.size(), " -> zstd ", compressed(w.stream), "; payload ", body.size(), " -> zstd ",
            compressed(body));
    CHECK((compressed(body) - random_in_both) * 2 < compressed(w.stream) - random_in_both);

    // Records decoded as they arrive, a few behind, or all at the end.
    std::string out;
    for (const size_t lookahead : {size_t{0}, size_t{100000}, delta::default_lookahead_bytes}) {
        CAPTURE(lookahead);
        out.clear();
        delta::PayloadDecoder decoder(Dir::open(w.v1), [&](std::string_view b) { out += b; }, lookahead);
        for (size_t at = 0; at < body.size(); at += 1000) decoder.feed(std::string_view(body).substr(at, 1000));
        const auto result = decoder.finish();
        CHECK(out == w.stream);
        CHECK(result.stream_bytes == w.stream.size());
        CHECK(result.stream_sha256 == stats.stream_sha256);
    }

    const auto rebuilt = w.pool.dir() / "rebuilt.stream";
    write_file(rebuilt, out);
    fs::create_directory(w.pool.mountpoint() / "received");
    run_btrfs({"receive", "-q", "-f", rebuilt.string(), (w.pool.mountpoint() / "received").string()});
    // The root directory's own times are btrfs receive's business (the stream is the original).
    const auto differences = test::compare_trees(w.v2, w.pool.mountpoint() / "received/v2", {.compare_root = false});
    for (const auto& d : differences) MESSAGE(d);
    CHECK(differences.empty());
}

TEST_CASE("decoded for btrfs receive, the blocks a payload copies or patches unchanged are cloned from the parent") {
    test::require_root_and_btrfs();
    World w;
    const auto [body, stats] = w.encode();
    // The client's parent is v1 as it received it (btrfs receive finds clone sources by
    // received_uuid only).
    const auto received = w.pool.mountpoint() / "received";
    fs::create_directory(received);
    const auto v1_stream = w.pool.dir() / "v1.stream";
    run_btrfs({"send", "-q", "-f", v1_stream.string(), w.v1.string()});
    run_btrfs({"receive", "-q", "-f", v1_stream.string(), received.string()});
    const auto sent = btrfs::info(Dir::open(w.v1));
    const stream::SubvolumeRef parent{sent.uuid, sent.ctransid};
    const auto decode_with = [&](std::optional<stream::SubvolumeRef> clone_from) {
        std::string out;
        delta::PayloadDecoder decoder(Dir::open(received / "v1"), [&](std::string_view b) { out += b; },
                                      delta::default_lookahead_bytes, clone_from);
        decoder.feed(body);
        return std::pair{out, decoder.finish()};
    };
    // Another parent than the stream's (or none): the stream as it was sent.
    CHECK(decode_with(stream::SubvolumeRef{sent.uuid, sent.ctransid + 1}).first == w.stream);
    CHECK(decode_with(std::nullopt).first == w.stream);
    const auto [out, result] = decode_with(parent);
    // The digest is the original stream's; what receive gets is smaller: the blocks that are the
    // parent's travel as references.
    CHECK(result.stream_sha256 == stats.stream_sha256);
    CHECK(result.stream_bytes == w.stream.size());
    CHECK(out.size() + (1u << 20) < w.stream.size());

    const auto rebuilt = w.pool.dir() / "clones.stream";
    write_file(rebuilt, out);
    run_btrfs({"receive", "-q", "-f", rebuilt.string(), received.string()});
    const auto v2 = received / "v2";
    const auto differences = test::compare_trees(w.v2, v2, {.compare_root = false});
    for (const auto& d : differences) MESSAGE(d);
    CHECK(differences.empty());
    // var/log.bin's tail was written again with the same bytes but its last line: those blocks,
    // up to its last full one, are v1's own on disk; bin/tool, rewritten whole, too.
    const auto v1 = received / "v1";
    CHECK(test::physical_at(v2 / "var/log.bin", (2u << 20) + 8192) == test::physical_at(v1 / "var/log.bin", (2u << 20) + 8192));
    CHECK(test::physical_at(v2 / "bin/tool", 4096) == test::physical_at(v1 / "bin/tool", 4096));
    CHECK(test::physical_at(v2 / "var/log.bin", (3u << 20) - 4096) == test::physical_at(v1 / "var/log.bin", (3u << 20) - 4096));
    // The block patched in place is v2's own.
    CHECK(test::physical_at(v2 / "share/big.img", 150000) != test::physical_at(v1 / "share/big.img", 150000));
}

TEST_CASE("a damaged delta payload is refused and no wrong byte is passed on") {
    test::require_root_and_btrfs();
    World w;
    const auto body = w.encode().first;

    SUBCASE("every cut is refused at the end") {
        for (size_t cut = 0; cut < body.size(); cut += std::max<size_t>(1, body.size() / 97)) {
            const auto [error, out] = decode(w.v1, std::string_view(body).substr(0, cut));
            CHECK_MESSAGE(!error.empty(), "cut at ", cut);
            CHECK(w.stream.starts_with(out));
        }
    }
    SUBCASE("flipped bytes") {
        std::mt19937 rng(7);
        size_t refused = 0;
        for (int i = 0; i < 200; ++i) {
            std::string damaged = body;
            const size_t at = rng() % damaged.size();
            damaged[at] = static_cast<char>(static_cast<unsigned char>(damaged[at]) ^ (1u + rng() % 255u));
            const auto [error, out] = decode(w.v1, damaged);
            if (error.empty()) continue;  // a byte carried verbatim: the stream's digest catches it
            ++refused;
            CHECK(error.find('\n') == std::string::npos);
        }
        CHECK(refused > 50);
    }
    SUBCASE("a gzip file rebuilt at other zlib parameters") {
        // u8 level, u8 memory level, u16 header length (the header holds "initrd.img"), header.
        const auto gzip_record = [&](char level) {
            const std::string fields{level, '\x08', '\x15', '\x00', '\x1f', '\x8b', '\x08'};
            const auto at = body.find(fields);
            REQUIRE(at != std::string::npos);
            REQUIRE(body.find(fields, at + 1) == std::string::npos);
            return at;
        };
        std::string damaged = body;
        damaged[gzip_record('\x09')] = '\x01';  // tool.1.gz, diffed against its predecessor
        auto [error, out] = decode(w.v1, damaged);
        CHECK(error.ends_with(": rebuild file data from 'share/man/man1/tool.1.gz': does not match its digest (a wrong or "
                              "modified parent)"));
        CHECK(w.stream.starts_with(out));
        damaged = body;
        damaged[gzip_record('\x06')] = '\x01';  // changelog.gz, shipped decompressed
        std::tie(error, out) = decode(w.v1, damaged);
        CHECK(error.ends_with(": literal data does not match its digest"));
        CHECK(w.stream.starts_with(out));
        // Level 0 (replay a recorded parse) is for large gzip files only: a group has no parse.
        damaged = body;
        damaged[gzip_record('\x06')] = '\x00';
        std::tie(error, out) = decode(w.v1, damaged);
        CHECK(error.ends_with(": gzip group without a deflate level"));
        CHECK(w.stream.starts_with(out));
        // Its header no longer gzip's: the thread that compresses it ahead reports it for the record.
        damaged = body;
        damaged[gzip_record('\x06') + 4] = '\x00';
        std::tie(error, out) = decode(w.v1, damaged);
        CHECK(error.starts_with("decode delta payload: record "));
        CHECK(error.ends_with(": rebuild gzip file: not a gzip header"));
        CHECK(w.stream.starts_with(out));

        // After the header: u64 content length, u8 content encoding.
        const size_t content_length_at = gzip_record('\x09') + 4 + 0x15;
        damaged = body;
        damaged.replace(content_length_at, 8, std::string{'\x01', '\x00', '\x00', '\x02', '\x00', '\x00', '\x00', '\x00'});
        std::tie(error, out) = decode(w.v1, damaged);
        CHECK(error.ends_with(": gzip content larger than 33554432 bytes"));
        CHECK(error.starts_with("decode delta payload: record "));
        CHECK(w.stream.starts_with(out));
        damaged = body;
        damaged[content_length_at + 8] = '\x07';
        std::tie(error, out) = decode(w.v1, damaged);
        CHECK(error.ends_with(": unknown gzip content encoding 7"));
        CHECK(w.stream.starts_with(out));
    }
    SUBCASE("a repeated file whose first copy was not kept") {
        // Each twin's record: u8 encoding (0x80: kept) and its data's digest.
        sign::Sha256 sha;
        sha.update(random_bytes(60000, 21));
        const auto digest = sha.hex_digest();
        const auto first = body.find(digest);
        REQUIRE(first != std::string::npos);
        REQUIRE(body[first - 1] == '\x80');  // literal, kept
        std::string damaged = body;
        damaged[first - 1] = '\x00';
        auto [error, out] = decode(w.v1, damaged);
        CHECK(error.ends_with(": the same data as an earlier group, which was not kept"));
        CHECK(w.stream.starts_with(out));
        const auto second = body.find(digest, first + 1);
        REQUIRE(second != std::string::npos);
        REQUIRE(body[second - 1] == '\x04');  // same
        damaged = body;
        damaged[second - 1] = '\x84';
        std::tie(error, out) = decode(w.v1, damaged);
        CHECK(error.ends_with(": data of an earlier group kept again"));
        CHECK(w.stream.starts_with(out));
    }
    SUBCASE("bad magic and data after the end") {
        std::string damaged = body;
        damaged[0] = 'X';
        CHECK(decode(w.v1, damaged).first == "decode delta payload: not a strata delta payload (bad magic)");
        // A payload of format 1 (its 'Z' files rebuilt by GNU gzip): refused before a byte passes on.
        damaged = body;
        REQUIRE(damaged.starts_with("strata-delta 2\n"));
        damaged[13] = '1';
        const auto [old_error, old_out] = decode(w.v1, damaged);
        CHECK(old_error == "decode delta payload: a strata delta payload of another format than this client reads");
        CHECK(old_out.empty());
        CHECK(decode(w.v1, body + "E").first == "decode delta payload: data after the end record");
    }
}

TEST_CASE("a delta payload decoded against a wrong or modified parent is refused") {
    test::require_root_and_btrfs();
    World w;
    const auto body = w.encode().first;
    const auto modified = w.pool.mountpoint() / "v1-modified";
    run_btrfs({"subvolume", "snapshot", w.v1.string(), modified.string()});

    SUBCASE("a file the patch reads changed") {
        std::string lib = read_file(modified / "lib/libfoo.so.1");
        lib[5000] = static_cast<char>(lib[5000] ^ 0x55);
        write_file(modified / "lib/libfoo.so.1", lib);
        const auto [error, out] = decode(modified, body);
        CHECK(error.find("rebuild file data from 'lib/libfoo.so.1': does not match its digest (a wrong or modified parent)") !=
              std::string::npos);
        CHECK(error.starts_with("decode delta payload: record "));
        CHECK(w.stream.starts_with(out));
        CHECK(out.size() < w.stream.size());
    }
    SUBCASE("a gzip file the patch reads is no longer gzip, or another one") {
        write_file(modified / "share/man/man1/tool.1.gz", manual_v1());
        auto [error, out] = decode(modified, body);
        CHECK(error.ends_with(
            ": rebuild file data from 'share/man/man1/tool.1.gz': is not a gzip file (a wrong or modified parent)"));
        CHECK(w.stream.starts_with(out));
        write_file(modified / "share/man/man1/tool.1.gz", test::zlib_gzip(test::text_like(60000, 99), 9, 8));
        std::tie(error, out) = decode(modified, body);
        CHECK(error.ends_with(
            ": rebuild file data from 'share/man/man1/tool.1.gz': does not match its digest (a wrong or modified parent)"));
        CHECK(w.stream.starts_with(out));
    }
    SUBCASE("a file is shorter") {
        fs::resize_file(modified / "bin/tool", 10);
        const auto [error, out] = decode(modified, body);
        CHECK(error.find("read parent file 'bin/tool': shorter than the payload needs") != std::string::npos);
        CHECK(w.stream.starts_with(out));
    }
    SUBCASE("a file became a symlink out of the tree") {
        fs::remove(modified / "bin/tool");
        fs::create_symlink("/etc/passwd", modified / "bin/tool");
        const auto [error, out] = decode(modified, body);
        CHECK(error.find("open parent file 'bin/tool': Too many levels of symbolic links") != std::string::npos);
        CHECK(w.stream.starts_with(out));
    }
    SUBCASE("a directory on the way became a symlink") {
        fs::rename(modified / "bin", modified / "bin.real");
        fs::create_symlink("bin.real", modified / "bin");
        const auto [error, out] = decode(modified, body);
        CHECK(error.find("open parent file 'bin/tool'") != std::string::npos);
        CHECK(w.stream.starts_with(out));
    }
}

// An initrd as mkinitramfs makes it (GNU gzip, larger than a write group) and the next kernel's,
// the same files with a few changed, under the new version's directory.
struct InitrdWorld {
    test::ScratchPool pool{512ull << 20};
    fs::path v1 = pool.mountpoint() / "v1", v2 = pool.mountpoint() / "v2";
    fs::path stream_file = pool.dir() / "v2.stream";
    std::string stream;
    static constexpr const char* old_initrd = "lib/modules/6.1.0-50/initrd.img";
    static constexpr const char* new_initrd = "lib/modules/6.1.0-56/initrd.img";

    // Mostly incompressible (compressed firmware and modules), so the member exceeds a group.
    static std::string content_v1() {
        std::string content;
        for (unsigned i = 0; i < 36; ++i) content += i % 12 == 0 ? test::text_like(1 << 20, i) : random_bytes(1 << 20, 100 + i);
        return content;
    }
    static std::string content_v2() {
        auto content = content_v1();
        content.insert(3 << 20, test::text_like(1000, 1));
        content.replace(20 << 20, 100, std::string(100, 'x'));
        return content + test::text_like(50000, 2);
    }

    static constexpr const char* reinstalled = "lib/firmware/blob.gz";

    // A kernel's changelog (GNU gzip -9, small enough for a write group, too large to compress
    // again on the client: rebuilt from its parse too), and the next kernel's with new entries on
    // top; the old one also under a new name, which stays a copy.
    static constexpr const char* old_changelog = "share/doc/linux-image-6.1.0-50/changelog.gz";
    static constexpr const char* new_changelog = "share/doc/linux-image-6.1.0-56/changelog.gz";
    static constexpr const char* copied_changelog = "share/doc/linux-image-6.1.0-56/changelog.old.gz";
    static std::string changelog_v1() { return test::text_like(200000, 30) + random_bytes(600000, 31) + test::text_like(200000, 32); }
    static std::string changelog_v2() { return test::text_like(20000, 33) + changelog_v1(); }
    // A changelog whose next version is new text: its parse would cost as much as the member
    // again, so it is compressed again on the client ('W' gzip).
    static constexpr const char* rewritten_changelog = "share/doc/git/changelog.gz";

    InitrdWorld() {
        run_btrfs({"subvolume", "create", v1.string()});
        const auto initrd_v1 = test::gnu_gzip(content_v1(), 6);
        write_file(v1 / old_initrd, initrd_v1);
        write_file(v1 / reinstalled, initrd_v1);
        write_file(v1 / old_changelog, test::gnu_gzip(changelog_v1(), 9));
        write_file(v1 / rewritten_changelog, test::gnu_gzip(test::text_like(600000, 40) + random_bytes(500000, 43), 9));
        run_btrfs({"subvolume", "snapshot", v1.string(), v2.string()});
        fs::remove_all(v2 / "lib/modules/6.1.0-50");
        write_file(v2 / new_initrd, test::gnu_gzip(content_v2(), 6));
        // A large gzip file written again as it was (a package reinstalled), after the initrd.
        fs::remove(v2 / reinstalled);
        write_file(v2 / reinstalled, initrd_v1);
        fs::remove_all(v2 / "share/doc/linux-image-6.1.0-50");
        write_file(v2 / new_changelog, test::gnu_gzip(changelog_v2(), 9));
        fs::copy_file(v1 / old_changelog, v2 / copied_changelog);
        fs::remove(v2 / rewritten_changelog);
        write_file(v2 / rewritten_changelog, test::gnu_gzip(test::text_like(600000, 41) + random_bytes(500000, 42), 9));
        REQUIRE(fs::file_size(v2 / rewritten_changelog) > (512u << 10));
        REQUIRE(fs::file_size(v2 / new_initrd) > delta::max_group_bytes);
        REQUIRE(fs::file_size(v2 / new_changelog) > (512u << 10));
        REQUIRE(fs::file_size(v2 / new_changelog) < delta::max_group_bytes);
        run_btrfs({"property", "set", v1.string(), "ro", "true"});
        run_btrfs({"property", "set", v2.string(), "ro", "true"});
        run_btrfs({"send", "-q", "-p", v1.string(), "-f", stream_file.string(), v2.string()});
        stream = read_file(stream_file);
    }
};

TEST_CASE("a gzip file larger than a write group is rebuilt whole from its diffed content") {
    test::require_root_and_btrfs();
    InitrdWorld w;
    Fd fd(::open(w.stream_file.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd);
    std::string body;
    const auto stats = delta::encode_payload(fd.get(), Dir::open(w.v1), [&](std::string_view b) { body += b; });
    CHECK(stats.recompressed_bytes == fs::file_size(w.v2 / InitrdWorld::new_initrd) +
                                          fs::file_size(w.v2 / InitrdWorld::new_changelog) +
                                          fs::file_size(w.v2 / InitrdWorld::rewritten_changelog));
    // not compressed again
    CHECK(stats.copied_bytes ==
          fs::file_size(w.v2 / InitrdWorld::reinstalled) + fs::file_size(w.v2 / InitrdWorld::copied_changelog));
    CHECK(stats.literal_bytes == 0);
    // The initrd content's patches are mostly zeros: compressed, the payload is a small part of
    // the file (beside the rewritten changelog's new content).
    std::string compressed;
    {
        stream::ZstdEncoder zstd(3);
        const stream::Sink sink = [&](std::string_view b) { compressed += b; };
        zstd.feed(body, sink);
        zstd.finish(sink);
    }
    MESSAGE("initrd ", fs::file_size(w.v2 / InitrdWorld::new_initrd), " bytes; payload ", body.size(), " -> zstd ",
            compressed.size());
    CHECK(compressed.size() < (1u << 20) + fs::file_size(w.v2 / InitrdWorld::rewritten_changelog));

    const auto [error, out] = decode(w.v1, body, 1 << 20);
    CHECK(error == "");
    CHECK(out == w.stream);
    const auto rebuilt = w.pool.dir() / "rebuilt.stream";
    write_file(rebuilt, out);
    fs::create_directory(w.pool.mountpoint() / "received");
    run_btrfs({"receive", "-q", "-f", rebuilt.string(), (w.pool.mountpoint() / "received").string()});
    CHECK(read_file(w.pool.mountpoint() / "received/v2" / InitrdWorld::new_initrd) == read_file(w.v2 / InitrdWorld::new_initrd));
    CHECK(read_file(w.pool.mountpoint() / "received/v2" / InitrdWorld::reinstalled) == read_file(w.v2 / InitrdWorld::reinstalled));
    for (const char* changelog : {InitrdWorld::new_changelog, InitrdWorld::copied_changelog, InitrdWorld::rewritten_changelog})
        CHECK(read_file(w.pool.mountpoint() / "received/v2" / changelog) == read_file(w.v2 / changelog));

    struct Record {
        char type;
        std::string body;
    };
    std::vector<Record> records;
    for (size_t at = delta::payload_magic.size(); at < body.size();) {
        uint64_t length = 0;
        for (size_t i = 0; i < 8; ++i) length |= uint64_t{static_cast<unsigned char>(body[at + 1 + i])} << (8 * i);
        records.push_back({body[at], body.substr(at + 9, length)});
        at += 9 + length;
    }
    const auto join = [](const std::vector<Record>& rs) {
        std::string joined(delta::payload_magic);
        for (const auto& r : rs) {
            joined += r.type;
            for (int i = 0; i < 8; ++i) joined += static_cast<char>(r.body.size() >> (8 * i));
            joined += r.body;
        }
        return joined;
    };
    const auto put_u64 = [](std::string& into, size_t at, uint64_t value) {
        for (size_t i = 0; i < 8; ++i) into[at + i] = static_cast<char>(value >> (8 * i));
    };
    // The initrd and the changelog with new entries on top; the copied changelog is a 'W' copy,
    // the rewritten one a 'W' gzip record.
    CHECK(std::count_if(records.begin(), records.end(), [](const Record& r) { return r.type == 'Z'; }) == 2);
    const auto z = static_cast<size_t>(std::find_if(records.begin(), records.end(), [](const Record& r) { return r.type == 'Z'; }) -
                                       records.begin());
    REQUIRE(z + 3 < records.size());
    REQUIRE(records[z + 1].type == 'C');
    REQUIRE(records[z + 2].type == 'C');
    REQUIRE(records[z + 3].type != 'C');
    // A 'Z' file's writes pass on as its pieces are rebuilt: a payload refused inside the file
    // may have passed on some of them (the stream's digest keeps such a tree from being named),
    // never anything after the file.
    const auto through_file =
        decode(w.v1, join(std::vector<Record>(records.begin(), records.begin() + static_cast<ptrdiff_t>(z) + 3)), 1 << 20).second;
    REQUIRE(w.stream.starts_with(through_file));
    REQUIRE(through_file.size() < w.stream.size());

    // Cut inside the gzip file's content (the body is almost all content records): refused.
    // (Not SUBCASEs: each would build and encode again.)
    const auto cut = body.size() / 2;
    REQUIRE(body.find("6.1.0-56/initrd.img") < cut);
    const auto [cut_error, cut_out] = decode(w.v1, std::string_view(body).substr(0, cut), 1 << 20);
    CHECK(cut_error == "decode delta payload: payload ends inside a gzip file's content");
    CHECK(w.stream.starts_with(cut_out));
    CHECK(cut_out.size() < through_file.size());

    // Hostile records around a gzip file: content without its file, another record inside it, a
    // patch against another window, a piece longer than the rest of the content.
    const auto refused = [&](const std::vector<Record>& rs) {
        const auto [hostile_error, hostile_out] = decode(w.v1, join(rs), 1 << 20);
        CHECK(w.stream.starts_with(hostile_out));
        CHECK(hostile_out.size() < through_file.size());
        return hostile_error;
    };
    auto hostile = records;
    std::swap(hostile[z], hostile[z + 1]);
    CHECK(refused(hostile).ends_with(": gzip content without a gzip file record"));
    hostile = records;
    hostile.erase(hostile.begin() + static_cast<ptrdiff_t>(z) + 1, hostile.begin() + static_cast<ptrdiff_t>(z) + 3);
    CHECK(refused(hostile).ends_with(": a gzip file's content ends early"));
    hostile = records;
    REQUIRE(records[z + 1].body[8] == 2);  // both pieces are patches: u64 length, u8 encoding, u64 window offset
    REQUIRE(records[z + 2].body[8] == 2);
    // A patch against another window of the predecessor's content: what it rebuilds does not
    // replay with the piece's parse. (Windows that go back are refused by the windows themselves:
    // tests/unit/gzip_test.cpp, deflate_parse_test.cpp.)
    put_u64(hostile[z + 1].body, 9, 4u << 20);
    CHECK(refused(hostile).ends_with(": rebuild file data from 'lib/modules/6.1.0-50/initrd.img': does not match its digest (a "
                                     "wrong or modified parent)"));
    hostile = records;
    put_u64(hostile[z + 2].body, 0, 30u << 20);  // more than the content left after the first piece
    CHECK(refused(hostile).ends_with(" bytes does not fit its file"));
    hostile = records;
    hostile[z + 1].body[8] = 7;
    CHECK(refused(hostile).ends_with(": unknown gzip content encoding 7"));
    // The parse that follows a piece's content: an unknown encoding, a length over the bound.
    const auto parse_at = [&](const std::string& piece) {
        const auto u64_at = [&](size_t at) {
            uint64_t v = 0;
            for (size_t i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(piece[at + i])} << (8 * i);
            return v;
        };
        REQUIRE(piece[8] == 2);  // u64 length, u8 encoding (bsdiff), u64 window offset and length
        size_t at = 9 + 16;
        uint32_t controls = 0;
        for (size_t i = 0; i < 4; ++i) controls |= uint32_t{static_cast<unsigned char>(piece[at + i])} << (8 * i);
        at += 4;
        uint64_t data = 0;
        for (uint32_t i = 0; i < controls; ++i, at += 24) data += u64_at(at) + u64_at(at + 8);
        return at + data;  // u64 parse length, u8 parse encoding
    };
    hostile = records;
    hostile[z + 1].body[parse_at(hostile[z + 1].body) + 8] = 7;
    CHECK(refused(hostile).ends_with(": unknown gzip parse encoding 7"));
    hostile = records;
    put_u64(hostile[z + 1].body, parse_at(hostile[z + 1].body), (64u << 20) + 1);
    CHECK(refused(hostile).ends_with(": gzip parse piece larger than " + std::to_string(64u << 20) + " bytes"));
    // The file record asking for a deflate to run (level 6) instead of replaying its parse.
    hostile = records;
    {
        // u8 level 0, u8 deflater 0, u16 header length (21: "initrd.img" in it), the header.
        const std::string fields{'\0', '\0', '\x15', '\0', '\x1f', '\x8b', '\x08'};
        const auto at = hostile[z].body.find(fields);
        REQUIRE(at != std::string::npos);
        hostile[z].body[at] = '\x06';
    }
    CHECK(refused(hostile).ends_with(": gzip file record without a parse to replay"));
    // The file record without its predecessor (u16 path length 0), its content still patches.
    hostile = records;
    const std::string predecessor(InitrdWorld::old_initrd);
    REQUIRE(hostile[z].body.ends_with(predecessor));
    hostile[z].body.resize(hostile[z].body.size() - predecessor.size() - 2);
    hostile[z].body += std::string(2, '\0');
    CHECK(refused(hostile).ends_with(": gzip content patch without a source file"));
    // Write commands one byte shorter than the member its content and parse rebuild: refused
    // once the bytes made pass the file's, before its last write passes on.
    hostile = records;
    {
        // u32 count, then per write: u32 prefix length, the prefix, u32 data length.
        const auto u32_at = [&](const std::string& b, size_t at) {
            uint32_t v = 0;
            for (size_t i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(b[at + i])} << (8 * i);
            return v;
        };
        auto& head = hostile[z].body;
        const uint32_t count = u32_at(head, 0);
        size_t at = 4;
        for (uint32_t i = 0; i + 1 < count; ++i) at += 4 + u32_at(head, at) + 4;
        at += 4 + u32_at(head, at);
        const uint32_t shorter = u32_at(head, at) - 1;
        for (size_t i = 0; i < 4; ++i) head[at + i] = static_cast<char>(shorter >> (8 * i));
    }
    CHECK(refused(hostile).ends_with(": rebuild file data from 'lib/modules/6.1.0-50/initrd.img': does not match its digest (a "
                                     "wrong or modified parent)"));
    hostile = records;
    put_u64(hostile[z + 1].body, 9, 5u << 20);  // a 32 MiB window from 5 MiB passes the 36 MiB content's end
    CHECK(refused(hostile).ends_with(": rebuild file data from 'lib/modules/6.1.0-50/initrd.img': has no gzip content at " +
                                     std::to_string(5u << 20) + "+" + std::to_string(32u << 20) +
                                     " (a wrong or modified parent)"));

    // The predecessor changed after receipt, or is no longer gzip.
    const auto modified = w.pool.mountpoint() / "modified";
    run_btrfs({"subvolume", "snapshot", w.v1.string(), modified.string()});
    auto changed = InitrdWorld::content_v1();
    changed[(12 << 20) + 5] ^= 1;
    write_file(modified / InitrdWorld::old_initrd, test::gnu_gzip(changed, 6));
    const auto [bad_error, bad_out] = decode(modified, body, 1 << 20);
    CHECK(bad_error.ends_with(": rebuild file data from 'lib/modules/6.1.0-50/initrd.img': does not match its digest (a "
                              "wrong or modified parent)"));
    CHECK(bad_out.size() < (1u << 20));
    write_file(modified / InitrdWorld::old_initrd, "no longer gzip");
    const auto [gone_error, gone_out] = decode(modified, body, 1 << 20);
    CHECK(gone_error.ends_with(": rebuild file data from 'lib/modules/6.1.0-50/initrd.img': is not a gzip file (a "
                               "wrong or modified parent)"));
    CHECK(gone_out.size() < (1u << 20));
}

TEST_CASE("parent ranges are read ahead into the page cache, and names that lead elsewhere are not read") {
    test::require_root_and_btrfs();
    test::ScratchPool pool{256ull << 20};
    const auto tree = pool.mountpoint() / "tree";
    run_btrfs({"subvolume", "create", tree.string()});
    write_file(tree / "lib/modules/a.ko", random_bytes(4 << 20, 1));
    write_file(tree / "lib/modules/b.ko", random_bytes(4 << 20, 2));
    write_file(pool.mountpoint() / "outside", random_bytes(1 << 20, 3));
    fs::create_symlink("../outside", tree / "lib/link.ko");
    run_checked({"sync"});

    const auto page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    // Drops a file's clean pages from the page cache.
    const auto evict = [](const fs::path& file) {
        Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(fd);
        REQUIRE(posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED) == 0);
    };
    // How many pages of [offset, offset + length) of a file are in the page cache.
    const auto cached = [&](const fs::path& file, uint64_t offset, uint64_t length) {
        Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(fd);
        const auto size = fs::file_size(file);
        void* map = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
        REQUIRE(map != MAP_FAILED);
        std::vector<unsigned char> pages((size + page - 1) / page);
        REQUIRE(mincore(map, size, pages.data()) == 0);
        munmap(map, size);
        uint64_t n = 0;
        for (uint64_t p = offset / page; p < (offset + length + page - 1) / page; ++p) n += pages[p] & 1u;
        return n;
    };
    const auto eventually_cached = [&](const fs::path& file, uint64_t offset, uint64_t length) {
        const uint64_t want = (length + page - 1) / page;
        for (int i = 0; i < 500 && cached(file, offset, length) < want; ++i) usleep(10000);
        return cached(file, offset, length) == want;
    };
    for (const auto* f : {"lib/modules/a.ko", "lib/modules/b.ko"}) evict(tree / f);
    evict(pool.mountpoint() / "outside");
    REQUIRE(cached(tree / "lib/modules/a.ko", 0, 4 << 20) == 0);
    REQUIRE(cached(tree / "lib/modules/b.ko", 0, 4 << 20) == 0);
    REQUIRE(cached(pool.mountpoint() / "outside", 0, 1 << 20) == 0);

    {
        delta::ParentReadahead readahead(Dir::open(tree));
        // Skipped without harm: an escape, a symlink, a missing file, a directory.
        readahead.want(1, "../outside", 0, 0);
        readahead.want(1, "lib/link.ko", 0, 0);
        readahead.want(1, "lib/missing.ko", 0, 0);
        readahead.want(1, "lib", 0, 0);
        readahead.want(2, "lib/modules/a.ko", 0, 0);           // the whole file
        readahead.want(3, "lib/modules/b.ko", 1 << 20, 1 << 20);  // one range
        CHECK(eventually_cached(tree / "lib/modules/a.ko", 0, 4 << 20));
        CHECK(eventually_cached(tree / "lib/modules/b.ko", 1 << 20, 1 << 20));
    }
    CHECK(cached(pool.mountpoint() / "outside", 0, 1 << 20) == 0);

    // Wishes of records the decoder has passed are dropped.
    evict(tree / "lib/modules/b.ko");
    REQUIRE(cached(tree / "lib/modules/b.ko", 0, 4 << 20) == 0);
    {
        delta::ParentReadahead readahead(Dir::open(tree));
        readahead.reached(5);
        readahead.want(4, "lib/modules/b.ko", 0, 0);
        readahead.want(5, "lib/modules/a.ko", 0, 0);
        CHECK(eventually_cached(tree / "lib/modules/a.ko", 0, 4 << 20));
    }
    CHECK(cached(tree / "lib/modules/b.ko", 0, 4 << 20) == 0);
}
