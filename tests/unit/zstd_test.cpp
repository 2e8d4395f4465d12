// zstd framing (src/stream/zstd.hpp): what the encoder writes, the decoder gives back byte for
// byte, also when incompressible pieces in the middle of a frame go at a faster level.
#include <doctest/doctest.h>

#include <random>
#include <string>

#include "base/error.hpp"
#include "stream/zstd.hpp"
#include "support/random.hpp"

using namespace strata;
using namespace strata::stream;

namespace {

using test::random_bytes;

std::string text(size_t n) {
    std::string s;
    for (size_t i = 0; s.size() < n; ++i) s += "line " + std::to_string(i % 977) + " of some compressible text\n";
    return s.substr(0, n);
}

std::string decode(const std::string& frame) {
    std::string out;
    ZstdDecoder decoder;
    for (size_t at = 0; at < frame.size(); at += 4096)
        decoder.feed(std::string_view(frame).substr(at, 4096), [&](std::string_view b) { out += b; });
    decoder.finish();
    return out;
}

}  // namespace

TEST_CASE("a slow multi-threaded frame with incompressible pieces round-trips and stays one frame") {
    std::mt19937 rng(5);
    const std::string pieces[] = {text(3 << 20), random_bytes(rng, 2 << 20), text(1 << 20), random_bytes(rng, 100),
                                  random_bytes(rng, 1 << 20), text(4096)};
    std::string input, frame;
    ZstdEncoder encoder(19, 25, 2);
    const Sink sink = [&](std::string_view b) { frame += b; };
    for (const auto& p : pieces) {
        input += p;
        encoder.feed(p, sink);
    }
    encoder.finish(sink);
    CHECK(decode(frame) == input);
    // The random megabytes stay about their size, the text shrinks to almost nothing.
    CHECK(frame.size() < (3u << 20) + 200000);
    CHECK(frame.size() > (3u << 20));
}

TEST_CASE("a frame of small jobs with little history round-trips, also when it ends with a full output buffer") {
    // As publish compresses delta bodies (ZstdJobs): 1 MiB jobs (zstd's smallest) over 6 MiB of
    // text that repeats across them. 6 MiB is 48 of the decoder's 128 KiB output buffers, and the
    // whole frame arrives in one piece: the decoder once asked zstd again after the frame's last
    // byte and reported the frame as cut short.
    const auto input = text(3 << 20) + text(3 << 20);
    std::string frame;
    ZstdEncoder encoder(16, 25, 2, ZstdJobs{1u << 20, 6});
    const Sink sink = [&](std::string_view b) { frame += b; };
    encoder.feed(input, sink);
    encoder.finish(sink);
    CHECK(decode(frame) == input);
    CHECK(frame.size() < input.size() / 4);
}

TEST_CASE("a frame with the delta bodies' shallower search round-trips, also through incompressible pieces") {
    // publish's default: level 16 with 2^3 candidates and 3-byte matches (ZstdSearch), which
    // must stay valid when a random piece drops the encoder to level 1 and back.
    std::mt19937 rng(7);
    const auto input = text(2 << 20) + random_bytes(rng, 1 << 20) + text(1 << 20);
    auto compress = [&](ZstdSearch search) {
        std::string frame;
        ZstdEncoder encoder(16, 25, 2, ZstdJobs{1u << 20, 6}, search);
        const Sink sink = [&](std::string_view b) { frame += b; };
        encoder.feed(input, sink);
        encoder.finish(sink);
        return frame;
    };
    const auto tuned = compress(ZstdSearch{3, 3});
    CHECK(decode(tuned) == input);
    CHECK(tuned != compress({}));  // the override reached the encoder
    CHECK(tuned.size() < (1u << 20) + 100000);
}

TEST_CASE("a frame cut short is refused") {
    ZstdEncoder encoder;
    std::string frame;
    const Sink sink = [&](std::string_view b) { frame += b; };
    encoder.feed(text(100000), sink);
    encoder.finish(sink);
    ZstdDecoder decoder;
    decoder.feed(std::string_view(frame).substr(0, frame.size() / 2), [](std::string_view) {});
    CHECK_THROWS_AS(decoder.finish(), Error);
}
