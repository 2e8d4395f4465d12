#pragma once
// zstd framing for streams in and out of the pool, through libzstd's streaming API so memory
// stays bounded by its window, whatever the stream's size.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

namespace strata::stream {

// True when data starts with a zstd frame's magic number.
bool looks_like_zstd(std::string_view head);

// Output is handed to a sink in pieces as it is produced.
using Sink = std::function<void(std::string_view)>;

// What zstd's fastest level makes of some bytes: to tell incompressible input, or to compare a
// patch with the literal it would replace. One context and buffer serve every call (a fresh
// context is set up and zeroed each time otherwise).
class ZstdProbe {
public:
    ZstdProbe();
    ~ZstdProbe();
    // The size of data compressed at level 1 (data.size() if zstd fails).
    size_t compressed_size(std::string_view data);

private:
    struct State;
    std::unique_ptr<State> state_;
};

class ZstdDecoder {
public:
    ZstdDecoder();
    ~ZstdDecoder();
    void feed(std::string_view input, const Sink& sink);
    // Throws when the input ended inside a frame.
    void finish() const;

private:
    struct State;
    std::unique_ptr<State> state_;
};

// How the workers of a multi-threaded encoder share the input: jobs of `bytes` (0: zstd's default,
// four windows), each starting with 2^-(9 - overlap_log) of a window of the input before it as
// history (0: zstd's default, half a window or all of it at the slow levels).
struct ZstdJobs {
    size_t bytes = 0;
    int overlap_log = 0;
};

// Overrides of the level's match finder, 0 keeping the level's own: 2^search_log candidates
// searched per position, matches from min_match bytes. Set parameters stay when the encoder
// drops to level 1 for an incompressible piece (zstd.h: set parameters "stick").
struct ZstdSearch {
    int search_log = 0;
    int min_match = 0;
};

class ZstdEncoder {
public:
    // window_log > 0: a window of 2^window_log bytes with long-distance matching, so content that
    // repeats far apart (the same code in many files of a solid payload) is found. Readers of
    // strata's streams accept windows up to 2^25 bytes (32 MiB). `workers` threads compress.
    explicit ZstdEncoder(int level = 3, int window_log = 0, int workers = 1, ZstdJobs jobs = {}, ZstdSearch search = {});
    ~ZstdEncoder();
    void feed(std::string_view input, const Sink& sink);
    void finish(const Sink& sink);  // ends the frame

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace strata::stream
