#include "delta/gzip.hpp"

#include <zlib.h>

#include <array>
#include <functional>
#include <vector>

#include "base/error.hpp"
#include "stream/protocol.hpp"

namespace strata::delta {
namespace {

// RFC 1952: ID1 ID2 CM FLG MTIME(4) XFL OS, then the optional fields FLG names.
constexpr size_t fixed_header = 10, trailer_size = 8;
constexpr uint8_t flag_hcrc = 2, flag_extra = 4, flag_name = 8, flag_comment = 16, flags_reserved = 0xe0;
constexpr size_t chunk = 64u << 10;

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

uint32_t crc_of(std::string_view content) {
    uLong crc = crc32(0, nullptr, 0);
    for (size_t at = 0; at < content.size(); at += chunk) {
        const auto part = content.substr(at, chunk);
        crc = crc32(crc, reinterpret_cast<const Bytef*>(part.data()), static_cast<uInt>(part.size()));
    }
    return static_cast<uint32_t>(crc);
}

class Inflater {
public:
    Inflater() {
        if (inflateInit2(&z_, -MAX_WBITS) != Z_OK) throw Error("inflate", "", "zlib could not start", Fault::Failed);
    }
    ~Inflater() { inflateEnd(&z_); }
    Inflater(const Inflater&) = delete;
    Inflater& operator=(const Inflater&) = delete;

    // The content of the raw deflate stream at the start of in and how many bytes of in it
    // took; nullopt when it is damaged, ends early or inflates beyond max_content.
    std::optional<std::pair<std::string, size_t>> run(std::string_view in, uint64_t max_content) {
        z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
        z_.avail_in = static_cast<uInt>(in.size());
        std::string content;
        while (true) {
            const size_t have = content.size();
            if (have >= max_content + 1) return std::nullopt;
            content.resize(have + std::min<uint64_t>(chunk, max_content + 1 - have));
            z_.next_out = reinterpret_cast<Bytef*>(content.data() + have);
            z_.avail_out = static_cast<uInt>(content.size() - have);
            const int rc = inflate(&z_, Z_NO_FLUSH);
            content.resize(content.size() - z_.avail_out);
            if (rc == Z_STREAM_END) break;
            if (rc != Z_OK) return std::nullopt;
        }
        if (content.size() > max_content) return std::nullopt;
        return std::pair{std::move(content), in.size() - z_.avail_in};
    }

private:
    z_stream z_{};
};

// Raw deflate of content, passed to out in pieces until out returns false.
bool deflate_raw(std::string_view content, int level, int mem_level, const std::function<bool(std::string_view)>& out) {
    z_stream z{};
    if (deflateInit2(&z, level, Z_DEFLATED, -MAX_WBITS, mem_level, Z_DEFAULT_STRATEGY) != Z_OK)
        throw Error("deflate", "", "zlib could not start", Fault::Failed);
    struct End {
        z_stream& z;
        ~End() { deflateEnd(&z); }
    } end{z};
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(content.data()));
    z.avail_in = static_cast<uInt>(content.size());
    std::array<char, chunk> buffer;
    while (true) {
        z.next_out = reinterpret_cast<Bytef*>(buffer.data());
        z.avail_out = static_cast<uInt>(buffer.size());
        const int rc = deflate(&z, Z_FINISH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) throw Error("deflate", "", "zlib failed", Fault::Failed);
        if (!out(std::string_view(buffer.data(), buffer.size() - z.avail_out))) return false;
        if (rc == Z_STREAM_END) return true;
    }
}

}  // namespace

std::optional<std::string> gunzip(std::string_view data, uint64_t max_content) {
    const auto header = header_length(data);
    if (!header) return std::nullopt;
    auto inflated = Inflater().run(data.substr(*header), max_content);
    if (!inflated) return std::nullopt;
    auto& [content, deflated] = *inflated;
    const auto trailer = data.substr(*header + deflated);
    if (trailer.size() != trailer_size || load_le32(trailer) != crc_of(content) ||
        load_le32(trailer.substr(4)) != static_cast<uint32_t>(content.size()))
        return std::nullopt;
    return std::move(content);
}

std::optional<GzipParameters> reproducible_gzip(std::string_view data, std::string_view content) {
    const auto header = header_length(data);
    if (!header || data.size() < *header + trailer_size) return std::nullopt;
    const auto deflated = data.substr(*header, data.size() - *header - trailer_size);
    // The level gzip records in XFL first (2: slowest, 4: fastest), then the common ones.
    const auto xfl = static_cast<uint8_t>(data[8]);
    const int first = xfl == 2 ? 9 : xfl == 4 ? 1 : 6;
    std::vector<int> levels{first};
    for (const int level : {9, 6, 1, 2, 3, 4, 5, 7, 8})
        if (level != first) levels.push_back(level);
    for (const int mem_level : {8, 9})
        for (const int level : levels) {
            size_t at = 0;
            const bool same = deflate_raw(content, level, mem_level, [&](std::string_view piece) {
                if (deflated.substr(at, piece.size()) != piece) return false;
                at += piece.size();
                return true;
            });
            if (same && at == deflated.size()) return GzipParameters{std::string(data.substr(0, *header)), level, mem_level};
        }
    return std::nullopt;
}

std::string gzip_member(const GzipParameters& parameters, std::string_view content) {
    if (header_length(parameters.header) != parameters.header.size())
        throw Error("rebuild gzip file", "", "not a gzip header", Fault::InvalidInput);
    if (parameters.level < 1 || parameters.level > 9 || parameters.mem_level < 1 || parameters.mem_level > 9)
        throw Error("rebuild gzip file", "", "zlib parameters out of range", Fault::InvalidInput);
    std::string member = parameters.header;
    deflate_raw(content, parameters.level, parameters.mem_level, [&](std::string_view piece) {
        member += piece;
        return true;
    });
    put_le32(member, crc_of(content));
    put_le32(member, static_cast<uint32_t>(content.size()));
    return member;
}

}  // namespace strata::delta
