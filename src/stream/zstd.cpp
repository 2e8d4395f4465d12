#include "stream/zstd.hpp"

#include <zstd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/shared_library.hpp"

namespace strata::stream {
namespace {

// libzstd, opened on first use (base/shared_library.hpp): deploy, status and most commands never
// compress, and mapping it cost each of them ~1 ms of a cold start.
struct LibZstd {
    SharedLibrary library{"libzstd.so.1"};
    STRATA_IMPORT(library, ZSTD_isError);
    STRATA_IMPORT(library, ZSTD_getErrorName);
    STRATA_IMPORT(library, ZSTD_createDCtx);
    STRATA_IMPORT(library, ZSTD_freeDCtx);
    STRATA_IMPORT(library, ZSTD_DCtx_setParameter);
    STRATA_IMPORT(library, ZSTD_DStreamOutSize);
    STRATA_IMPORT(library, ZSTD_decompressStream);
    STRATA_IMPORT(library, ZSTD_createCCtx);
    STRATA_IMPORT(library, ZSTD_freeCCtx);
    STRATA_IMPORT(library, ZSTD_CCtx_setParameter);
    STRATA_IMPORT(library, ZSTD_CStreamOutSize);
    STRATA_IMPORT(library, ZSTD_compressStream2);
    STRATA_IMPORT(library, ZSTD_compressBound);
    STRATA_IMPORT(library, ZSTD_compressCCtx);
};

const LibZstd& zstd() {
    static const LibZstd api;
    return api;
}

struct FreeContext {
    void operator()(ZSTD_DCtx* ctx) const noexcept { zstd().ZSTD_freeDCtx(ctx); }
    void operator()(ZSTD_CCtx* ctx) const noexcept { zstd().ZSTD_freeCCtx(ctx); }
};
using DecoderContext = std::unique_ptr<ZSTD_DCtx, FreeContext>;
using EncoderContext = std::unique_ptr<ZSTD_CCtx, FreeContext>;

EncoderContext new_encoder_context() {
    EncoderContext ctx{zstd().ZSTD_createCCtx()};
    if (!ctx) throw Error("create", "zstd encoder", "out of memory");
    return ctx;
}

size_t check_zstd(size_t rc, std::string_view operation) {
    if (zstd().ZSTD_isError(rc)) throw Error(operation, "zstd", zstd().ZSTD_getErrorName(rc), Fault::InvalidInput);
    return rc;
}

}  // namespace

struct ZstdProbe::State {
    EncoderContext ctx = new_encoder_context();
    std::vector<char> out;
};

ZstdProbe::ZstdProbe() : state_(std::make_unique<State>()) {}
ZstdProbe::~ZstdProbe() = default;

size_t ZstdProbe::compressed_size(std::string_view data) {
    if (data.empty()) return 0;
    auto& out = state_->out;
    out.resize(std::max(out.size(), zstd().ZSTD_compressBound(data.size())));
    const size_t n = zstd().ZSTD_compressCCtx(state_->ctx.get(), out.data(), out.size(), data.data(), data.size(), 1);
    return zstd().ZSTD_isError(n) ? data.size() : n;
}

bool looks_like_zstd(std::string_view head) {
    return head.size() >= 4 && static_cast<unsigned char>(head[0]) == 0x28 &&
           static_cast<unsigned char>(head[1]) == 0xb5 && static_cast<unsigned char>(head[2]) == 0x2f &&
           static_cast<unsigned char>(head[3]) == 0xfd;
}

struct ZstdDecoder::State {
    DecoderContext ctx{zstd().ZSTD_createDCtx()};
    std::string out = std::string(zstd().ZSTD_DStreamOutSize(), '\0');
    size_t pending = 0;  // last ZSTD_decompressStream hint: 0 once a frame is complete
};

ZstdDecoder::ZstdDecoder() : state_(std::make_unique<State>()) {
    if (!state_->ctx) throw Error("create", "zstd decoder", "out of memory");
    // The window is the decoder's memory: cap it at 32 MiB (zstd -19 needs 8 MiB) so an untrusted
    // stream cannot make an import use more.
    check_zstd(zstd().ZSTD_DCtx_setParameter(state_->ctx.get(), ZSTD_d_windowLogMax, 25), "configure decoder");
}

ZstdDecoder::~ZstdDecoder() = default;

void ZstdDecoder::feed(std::string_view input, const Sink& sink) {
    if (input.empty()) return;
    ZSTD_inBuffer in{input.data(), input.size(), 0};
    for (;;) {
        ZSTD_outBuffer out{state_->out.data(), state_->out.size(), 0};
        state_->pending = check_zstd(zstd().ZSTD_decompressStream(state_->ctx.get(), &out, &in), "decompress");
        if (out.pos > 0) sink(std::string_view(state_->out.data(), out.pos));
        // A full output buffer may hide more flushed data; otherwise all input is decoded. A frame
        // that ends exactly with a full buffer is done too (0): another call would start reading
        // the next frame's header and leave a hint that finish() takes for a frame cut short.
        if (in.pos == in.size && (out.pos < out.size || state_->pending == 0)) break;
    }
}

void ZstdDecoder::finish() const {
    if (state_->pending != 0) throw Error("decompress", "zstd", "input ends inside a frame", Fault::InvalidInput);
}

namespace {

// Input that does not compress (kernels, initrds, images, archives: already compressed) costs a
// slow level the same time for nothing: level 19 ran at 2.8 MB/s on random bytes here, level 1
// at hundreds. With a slow level (from slow_level up: the lazy2 and optimal parsers), pieces of
// at least incompressible_min bytes that level 1 cannot shrink by 3 % are compressed at level 1.
// zstd takes a new level in the middle of a frame when it runs worker threads, for the job after
// a flush (zstd.h, ZSTD_CCtx_setParameter). At fast levels the trial would cost more than it saves.
constexpr size_t incompressible_min = 1u << 20;
constexpr int fast_level = 1;
constexpr int slow_level = 10;

}  // namespace

struct ZstdEncoder::State {
    EncoderContext ctx = new_encoder_context();
    std::string out = std::string(zstd().ZSTD_CStreamOutSize(), '\0');
    int level = 0;
    int workers = 0;
    std::optional<ZstdProbe> trial;  // made for the first piece large enough to try

    bool incompressible(std::string_view data) {
        if (!trial) trial.emplace();
        return trial->compressed_size(data) * 100 >= data.size() * 97;
    }

    void compress(ZSTD_inBuffer& in, ZSTD_EndDirective mode, const Sink& sink) {
        size_t remaining = 0;
        do {
            ZSTD_outBuffer o{out.data(), out.size(), 0};
            remaining = check_zstd(zstd().ZSTD_compressStream2(ctx.get(), &o, &in, mode), "compress");
            if (o.pos > 0) sink(std::string_view(out.data(), o.pos));
        } while (in.pos < in.size || (mode != ZSTD_e_continue && remaining != 0));
    }
    void set_level(int l) { check_zstd(zstd().ZSTD_CCtx_setParameter(ctx.get(), ZSTD_c_compressionLevel, l), "configure encoder"); }
};

ZstdEncoder::ZstdEncoder(int level, int window_log, int workers, ZstdJobs jobs, ZstdSearch search) : state_(std::make_unique<State>()) {
    state_->level = level;
    state_->workers = workers;
    check_zstd(zstd().ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_compressionLevel, level), "configure encoder");
    if (window_log > 0) {
        check_zstd(zstd().ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_windowLog, window_log), "configure encoder");
        check_zstd(zstd().ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_enableLongDistanceMatching, 1), "configure encoder");
    }
    check_zstd(zstd().ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_checksumFlag, 1), "configure encoder");
    // By default one worker thread compresses while the caller's thread reads the input and
    // writes and hashes the output: a 700 MiB publish took 4.6 s instead of 6.7 s on 2 cores
    // (more workers were slower there, competing with `btrfs send` itself).
    check_zstd(zstd().ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_nbWorkers, workers), "configure encoder");
    if (jobs.bytes > 0)
        check_zstd(zstd().ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_jobSize, static_cast<int>(jobs.bytes)), "configure encoder");
    if (jobs.overlap_log > 0)
        check_zstd(zstd().ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_overlapLog, jobs.overlap_log), "configure encoder");
    if (search.search_log > 0)
        check_zstd(zstd().ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_searchLog, search.search_log), "configure encoder");
    if (search.min_match > 0)
        check_zstd(zstd().ZSTD_CCtx_setParameter(state_->ctx.get(), ZSTD_c_minMatch, search.min_match), "configure encoder");
}

ZstdEncoder::~ZstdEncoder() = default;

void ZstdEncoder::feed(std::string_view input, const Sink& sink) {
    auto& st = *state_;
    ZSTD_inBuffer in{input.data(), input.size(), 0};
    if (st.workers > 0 && st.level >= slow_level && input.size() >= incompressible_min && st.incompressible(input)) {
        ZSTD_inBuffer none{nullptr, 0, 0};
        st.compress(none, ZSTD_e_flush, sink);
        st.set_level(fast_level);
        st.compress(in, ZSTD_e_flush, sink);
        st.set_level(st.level);
        return;
    }
    if (in.size > 0) st.compress(in, ZSTD_e_continue, sink);
}

void ZstdEncoder::finish(const Sink& sink) {
    ZSTD_inBuffer in{nullptr, 0, 0};
    state_->compress(in, ZSTD_e_end, sink);
}

}  // namespace strata::stream
