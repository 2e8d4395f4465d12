#include "vendor/zstd.hpp"

#include <zstd.h>

#include <string>

#include "base/chandle.hpp"
#include "base/error.hpp"

namespace strata::vendor {
namespace {

size_t check_zstd(size_t rc, std::string_view operation) {
    if (ZSTD_isError(rc)) throw Error(operation, "zstd", ZSTD_getErrorName(rc), Fault::InvalidInput);
    return rc;
}

}  // namespace

bool looks_like_zstd(std::string_view head) {
    return head.size() >= 4 && static_cast<unsigned char>(head[0]) == 0x28 &&
           static_cast<unsigned char>(head[1]) == 0xb5 && static_cast<unsigned char>(head[2]) == 0x2f &&
           static_cast<unsigned char>(head[3]) == 0xfd;
}

struct ZstdDecoder::State {
    CHandle<ZSTD_DCtx, ZSTD_freeDCtx> ctx{ZSTD_createDCtx()};
    std::string out = std::string(ZSTD_DStreamOutSize(), '\0');
    size_t pending = 0;  // last ZSTD_decompressStream hint: 0 once a frame is complete
};

ZstdDecoder::ZstdDecoder() : state_(std::make_unique<State>()) {
    if (!state_->ctx) throw Error("create", "zstd decoder", "out of memory");
    // The window is the decoder's memory: cap it at 32 MiB (zstd -19 needs 8 MiB) so an untrusted
    // stream cannot make an import use more.
    check_zstd(ZSTD_DCtx_setParameter(state_->ctx.get(), ZSTD_d_windowLogMax, 25), "configure decoder");
}

ZstdDecoder::~ZstdDecoder() = default;

void ZstdDecoder::feed(std::string_view input, const Sink& sink) {
    if (input.empty()) return;
    ZSTD_inBuffer in{input.data(), input.size(), 0};
    for (;;) {
        ZSTD_outBuffer out{state_->out.data(), state_->out.size(), 0};
        state_->pending = check_zstd(ZSTD_decompressStream(state_->ctx.get(), &out, &in), "decompress");
        if (out.pos > 0) sink(std::string_view(state_->out.data(), out.pos));
        // A full output buffer may hide more flushed data; otherwise all input is decoded.
        if (in.pos == in.size && out.pos < out.size) break;
    }
}

void ZstdDecoder::finish() const {
    if (state_->pending != 0) throw Error("decompress", "zstd", "input ends inside a frame", Fault::InvalidInput);
}

struct ZstdEncoder::State {
    CHandle<ZSTD_CCtx, ZSTD_freeCCtx> ctx{ZSTD_createCCtx()};
    std::string out = std::string(ZSTD_CStreamOutSize(), '\0');
};

ZstdEncoder::ZstdEncoder(int level, int window_log, int workers) : state_(std::make_unique<State>()) {
    if (!state_->ctx) throw Error("create", "zstd encoder", "out of memory");
    check_zstd(ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_compressionLevel, level), "configure encoder");
    if (window_log > 0) {
        check_zstd(ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_windowLog, window_log), "configure encoder");
        check_zstd(ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_enableLongDistanceMatching, 1), "configure encoder");
    }
    check_zstd(ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_checksumFlag, 1), "configure encoder");
    // By default one worker thread compresses while the caller's thread reads the input and
    // writes and hashes the output: a 700 MiB publish took 4.6 s instead of 6.7 s on 2 cores
    // (more workers were slower there, competing with `btrfs send` itself).
    check_zstd(ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_nbWorkers, workers), "configure encoder");
}

ZstdEncoder::~ZstdEncoder() = default;

void ZstdEncoder::feed(std::string_view input, const Sink& sink) {
    ZSTD_inBuffer in{input.data(), input.size(), 0};
    while (in.pos < in.size) {
        ZSTD_outBuffer out{state_->out.data(), state_->out.size(), 0};
        check_zstd(ZSTD_compressStream2(state_->ctx.get(), &out, &in, ZSTD_e_continue), "compress");
        if (out.pos > 0) sink(std::string_view(state_->out.data(), out.pos));
    }
}

void ZstdEncoder::finish(const Sink& sink) {
    ZSTD_inBuffer in{nullptr, 0, 0};
    size_t remaining = 0;
    do {
        ZSTD_outBuffer out{state_->out.data(), state_->out.size(), 0};
        remaining = check_zstd(ZSTD_compressStream2(state_->ctx.get(), &out, &in, ZSTD_e_end), "compress");
        if (out.pos > 0) sink(std::string_view(state_->out.data(), out.pos));
    } while (remaining != 0);
}

}  // namespace strata::vendor
