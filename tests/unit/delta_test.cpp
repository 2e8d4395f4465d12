// Binary diffs (src/delta/bsdiff.hpp): every patch round-trips, similar code diffs into mostly
// zeros, and a hostile patch is refused before it makes more than it announced. Predecessors
// (src/delta/predecessors.hpp): which parent file a changed file is diffed against.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "delta/bsdiff.hpp"
#include "delta/payload.hpp"
#include "delta/predecessors.hpp"
#include "support/errors.hpp"
#include "support/random.hpp"
#include "support/scratch_pool.hpp"

using namespace strata;
using namespace strata::delta;

namespace {

using test::random_bytes;

// A mutation of s: some bytes changed, some stretches inserted, removed or moved.
std::string mutate(std::mt19937& rng, std::string s) {
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
        const size_t at = s.empty() ? 0 : rng() % s.size();
        switch (rng() % 4) {
        case 0:
            if (!s.empty()) s[at] = static_cast<char>(rng() & 0xff);
            break;
        case 1: s.insert(at, random_bytes(rng, rng() % 64)); break;
        case 2: s.erase(at, rng() % 64); break;
        case 3: {
            const std::string piece = s.substr(at, rng() % 256);
            s.erase(at, piece.size());
            s.insert(s.empty() ? 0 : rng() % s.size(), piece);
            break;
        }
        }
    }
    return s;
}

void check_round_trip(const std::string& source, const std::string& target) {
    const Patch p = make_patch(source, target);
    CHECK(p.target_size == target.size());
    CHECK(apply_patch(source, p) == target);
}

}  // namespace

TEST_CASE("binary patches round-trip, also at the edges") {
    check_round_trip("", "");
    check_round_trip("", "all new");
    check_round_trip("all gone", "");
    check_round_trip("same bytes", "same bytes");
    check_round_trip("the quick brown fox", "the quick red fox jumps");
    check_round_trip(std::string(10000, 'a'), std::string(10001, 'a'));
    std::mt19937 rng(42);
    for (int i = 0; i < 200; ++i) {
        CAPTURE(i);
        const auto source = random_bytes(rng, rng() % 4096);
        check_round_trip(source, mutate(rng, source));
    }
}

TEST_CASE("code that moved diffs into mostly zeros, and patches are deterministic") {
    // "Machine code": 28 bytes of instructions and a 4-byte address per record; the new version
    // inserts 100 bytes at the start, so every record moves and its address grows by 100.
    std::mt19937 rng(7);
    std::string source, target = random_bytes(rng, 100);
    for (uint32_t i = 0; i < 5000; ++i) {
        const std::string opcode = random_bytes(rng, 28);
        const uint32_t address = 1000 + 32 * i;
        source += opcode;
        target += opcode;
        for (int b = 0; b < 4; ++b) {
            source += static_cast<char>((address >> (8 * b)) & 0xff);
            target += static_cast<char>(((address + 100) >> (8 * b)) & 0xff);
        }
    }
    const Patch p = make_patch(source, target);
    CHECK(apply_patch(source, p) == target);
    CHECK(p.extra.size() < 1000);  // the 100 inserted bytes and little else
    const auto zeros = std::count(p.diff.begin(), p.diff.end(), '\0');
    CHECK(static_cast<double>(zeros) > 0.8 * static_cast<double>(p.diff.size()));
    CHECK(make_patch(source, target) == p);
}

TEST_CASE("a file with one small stretch changed patches as prefix, stretch and suffix") {
    std::mt19937 rng(9);
    const auto source = random_bytes(rng, 1 << 20);
    const std::string appended = source + "v2\n";
    Patch p = make_patch(source, appended);
    CHECK(apply_patch(source, p) == appended);
    CHECK(p.extra == "v2\n");
    CHECK(p.controls.size() == 1);
    CHECK(std::count(p.diff.begin(), p.diff.end(), '\0') == static_cast<long>(p.diff.size()));

    std::string edited = source;
    edited.replace(500000, 10, "a different and longer stretch");
    p = make_patch(source, edited);
    CHECK(apply_patch(source, p) == edited);
    CHECK(p.extra == "a different and longer stretch");
    CHECK(p.controls.size() == 2);
    CHECK(edit_in_place(source, edited) == p);

    // More than a 16th of the target, or 64 KiB, changed: left to make_patch's search.
    CHECK_FALSE(edit_in_place(source.substr(0, 1000), source.substr(0, 900) + random_bytes(rng, 100)).has_value());
    std::string rewritten = source;
    rewritten.replace(100000, 65 << 10, random_bytes(rng, 65 << 10));
    CHECK_FALSE(edit_in_place(source, rewritten).has_value());
    CHECK(apply_patch(source, make_patch(source, rewritten)) == rewritten);
}

TEST_CASE("shared_stretches takes the stretches target shares with the source, wherever they are") {
    std::mt19937 rng(10);
    const auto a = random_bytes(rng, 300000), b = random_bytes(rng, 200000);
    const auto source = a + random_bytes(rng, 1 << 20) + b + random_bytes(rng, 5000);
    // A new 12-byte header (a compressed file's time and name), then a as it was, new bytes, and
    // b further on than before.
    const auto header = random_bytes(rng, 12), fresh = random_bytes(rng, 2 << 20), tail = random_bytes(rng, 777);
    const auto target = header + a + fresh + b + tail;
    Patch p = shared_stretches(source, target);
    CHECK(apply_patch(source, p) == target);
    // (A stretch may grow by a byte or two that happen to match.)
    CHECK(p.diff.size() >= a.size() + b.size());
    CHECK(p.diff.size() <= a.size() + b.size() + 8);
    CHECK(std::count(p.diff.begin(), p.diff.end(), '\0') == static_cast<long>(p.diff.size()));
    CHECK(p.extra.size() == target.size() - p.diff.size());
    CHECK(p.controls.size() == 3);
    // Nothing shared: all of it literal, in one control; the identical data: all of it taken.
    const auto unrelated = random_bytes(rng, 100000);
    p = shared_stretches(source, unrelated);
    CHECK(apply_patch(source, p) == unrelated);
    CHECK(p.diff.empty());
    CHECK(p.controls.size() == 1);
    p = shared_stretches(source, source);
    CHECK(apply_patch(source, p) == source);
    CHECK(p.extra.size() < 64);  // at most the bytes before the first picked window
    CHECK(apply_patch(source, shared_stretches(source, "")).empty());
    CHECK(apply_patch("", shared_stretches("", target)) == target);
}

TEST_CASE("shared content: unrelated random bytes share nothing, versions of a file most of it") {
    std::mt19937 rng(3);
    const auto source = random_bytes(rng, 1 << 20);
    CHECK(shared_content(source, random_bytes(rng, 1 << 20)) < 0.01);
    CHECK(shared_content(source, source) == 1.0);
    CHECK(shared_content(source, mutate(rng, source)) > 0.9);
    // Shifted by a few bytes: the windows are picked by content, not by position.
    CHECK(shared_content(source, "abc" + source.substr(0, source.size() - 100)) > 0.9);
    CHECK(shared_content(source, "") == 1.0);  // nothing to find: no evidence against a patch
    CHECK(shared_content("", source) == 0.0);
}

TEST_CASE("a hostile or damaged patch is refused with the reason") {
    const std::string source = "0123456789abcdefghij", target = "0123456789ABCDEFGHIJ tail";
    const Patch good = make_patch(source, target);
    REQUIRE(apply_patch(source, good) == target);
    const auto refused = [&](Patch p) { return test::error_of([&] { apply_patch(source, p); }); };

    Patch p = good;
    p.target_size += 1;
    CHECK(refused(p) == "apply binary patch: the patch makes fewer bytes than its target size");
    p = good;
    p.target_size -= 1;
    CHECK(refused(p) == "apply binary patch: the patch makes more than its target size");
    p = good;
    p.diff.pop_back();
    CHECK(refused(p) == "apply binary patch: the patch's blocks are shorter than its controls say");
    p = good;
    p.extra += "x";
    CHECK(refused(p) == "apply binary patch: the patch has bytes no control uses");
    // Reading before the start or past the end of the source.
    p = Patch{4, {{4, 0, 0}}, std::string(4, '\0'), ""};
    CHECK(apply_patch("abcd", p) == "abcd");
    CHECK(test::error_of([&] { apply_patch("abc", p); }) == "apply binary patch: the patch reads outside its source");
    p = Patch{8, {{0, 0, -1}, {8, 0, 0}}, std::string(8, '\0'), ""};
    CHECK(test::error_of([&] { apply_patch(std::string(20, 'x'), p); }) ==
          "apply binary patch: the patch reads outside its source");
    p = Patch{1, {{0, 0, INT64_MAX}, {0, 0, INT64_MAX}, {1, 0, 0}}, std::string(1, '\0'), ""};
    CHECK(test::error_of([&] { apply_patch("x", p); }) == "apply binary patch: the patch seeks out of range");
    p = Patch{uint64_t{1} << 50, {}, "", ""};
    CHECK(test::error_of([&] { apply_patch("x", p); }) == "apply binary patch: the target size is implausible");
}

// ---- Predecessors (src/delta/predecessors.hpp) ---------------------------------------------

TEST_CASE("digit runs read as one token") {
    CHECK(digits_as_tokens("lib/modules/6.1.0-56/kernel/e1000.ko") == "lib/modules/#.#.#-#/kernel/e#.ko");
    CHECK(digits_as_tokens("") == "");
    CHECK(digits_as_tokens("123") == "#");
    CHECK(digits_as_tokens("libfoo.so.1.2.10") == "libfoo.so.#.#.#");
}

TEST_CASE("a changed file's predecessor: same path, then version tokens, then the file name") {
    const auto parent = ParentFiles::from_list({
        {"usr/bin/tool", 10},
        {"lib/modules/6.1.0-50/kernel/net/e1000.ko", 20},
        {"lib/modules/6.1.0-50/kernel/sound/e1000.ko", 21},
        {"lib/libcurl.so.4.8.0", 30},
        {"share/doc/a/README", 40},
        {"share/doc/b/README", 41},
        {"lib/x86_64/libssl.so.3", 50},
    });
    CHECK(parent.count() == 7);
    CHECK(parent.predecessor("usr/bin/tool") == "usr/bin/tool");
    // The kernel moved from -50 to -56: same place under the old version, not the other e1000.ko.
    CHECK(parent.predecessor("lib/modules/6.1.0-56/kernel/net/e1000.ko") == "lib/modules/6.1.0-50/kernel/net/e1000.ko");
    CHECK(parent.predecessor("lib/modules/6.1.0-56/kernel/sound/e1000.ko") == "lib/modules/6.1.0-50/kernel/sound/e1000.ko");
    CHECK(parent.predecessor("lib/libcurl.so.4.8.1") == "lib/libcurl.so.4.8.0");
    // Moved to another directory: the file name finds it; of two equal ones the closest, then the first.
    CHECK(parent.predecessor("opt/tool") == "usr/bin/tool");
    CHECK(parent.predecessor("share/doc/b2/README") == "share/doc/a/README");
    CHECK(parent.predecessor("share/doc/b/x/README") == "share/doc/b/README");
    CHECK(parent.predecessor("lib/aarch64/libssl.so.4") == "lib/x86_64/libssl.so.3");
    CHECK_FALSE(parent.predecessor("etc/new.conf").has_value());
    CHECK(parent.of_size(40) == std::vector<std::string>{"share/doc/a/README"});
    CHECK(parent.of_size(99).empty());
    CHECK(parent.size_of("lib/libcurl.so.4.8.0") == 30);
    CHECK_FALSE(parent.size_of("nope").has_value());
}

TEST_CASE("a payload that would keep more than 64 MiB for later groups is refused before that group passes on") {
    // Hand-made: the encoder never keeps that much. Three literal groups of 32 MiB, each kept.
    const auto le = [](uint64_t value, size_t width) {
        std::string out;
        for (size_t i = 0; i < width; ++i) out += static_cast<char>(value >> (8 * i) & 0xff);
        return out;
    };
    std::string body(payload_magic);
    const auto record = [&](char type, const std::string& content) { body += type + le(content.size(), 8) + content; };
    const std::string prefix = "a write's attributes", data(max_group_bytes, 'k');
    for (char n : {'a', 'b', 'c'}) {
        std::string group = le(1, 4) + le(prefix.size(), 4) + prefix + le(data.size(), 4);
        group += static_cast<char>(0x80);  // literal, kept
        group += std::string(63, '0') + n;  // the digest it is kept under
        record('W', group + data);
    }
    record('E', "");
    test::TempDir parent;
    uint64_t passed = 0;
    PayloadDecoder decoder(Dir::open(parent.path()), [&](std::string_view piece) { passed += piece.size(); }, 0);
    const auto error = test::error_of([&] {
        decoder.feed(body);
        decoder.finish();
    });
    CHECK(error == "decode delta payload: record 3: more data kept than 67108864 bytes");
    // The two groups before it, each one write command: header, prefix, data.
    CHECK(passed == 2 * (10 + prefix.size() + data.size()));
}
