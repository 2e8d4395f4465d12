#include "delta/gzip.hpp"

#include <sys/mman.h>
#include <sys/socket.h>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <functional>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/process.hpp"
#include "stream/protocol.hpp"

namespace strata::delta {
namespace {

// RFC 1952: ID1 ID2 CM FLG MTIME(4) XFL OS, then the optional fields FLG names.
constexpr size_t fixed_header = 10, trailer_size = 8;
constexpr uint8_t flag_hcrc = 2, flag_extra = 4, flag_name = 8, flag_comment = 16, flags_reserved = 0xe0;
constexpr size_t chunk = 64u << 10;
// Content goes to a deflate in pieces of this size; an attempt to reproduce a member is checked
// after each, so a deflate that does not reproduce it costs about one piece.
constexpr size_t feed_piece = 1u << 20;

uint32_t load_le32(std::string_view s) {
    return stream::load_le32({reinterpret_cast<const std::byte*>(s.data()), s.size()}, 0);
}

void put_le32(std::string& out, uint32_t v) {
    for (int i = 0; i < 4; ++i) out += static_cast<char>(v >> (8 * i));
}

// The length of the gzip header data starts with (deflate method, no reserved flags).
std::optional<size_t> header_length(std::string_view data) {
    if (data.size() < fixed_header || static_cast<uint8_t>(data[0]) != 0x1f || static_cast<uint8_t>(data[1]) != 0x8b ||
        data[2] != Z_DEFLATED)
        return std::nullopt;
    const auto flags = static_cast<uint8_t>(data[3]);
    if (flags & flags_reserved) return std::nullopt;
    size_t pos = fixed_header;
    if (flags & flag_extra) {
        if (data.size() < pos + 2) return std::nullopt;
        pos += 2 + (static_cast<uint8_t>(data[pos]) | static_cast<size_t>(static_cast<uint8_t>(data[pos + 1])) << 8);
    }
    for (const uint8_t field : {flag_name, flag_comment})
        if (flags & field) {
            const auto end = pos < data.size() ? data.find('\0', pos) : std::string_view::npos;
            if (end == std::string_view::npos) return std::nullopt;
            pos = end + 1;
        }
    if (flags & flag_hcrc) pos += 2;
    if (pos > data.size()) return std::nullopt;
    return pos;
}

uint32_t crc_update(uint32_t crc, std::string_view content) {
    for (size_t at = 0; at < content.size(); at += chunk) {
        const auto part = content.substr(at, chunk);
        crc = static_cast<uint32_t>(crc32(crc, reinterpret_cast<const Bytef*>(part.data()), static_cast<uInt>(part.size())));
    }
    return crc;
}

// A raw (headerless) zlib stream, inflating or deflating. On the heap: zlib's state points back
// at its z_stream, which therefore must not move.
class ZStream {
public:
    static ZStream inflater() {
        ZStream z(false);
        if (inflateInit2(z.get(), -MAX_WBITS) != Z_OK) throw Error("inflate", "", "zlib could not start", Fault::Failed);
        z.started_ = true;
        return z;
    }
    static ZStream deflater(int level, int mem_level) {
        ZStream z(true);
        if (deflateInit2(z.get(), level, Z_DEFLATED, -MAX_WBITS, mem_level, Z_DEFAULT_STRATEGY) != Z_OK)
            throw Error("deflate", "", "zlib could not start", Fault::Failed);
        z.started_ = true;
        return z;
    }
    ZStream(ZStream&& other) noexcept
        : z_(std::move(other.z_)), deflate_(other.deflate_), started_(std::exchange(other.started_, false)) {}
    ZStream& operator=(ZStream&&) = delete;
    ~ZStream() {
        if (!started_) return;
        if (deflate_) deflateEnd(z_.get());
        else inflateEnd(z_.get());
    }
    z_stream* get() { return z_.get(); }
    z_stream* operator->() { return z_.get(); }

private:
    explicit ZStream(bool deflate) : z_(std::make_unique<z_stream>()), deflate_(deflate) {}
    std::unique_ptr<z_stream> z_;
    bool deflate_;
    bool started_ = false;
};

void set_input(z_stream* z, std::string_view in) {
    z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z->avail_in = static_cast<uInt>(in.size());
}

// Deflate data as a deflate makes it, passed on in pieces; a receiver that returns false stops
// the deflate (an attempt that no longer matches).
using DeflateOut = std::function<bool(std::string_view)>;

class Deflater {
public:
    virtual ~Deflater() = default;
    virtual bool feed(std::string_view content, const DeflateOut& out) = 0;
    virtual bool finish(const DeflateOut& out) = 0;
};

class ZlibDeflater final : public Deflater {
public:
    ZlibDeflater(int level, int mem_level) : z_(ZStream::deflater(level, mem_level)) {}
    bool feed(std::string_view content, const DeflateOut& out) override {
        for (size_t at = 0; at < content.size(); at += chunk) {
            set_input(z_.get(), content.substr(at, chunk));
            if (!run(Z_NO_FLUSH, out)) return false;
        }
        return true;
    }
    bool finish(const DeflateOut& out) override { return run(Z_FINISH, out); }

private:
    bool run(int flush, const DeflateOut& out) {
        while (true) {
            z_->next_out = reinterpret_cast<Bytef*>(buffer_.data());
            z_->avail_out = static_cast<uInt>(buffer_.size());
            const int rc = deflate(z_.get(), flush);
            if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) throw Error("deflate", "", "zlib failed", Fault::Failed);
            const std::string_view produced(buffer_.data(), buffer_.size() - z_->avail_out);
            if (!produced.empty() && !out(produced)) return false;
            if (rc == Z_STREAM_END) return true;
            if (flush == Z_NO_FLUSH && z_->avail_in == 0 && z_->avail_out != 0) return true;
        }
    }
    ZStream z_;
    std::array<char, chunk> buffer_{};
};

// GNU gzip's deflate, run as `gzip -c -n -LEVEL`: content into a socket (a gzip that died is
// EPIPE, not SIGPIPE), its output into an anonymous file that never blocks it, read back as it
// grows. gzip writes a header of its own (10 bytes under -n, from a pipe) and a trailer; only
// the deflate data between them is passed on.
class GnuGzipDeflater final : public Deflater {
public:
    explicit GnuGzipDeflater(int level) {
        output_ = Fd(::memfd_create("strata-gzip", MFD_CLOEXEC));
        if (!output_) throw_errno("create output file for", "gzip");
        int sockets[2];
        check_errno(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), "create socket pair for", "gzip");
        input_ = Fd(sockets[0]);
        Fd theirs(sockets[1]);
        child_.emplace(ChildProcess::spawn({"gzip", "-c", "-n", "-" + std::to_string(level)}, theirs.get(), output_.get()));
    }
    bool feed(std::string_view content, const DeflateOut& out) override {
        while (!content.empty()) {
            const ssize_t sent = ::send(input_.get(), content.data(), content.size(), MSG_NOSIGNAL);
            if (sent < 0 && errno == EINTR) continue;
            if (sent < 0 && errno == EPIPE) {
                input_ = Fd();
                child_->wait_checked();
                throw Error("run", "gzip", "stopped reading its input", Fault::Failed);
            }
            if (sent < 0) throw_errno("write to", "gzip");
            content.remove_prefix(static_cast<size_t>(sent));
        }
        return pass_output(out, false);
    }
    bool finish(const DeflateOut& out) override {
        input_ = Fd();  // end of input
        child_->wait_checked();
        return pass_output(out, true);
    }

private:
    // The output gzip has written since the last call, without its header and (at the end) its
    // trailer.
    bool pass_output(const DeflateOut& out, bool ended) {
        std::string piece;
        std::array<char, chunk> buffer;
        while (true) {
            const ssize_t n = ::pread(output_.get(), buffer.data(), buffer.size(), static_cast<off_t>(read_));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw_errno("read output of", "gzip");
            if (n == 0) break;
            piece.append(buffer.data(), static_cast<size_t>(n));
            read_ += static_cast<uint64_t>(n);
        }
        if (!header_skipped_) {
            const size_t need = fixed_header - header_.size();
            header_ += piece.substr(0, need);
            piece.erase(0, std::min(need, piece.size()));
            if (header_.size() < fixed_header && !ended) return true;
            if (header_length(header_) != fixed_header)
                throw Error("run", "gzip", "wrote a header with optional fields", Fault::Failed);
            header_skipped_ = true;
        }
        held_ += piece;
        // The last trailer_size bytes may be the trailer: held back until gzip has ended.
        if (ended) {
            if (held_.size() < trailer_size) throw Error("run", "gzip", "wrote no trailer", Fault::Failed);
            held_.resize(held_.size() - trailer_size);
            return held_.empty() || out(std::exchange(held_, {}));
        }
        if (held_.size() <= trailer_size) return true;
        const std::string pass = held_.substr(0, held_.size() - trailer_size);
        held_.erase(0, pass.size());
        return out(pass);
    }

    Fd output_, input_;
    std::optional<ChildProcess> child_;  // after the descriptors: killed and reaped before they close
    uint64_t read_ = 0;
    std::string header_, held_;
    bool header_skipped_ = false;
};

std::unique_ptr<Deflater> make_deflater(const GzipParameters& parameters) {
    if (parameters.mem_level == 0) return std::make_unique<GnuGzipDeflater>(parameters.level);
    return std::make_unique<ZlibDeflater>(parameters.level, parameters.mem_level);
}

// Whether the deflater makes exactly `deflated` of content.
bool reproduces(Deflater& deflater, std::string_view content, std::string_view deflated) {
    size_t at = 0;
    const DeflateOut compare = [&](std::string_view piece) {
        if (deflated.substr(at, piece.size()) != piece) return false;
        at += piece.size();
        return true;
    };
    for (size_t pos = 0; pos < content.size(); pos += feed_piece)
        if (!deflater.feed(content.substr(pos, feed_piece), compare)) return false;
    return deflater.finish(compare) && at == deflated.size();
}

}  // namespace

std::optional<std::string> gunzip(std::string_view data, uint64_t max_content) {
    const auto header = header_length(data);
    if (!header) return std::nullopt;
    auto z = ZStream::inflater();
    set_input(z.get(), data.substr(*header));
    std::string content;
    while (true) {
        const size_t have = content.size();
        if (have >= max_content + 1) return std::nullopt;
        content.resize(have + std::min<uint64_t>(chunk, max_content + 1 - have));
        z->next_out = reinterpret_cast<Bytef*>(content.data() + have);
        z->avail_out = static_cast<uInt>(content.size() - have);
        const int rc = inflate(z.get(), Z_NO_FLUSH);
        content.resize(content.size() - z->avail_out);
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK) return std::nullopt;
    }
    if (content.size() > max_content) return std::nullopt;
    const auto trailer = data.substr(data.size() - z->avail_in);
    if (trailer.size() != trailer_size || load_le32(trailer) != crc_update(0, content) ||
        load_le32(trailer.substr(4)) != static_cast<uint32_t>(content.size()))
        return std::nullopt;
    return content;
}

std::optional<GzipParameters> reproducible_gzip(std::string_view data, std::string_view content) {
    const auto header = header_length(data);
    if (!header || data.size() < *header + trailer_size) return std::nullopt;
    const auto deflated = data.substr(*header, data.size() - *header - trailer_size);
    // zlib and GNU gzip both record level 9 as XFL 2 and level 1 as XFL 4, so such a member is
    // tried at that level alone: every other level is an attempt that deflates its first blocks
    // for nothing (16 of 18 attempts for each of the ~430 `gzip -9` members of bench/delta.sh's
    // v1 -> v2). XFL 0 says little (other writers put 0 whatever the level): every level, 6 first.
    const auto xfl = static_cast<uint8_t>(data[8]);
    const int first = xfl == 2 ? 9 : xfl == 4 ? 1 : 6;
    std::vector<int> levels{first};
    if (xfl != 2 && xfl != 4) levels.insert(levels.end(), {9, 1, 2, 3, 4, 5, 7, 8});
    GzipParameters parameters{std::string(data.substr(0, *header)), 0, 0};
    for (const int mem_level : {8, 9})
        for (const int level : levels) {
            ZlibDeflater zlib(level, mem_level);
            if (reproduces(zlib, content, deflated)) {
                parameters.level = level, parameters.mem_level = mem_level;
                return parameters;
            }
        }
    // GNU gzip records its level in XFL exactly for 9 and 1; 6 is its default.
    std::vector<int> gnu_levels{first};
    if (xfl != 2 && xfl != 4)
        for (const int level : {2, 3, 4, 5, 7, 8}) gnu_levels.push_back(level);
    for (const int level : gnu_levels) {
        try {
            GnuGzipDeflater gnu(level);
            if (reproduces(gnu, content, deflated)) {
                parameters.level = level;
                return parameters;
            }
        } catch (const Error& e) {
            // No gzip to run here (or it failed): its members stay opaque, which costs only size.
            spdlog::debug("GNU gzip members stay opaque: {}", e.what());
            return std::nullopt;
        }
    }
    return std::nullopt;
}

std::optional<RecordedGzip> record_gzip(std::string_view data, std::string_view content, uint64_t piece_bytes) {
    const auto header = header_length(data);
    if (!header || data.size() < *header + trailer_size) return std::nullopt;
    auto parse = record_deflate_parse(data.substr(*header, data.size() - *header - trailer_size), content, piece_bytes);
    if (!parse) return std::nullopt;
    return RecordedGzip{GzipParameters{std::string(data.substr(0, *header)), 0, 0}, std::move(*parse)};
}

std::optional<DeflateParse> gzip_reference_parse(std::string_view data, uint64_t mark_bytes) {
    const auto header = header_length(data);
    if (!header) return std::nullopt;
    return reference_parse(data.substr(*header), mark_bytes);
}

std::optional<DeflateWindows> open_gzip_windows(DeflateWindows::Reader read, uint64_t mark_bytes) {
    // The header with its optional fields (a file name, a comment) in the first piece; what
    // follows it there is the first of the deflate data.
    std::string first(chunk, '\0');
    first.resize(read(first.data(), first.size()));
    const auto header = header_length(first);
    if (!header) return std::nullopt;
    first.erase(0, *header);
    return DeflateWindows(
        [first = std::move(first), read = std::move(read)](char* into, size_t size) mutable {
            if (first.empty()) return read(into, size);
            const size_t n = std::min(size, first.size());
            std::copy_n(first.data(), n, into);
            first.erase(0, n);
            return n;
        },
        mark_bytes);
}

struct GzipBuilder::Impl {
    std::unique_ptr<Deflater> deflater;  // or, for a recorded parse:
    std::optional<DeflateReplay> replay;
    std::string member;
    uint32_t crc = 0;
    uint64_t size = 0;   // of the content
    uint64_t taken = 0;  // of the member
    DeflateOut append = [this](std::string_view piece) {
        member += piece;
        return true;
    };
};

GzipBuilder::GzipBuilder(const GzipParameters& parameters) : impl_(std::make_unique<Impl>()) {
    if (header_length(parameters.header) != parameters.header.size())
        throw Error("rebuild gzip file", "", "not a gzip header", Fault::InvalidInput);
    if (parameters.level < 0 || parameters.level > 9 || parameters.mem_level < 0 || parameters.mem_level > 9 ||
        (parameters.replays() && parameters.mem_level != 0))
        throw Error("rebuild gzip file", "", "deflate parameters out of range", Fault::InvalidInput);
    impl_->member = parameters.header;
    if (parameters.replays()) impl_->replay.emplace();
    else impl_->deflater = make_deflater(parameters);
}

GzipBuilder::~GzipBuilder() = default;

void GzipBuilder::feed(std::string_view content, std::string_view parse) {
    impl_->crc = crc_update(impl_->crc, content);
    impl_->size += content.size();
    if (impl_->replay) {
        impl_->replay->feed(content, parse, impl_->member);
        return;
    }
    if (!parse.empty()) throw Error("rebuild gzip file", "", "a parse for a member that is compressed again", Fault::InvalidInput);
    impl_->deflater->feed(content, impl_->append);
}

uint64_t GzipBuilder::size() const { return impl_->taken + impl_->member.size(); }

std::string GzipBuilder::take() {
    impl_->taken += impl_->member.size();
    return std::exchange(impl_->member, std::string());
}

std::string GzipBuilder::finish() {
    if (impl_->replay) impl_->replay->finish(impl_->member);
    else impl_->deflater->finish(impl_->append);
    put_le32(impl_->member, impl_->crc);
    put_le32(impl_->member, static_cast<uint32_t>(impl_->size));
    return std::move(impl_->member);
}

std::string gzip_member(const GzipParameters& parameters, std::string_view content) {
    GzipBuilder builder(parameters);
    for (size_t pos = 0; pos < content.size(); pos += feed_piece) builder.feed(content.substr(pos, feed_piece));
    return builder.finish();
}

}  // namespace strata::delta
