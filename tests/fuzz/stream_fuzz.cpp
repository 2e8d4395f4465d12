// libFuzzer target for the send-stream validator (scripts/fuzz-stream, docs/send-stream.md).
// Every input must end in a summary or a strata::Error; a crash, a sanitizer report, any other
// exception or a hang is a bug. The same input fed whole and in pieces must give the same
// outcome, since callers feed whatever pieces a pipe or a download delivers.
//
// Built two ways:
//   - by scripts/fuzz-stream with clang -fsanitize=fuzzer: libFuzzer supplies main() and the
//     custom mutator below repairs CRCs, so mutations reach the checks behind the CRC;
//   - with STRATA_FUZZ_REPLAY (ctest fuzz_stream_corpus): a plain main() runs every file given,
//     or every file in a directory given, once.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "stream/crc32c.hpp"
#include "stream/send_stream.hpp"

namespace {

using strata::stream::StreamValidator;

// The summary's defining fields, or the error message: what must not depend on the split.
std::string outcome(std::span<const std::byte> input, size_t piece_size) {
    StreamValidator validator;
    try {
        for (size_t pos = 0; pos < input.size(); pos += piece_size) {
            validator.feed(input.subspan(pos, std::min(piece_size, input.size() - pos)));
        }
        const auto summary = validator.finish();
        return "ok " + std::to_string(summary.command_count) + " " + std::to_string(summary.total_bytes) + " " +
               strata::stream::format_uuid(summary.subvolume.uuid);
    } catch (const strata::Error& e) {
        return std::string("error ") + e.what();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto input = std::as_bytes(std::span(data, size));
    const std::string whole = outcome(input, std::max<size_t>(size, 1));
    // A piece size taken from the input, so that the fuzzer explores splits inside headers.
    const size_t piece_size = size == 0 ? 1 : 1 + data[size - 1] % 64;
    if (outcome(input, piece_size) != whole) std::abort();
    return 0;
}

#ifndef STRATA_FUZZ_REPLAY

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

uint32_t load_le32(const uint8_t* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// Rewrites the CRC of every complete command, as a sender would have computed it.
void repair_crcs(uint8_t* data, size_t size) {
    constexpr size_t stream_header = 17;
    constexpr size_t command_header = 10;
    for (size_t pos = stream_header; pos + command_header <= size;) {
        const size_t length = load_le32(data + pos);
        if (length > size - pos - command_header) return;
        for (size_t i = 6; i < command_header; ++i) data[pos + i] = 0;
        const auto command = std::as_bytes(std::span(data + pos, command_header + length));
        const uint32_t crc = strata::stream::crc32c_update(0, command);
        for (size_t i = 0; i < 4; ++i) data[pos + 6 + i] = static_cast<uint8_t>(crc >> (8 * i));
        pos += command_header + length;
    }
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
    size = LLVMFuzzerMutate(data, size, max_size);
    // Leave one input in eight with the CRCs the mutation broke, to keep the CRC check covered.
    if (seed % 8 != 0 && size >= 17) repair_crcs(data, size);
    return size;
}

#else  // STRATA_FUZZ_REPLAY

namespace {

void run_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
    size_t runs = 0;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::filesystem::path arg = argv[i];
            if (!std::filesystem::is_directory(arg)) {
                run_file(arg);
                ++runs;
                continue;
            }
            for (const auto& entry : std::filesystem::directory_iterator(arg)) {
                if (!entry.is_regular_file()) continue;
                run_file(entry.path());
                ++runs;
            }
        }
    } catch (const std::exception& e) {
        std::cerr << "stream_fuzz_replay: " << e.what() << "\n";
        return 1;
    }
    // An empty or missing corpus would make this test pass while testing nothing.
    if (runs == 0) {
        std::cerr << "stream_fuzz_replay: no inputs\n";
        return 1;
    }
    std::cout << "stream_fuzz_replay: " << runs << " inputs, no failures\n";
    return 0;
}

#endif  // STRATA_FUZZ_REPLAY
