#include "delta/deflate_parse.hpp"

#include <endian.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <utility>

#include "base/ahead.hpp"
#include "base/error.hpp"

namespace strata::delta {
namespace {

[[noreturn]] void refuse(const std::string& why) { throw Error("replay deflate parse", "", why, Fault::InvalidInput); }

// RFC 1951, 3.2.5 and 3.2.7.
constexpr unsigned max_code_bits = 15, litlen_symbols = 288, dist_symbols = 32, end_of_block = 256;
constexpr unsigned max_hlit = 286, max_hdist = 30, max_match = 258;
constexpr uint32_t max_distance = 32768;
constexpr std::array<uint16_t, 29> length_base{3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                               31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr std::array<uint8_t, 29> length_extra{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                               2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr std::array<uint16_t, 30> dist_base{1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
                                             193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
constexpr std::array<uint8_t, 30> dist_extra{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
constexpr std::array<uint8_t, 19> code_length_order{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

// What follows the literals of a token element (docs/delta.md).
enum Tag : uint8_t { Match = 0, BlockEnd = 1, PieceEnd = 2 };
enum BlockType : unsigned { Stored = 0, Fixed = 1, Dynamic = 2 };

using DeflateReader = DeflateWindows::Reader;

// Bits of a deflate stream, least significant first, read through a DeflateReader in chunks
// (a stream at hand is read from memory the same way). Bits past the end read as zeros, so a
// decoder checks overrun() before it trusts what it read.
class BitReader {
public:
    explicit BitReader(DeflateReader read) : read_(std::move(read)) {}
    explicit BitReader(std::string_view data)
        : read_([data](char* into, size_t size) mutable {
              const auto n = std::min(size, data.size());
              std::memcpy(into, data.data(), n);
              data.remove_prefix(n);
              return n;
          }) {}

    // At least `bytes` bytes from the current one on at hand, unless the stream ends before.
    void ensure(size_t bytes) {
        if ((pos_ >> 3) + bytes > buffer_.size() && !ended_) refill(bytes);
    }
    uint32_t peek(unsigned count) const { return bits_at(pos_, count); }
    uint32_t take(unsigned count) {
        const auto value = peek(count);
        pos_ += count;
        return value;
    }
    void skip(uint64_t count) { pos_ += count; }
    // Bits read since the start.
    uint64_t position() const { return dropped_ * 8 + pos_; }
    bool overrun() const { return pos_ > buffer_.size() * 8; }
    // The bits from position `from` (in the chunk at hand) to the current one, packed in bytes.
    void append_bits_since(uint64_t from, std::string& out) const {
        for (uint64_t at = from - dropped_ * 8; at < pos_; at += 8)
            out += static_cast<char>(bits_at(at, static_cast<unsigned>(std::min<uint64_t>(8, pos_ - at))));
    }
    // The next count bytes at hand, at a byte boundary (fewer when the stream ends before).
    std::string_view bytes(size_t count) const {
        const uint64_t byte = pos_ >> 3;
        if (byte >= buffer_.size()) return {};
        return std::string_view(buffer_).substr(byte, count);
    }
    // Whether the stream has no byte after the current one (the rest of which is fill).
    bool at_last_byte() {
        ensure(2);
        return ended_ && (pos_ + 7) / 8 == buffer_.size();
    }

private:
    // Drops the bytes read and reads until `bytes` from the current one are at hand.
    void refill(size_t bytes) {
        const size_t at = pos_ >> 3;
        dropped_ += std::min(at, buffer_.size());
        pos_ -= std::min(at, buffer_.size()) * 8;
        buffer_.erase(0, std::min(at, buffer_.size()));
        while (buffer_.size() < (pos_ >> 3) + bytes && !ended_) {
            const size_t have = buffer_.size();
            buffer_.resize(have + read_chunk);
            const size_t n = read_(buffer_.data() + have, read_chunk);
            buffer_.resize(have + n);
            ended_ = n == 0;
        }
    }

    uint32_t bits_at(uint64_t bit, unsigned count) const {
        const uint64_t byte = bit >> 3;
        uint64_t word = 0;
        if (byte + 8 <= buffer_.size()) {
            std::memcpy(&word, buffer_.data() + byte, 8);
            word = le64toh(word);
        } else {
            for (size_t i = 0; byte + i < buffer_.size(); ++i) word |= uint64_t{static_cast<uint8_t>(buffer_[byte + i])} << (8 * i);
        }
        return static_cast<uint32_t>((word >> (bit & 7)) & ((uint64_t{1} << count) - 1));
    }

    static constexpr size_t read_chunk = 64u << 10;
    DeflateReader read_;
    std::string buffer_;
    uint64_t pos_ = 0;      // in bits, in buffer_
    uint64_t dropped_ = 0;  // bytes before buffer_
    bool ended_ = false;
};

class BitWriter {
public:
    void to(std::string& out) { out_ = &out; }
    void put(uint32_t value, unsigned count) {
        bits_ |= uint64_t{value} << count_;
        count_ += count;
        if (count_ >= 32) {
            const uint32_t word = htole32(static_cast<uint32_t>(bits_));
            out_->append(reinterpret_cast<const char*>(&word), 4);
            bits_ >>= 32;
            count_ -= 32;
        }
    }
    // The bits up to the next byte boundary.
    unsigned fill_bits() const { return (8 - count_ % 8) % 8; }
    void flush_bytes() {
        for (; count_ >= 8; count_ -= 8, bits_ >>= 8) *out_ += static_cast<char>(bits_);
    }
    // At a byte boundary only.
    void raw(std::string_view bytes) {
        flush_bytes();
        out_->append(bytes);
    }

private:
    std::string* out_ = nullptr;
    uint64_t bits_ = 0;
    unsigned count_ = 0;
};

// Whether code lengths (0: unused) fit a prefix code: the Kraft sum does not exceed 1.
bool fits(const uint8_t* lengths, size_t count) {
    std::array<unsigned, max_code_bits + 1> per_length{};
    for (size_t i = 0; i < count; ++i) ++per_length[lengths[i]];
    int left = 1;
    for (unsigned bits = 1; bits <= max_code_bits; ++bits) {
        left = left * 2 - static_cast<int>(per_length[bits]);
        if (left < 0) return false;
    }
    return true;
}

// The canonical codes of RFC 1951 3.2.2, bit-reversed as they go into the stream.
template <size_t N>
std::array<uint16_t, N> canonical_codes(const std::array<uint8_t, N>& lengths) {
    std::array<unsigned, max_code_bits + 1> per_length{};
    for (const auto length : lengths) ++per_length[length];
    per_length[0] = 0;
    std::array<uint32_t, max_code_bits + 1> next{};
    uint32_t code = 0;
    for (unsigned bits = 1; bits <= max_code_bits; ++bits) {
        code = (code + per_length[bits - 1]) << 1;
        next[bits] = code;
    }
    std::array<uint16_t, N> codes{};
    for (size_t symbol = 0; symbol < N; ++symbol) {
        const unsigned length = lengths[symbol];
        if (length == 0) continue;
        uint32_t c = next[length]++, reversed = 0;
        for (unsigned i = 0; i < length; ++i, c >>= 1) reversed = reversed << 1 | (c & 1);
        codes[symbol] = static_cast<uint16_t>(reversed);
    }
    return codes;
}

struct CodeLengths {
    std::array<uint8_t, litlen_symbols> litlen{};
    std::array<uint8_t, dist_symbols> dist{};
};

CodeLengths fixed_lengths() {
    CodeLengths l;
    for (unsigned s = 0; s < litlen_symbols; ++s) l.litlen[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
    l.dist.fill(5);
    return l;
}

// A table from the next max-length bits to (symbol, length): one lookup a symbol.
template <size_t N>
class HuffmanDecoder {
public:
    explicit HuffmanDecoder(const std::array<uint8_t, N>& lengths) {
        const auto codes = canonical_codes(lengths);
        for (const auto length : lengths) bits_ = std::max<unsigned>(bits_, length);
        table_.assign(size_t{1} << bits_, 0);
        for (size_t symbol = 0; symbol < N; ++symbol) {
            const unsigned length = lengths[symbol];
            if (length == 0) continue;
            for (size_t i = codes[symbol]; i < table_.size(); i += size_t{1} << length)
                table_[i] = static_cast<uint32_t>(symbol << 4 | length);
        }
    }
    // The next symbol; -1 for bits no code starts with.
    int decode(BitReader& in) const {
        const auto entry = table_[in.peek(bits_)];
        if ((entry & 15) == 0) return -1;
        in.skip(entry & 15);
        return static_cast<int>(entry >> 4);
    }

private:
    unsigned bits_ = 1;
    std::vector<uint32_t> table_;
};

// The code lengths a dynamic block's header gives, read from in; nullopt for an invalid header.
std::optional<CodeLengths> read_dynamic_header(BitReader& in) {
    const unsigned hlit = in.take(5) + 257, hdist = in.take(5) + 1, hclen = in.take(4) + 4;
    if (hlit > max_hlit || hdist > max_hdist) return std::nullopt;
    std::array<uint8_t, 19> code_length_lengths{};
    for (unsigned i = 0; i < hclen; ++i) code_length_lengths[code_length_order[i]] = static_cast<uint8_t>(in.take(3));
    if (!fits(code_length_lengths.data(), code_length_lengths.size())) return std::nullopt;
    const HuffmanDecoder code_lengths(code_length_lengths);
    std::array<uint8_t, max_hlit + max_hdist> lengths{};
    for (unsigned i = 0; i < hlit + hdist;) {
        const int symbol = code_lengths.decode(in);
        if (symbol < 0 || in.overrun()) return std::nullopt;
        if (symbol < 16) {
            lengths[i++] = static_cast<uint8_t>(symbol);
            continue;
        }
        uint8_t value = 0;
        unsigned repeat = 0;
        if (symbol == 16) {
            if (i == 0) return std::nullopt;
            value = lengths[i - 1];
            repeat = 3 + in.take(2);
        } else {
            repeat = symbol == 17 ? 3 + in.take(3) : 11 + in.take(7);
        }
        if (repeat > hlit + hdist - i) return std::nullopt;
        for (; repeat > 0; --repeat) lengths[i++] = value;
    }
    CodeLengths result;
    std::copy_n(lengths.begin(), hlit, result.litlen.begin());
    std::copy_n(lengths.begin() + hlit, hdist, result.dist.begin());
    if (result.litlen[end_of_block] == 0 || !fits(result.litlen.data(), litlen_symbols) ||
        !fits(result.dist.data(), dist_symbols))
        return std::nullopt;
    return result;
}

void put_u16(std::string& out, uint32_t v) {
    out += static_cast<char>(v & 0xff);
    out += static_cast<char>(v >> 8 & 0xff);
}

void put_varint(std::string& out, uint64_t v) {
    for (; v >= 0x80; v >>= 7) out += static_cast<char>(v | 0x80);
    out += static_cast<char>(v);
}

// The content a decoder rebuilds: a buffer with room past its end, so that a match's bytes are
// copied eight at a time (a copy call a match was a fifth of the decoding).
class Inflated {
public:
    size_t size() const { return size_; }
    // Room for `bytes` more (and the slack past them).
    void reserve(size_t bytes) {
        if (size_ + bytes + slack <= data_.size()) return;
        data_.resize(std::max(data_.size() * 2, size_ + bytes + slack));
    }
    // After reserve(1).
    void push(char byte) { data_[size_++] = byte; }
    void append(std::string_view bytes) {
        reserve(bytes.size());
        std::memcpy(data_.data() + size_, bytes.data(), bytes.size());
        size_ += bytes.size();
    }
    // The `length` bytes from `distance` back (distance <= size()), after reserve(length).
    void repeat(size_t distance, size_t length) {
        char* out = data_.data() + size_;
        const char* from = out - distance;
        if (distance >= 8) {
            // Each eight bytes read were written before: the source is at least eight behind.
            for (size_t i = 0; i < length; i += 8) std::memcpy(out + i, from + i, 8);
        } else {
            for (size_t i = 0; i < length; ++i) out[i] = from[i];
        }
        size_ += length;
    }
    // The bytes from `from` on; the last `keep` bytes stay, at the start.
    std::string take(size_t from, size_t keep) {
        std::string taken(data_.data() + from, size_ - from);
        const size_t kept = std::min(keep, size_);
        std::memmove(data_.data(), data_.data() + size_ - kept, kept);
        size_ = kept;
        return taken;
    }

private:
    static constexpr size_t slack = 8;
    std::string data_;
    size_t size_ = 0;
};

// Decodes a deflate stream into its parse (the whole stream's, cut into pieces by content
// position; runs of literals are cut at piece boundaries, so each piece's literals are in its
// own content), a block head or a batch of symbols at a time.
class ParseDecoder {
public:
    enum class Step { More, Ended, Damaged };

    // content, when given, is checked: every match must repeat it and the stream end with it.
    // inflate: the content is rebuilt as well (take_content).
    ParseDecoder(BitReader in, uint64_t piece_bytes, std::optional<std::string_view> content = std::nullopt,
                 bool inflate = false)
        : in_(std::move(in)), piece_bytes_(piece_bytes), content_(content), inflate_(inflate) {}

    Step step() {
        switch (state_) {
        case State::Head: return block_head();
        case State::Tokens: return tokens();
        case State::Ended: break;
        }
        return Step::Ended;
    }

    // The parse decoded and not yet taken; piece j starts at offset piece_starts()[j] of the
    // whole parse.
    std::string& parse() { return parse_; }
    std::string take_parse() {
        parse_start_ += parse_.size();
        return std::exchange(parse_, {});
    }
    // The content rebuilt and not yet taken.
    size_t content_size() const { return inflated_.size() - taken_; }
    std::string take_content() {
        // What later matches may reach back to stays.
        auto piece = inflated_.take(taken_, max_distance);
        taken_ = inflated_.size();
        return piece;
    }
    const std::vector<uint64_t>& piece_starts() const { return piece_starts_; }
    uint64_t content_position() const { return pos_; }
    BitReader& input() { return in_; }

private:
    enum class State { Head, Tokens, Ended };

    // Where the next element, at content position pos, goes.
    std::string& at(uint64_t pos) {
        if (pos >= next_piece_at_) start_pieces(pos);
        return parse_;
    }
    void start_pieces(uint64_t pos) {
        while (pos / piece_bytes_ >= piece_starts_.size()) piece_starts_.push_back(parse_start_ + parse_.size());
        const uint64_t started = piece_starts_.size();
        next_piece_at_ = started > UINT64_MAX / piece_bytes_ ? UINT64_MAX : started * piece_bytes_;
    }
    // The literals from `from` to pos, then tag, at pos. No element comes between a run's start
    // and its end, so a run crosses a piece boundary only into a piece not started yet.
    void literals_then(uint64_t from, uint64_t pos, Tag tag) {
        if (pos >= next_piece_at_)
            while (from / piece_bytes_ != pos / piece_bytes_) {
                const uint64_t boundary = (from / piece_bytes_ + 1) * piece_bytes_;
                put_varint(at(from), (boundary - from) << 2 | PieceEnd);
                from = boundary;
            }
        put_varint(at(pos), (pos - from) << 2 | tag);
    }

    Step block_head() {
        in_.ensure(max_header_bytes);
        final_block_ = in_.take(1) != 0;
        const auto type = in_.take(2);
        at(pos_) += static_cast<char>((final_block_ ? 1 : 0) | type << 1);
        if (type == Stored) {
            const unsigned fill = static_cast<unsigned>((8 - in_.position() % 8) % 8);
            at(pos_) += static_cast<char>(in_.take(fill));
            const auto length = in_.take(16), complement = in_.take(16);
            if ((length ^ 0xffff) != complement) return Step::Damaged;
            put_u16(at(pos_), length);
            in_.ensure(length + 8);
            if (inflate_) inflated_.append(in_.bytes(length));
            in_.skip(uint64_t{length} * 8);
            pos_ += length;
            return block_done();
        }
        if (type != Fixed && type != Dynamic) return Step::Damaged;
        CodeLengths lengths = fixed_lengths();
        if (type == Dynamic) {
            const uint64_t header_at = in_.position();
            const auto dynamic = read_dynamic_header(in_);
            if (!dynamic || in_.overrun()) return Step::Damaged;
            lengths = *dynamic;
            const uint64_t header_bits = in_.position() - header_at;
            std::string& out = at(pos_);
            put_u16(out, static_cast<uint32_t>(header_bits));
            in_.append_bits_since(header_at, out);
        }
        litlen_.emplace(lengths.litlen);
        dist_.emplace(lengths.dist);
        run_from_ = pos_;
        state_ = State::Tokens;
        return Step::More;
    }

    Step tokens() {
        for (unsigned n = 0; n < symbols_a_step; ++n) {
            in_.ensure(max_token_bytes);
            if (in_.overrun()) return Step::Damaged;
            const int symbol = litlen_->decode(in_);
            if (symbol < 0) return Step::Damaged;
            if (symbol < 256) {
                if (inflate_) {
                    inflated_.reserve(1);
                    inflated_.push(static_cast<char>(symbol));
                }
                ++pos_;
                continue;
            }
            if (symbol == end_of_block) {
                literals_then(run_from_, pos_, BlockEnd);
                return block_done();
            }
            const auto length_code = static_cast<unsigned>(symbol - 257);
            if (length_code >= length_base.size()) return Step::Damaged;
            const uint32_t length = length_base[length_code] + in_.take(length_extra[length_code]);
            const int dist_symbol = dist_->decode(in_);
            if (dist_symbol < 0 || static_cast<size_t>(dist_symbol) >= dist_base.size()) return Step::Damaged;
            const auto dist_code = static_cast<size_t>(dist_symbol);
            const uint32_t distance = dist_base[dist_code] + in_.take(dist_extra[dist_code]);
            if (length > max_match || distance > pos_) return Step::Damaged;
            if (content_ && (length > content_->size() - std::min<uint64_t>(pos_, content_->size()) ||
                             std::memcmp(content_->data() + pos_, content_->data() + pos_ - distance, length) != 0))
                return Step::Damaged;
            if (inflate_) repeat(distance, length);
            literals_then(run_from_, pos_, Match);
            at(pos_) += static_cast<char>(length - 3);
            put_u16(at(pos_), distance - 1);
            pos_ += length;
            run_from_ = pos_;
        }
        return Step::More;
    }

    // A match's bytes, from the content rebuilt so far (distance <= pos_, and the last
    // max_distance bytes are kept).
    void repeat(uint32_t distance, uint32_t length) {
        inflated_.reserve(length);
        inflated_.repeat(distance, length);
    }

    Step block_done() {
        if (in_.overrun()) return Step::Damaged;
        if (!final_block_) {
            state_ = State::Head;
            return Step::More;
        }
        const unsigned fill = static_cast<unsigned>((8 - in_.position() % 8) % 8);
        at(pos_) += static_cast<char>(in_.take(fill));
        state_ = State::Ended;
        return Step::Ended;
    }

    // A dynamic header is at most 14 + 19 * 3 + 316 * 7 bits; a symbol with its extra bits and
    // a distance with its, 48.
    static constexpr size_t max_header_bytes = 1024, max_token_bytes = 16;
    static constexpr unsigned symbols_a_step = 1u << 14;

    BitReader in_;
    uint64_t piece_bytes_;
    std::optional<std::string_view> content_;
    bool inflate_;
    Inflated inflated_;     // content from max_distance before the first byte not taken on
    size_t taken_ = 0;      // of inflated_: bytes taken before
    State state_ = State::Head;
    bool final_block_ = false;
    std::optional<HuffmanDecoder<litlen_symbols>> litlen_;
    std::optional<HuffmanDecoder<dist_symbols>> dist_;
    uint64_t pos_ = 0, run_from_ = 0;
    std::string parse_;
    uint64_t parse_start_ = 0;
    std::vector<uint64_t> piece_starts_;
    uint64_t next_piece_at_ = 0;  // content position where the first piece not started begins
};

// The fields of parse pieces, refusing to read past the end.
class Cursor {
public:
    explicit Cursor(std::string_view data) : data_(data) {}
    bool done() const { return at_ == data_.size(); }
    uint8_t u8() {
        need(1);
        return static_cast<uint8_t>(data_[at_++]);
    }
    uint32_t u16() {
        const uint32_t low = u8();
        return low | uint32_t{u8()} << 8;
    }
    uint64_t varint() {
        uint64_t v = 0;
        for (unsigned shift = 0; shift < 64; shift += 7) {
            const auto byte = u8();
            v |= uint64_t{byte & 0x7fu} << shift;
            if (!(byte & 0x80)) return v;
        }
        refuse("a number in the parse is too long");
    }
    std::string_view take(size_t n) {
        need(n);
        const auto s = data_.substr(at_, n);
        at_ += n;
        return s;
    }

private:
    void need(size_t n) const {
        if (n > data_.size() - at_) refuse("the parse ends inside an element");
    }
    std::string_view data_;
    size_t at_ = 0;
};

// Which length and distance codes write a match: RFC 1951's tables turned around.
struct MatchCodes {
    std::array<uint8_t, max_match + 1> length{};
    std::array<uint8_t, max_distance + 1> distance{};
    MatchCodes() {
        for (unsigned code = 0; code + 1 < length_base.size(); ++code)
            for (unsigned l = length_base[code]; l < length_base[code] + (1u << length_extra[code]) && l <= max_match; ++l)
                length[l] = static_cast<uint8_t>(code);
        length[max_match] = static_cast<uint8_t>(length_base.size() - 1);  // 258 has a code of its own
        for (unsigned code = 0; code < dist_base.size(); ++code)
            for (uint32_t d = dist_base[code]; d < dist_base[code] + (1u << dist_extra[code]); ++d)
                distance[d] = static_cast<uint8_t>(code);
    }
};

const MatchCodes& match_codes() {
    static const MatchCodes codes;
    return codes;
}

}  // namespace

struct DeflateReplay::Impl {
    enum class State { BlockHead, Tokens, Fill, Ended };
    State state = State::BlockHead;
    bool final_block = false;
    BitWriter bits;
    uint64_t pos = 0;          // content position the parse has reached
    uint64_t piece_start = 0;  // of the content at hand
    std::string_view content;
    uint64_t stored_left = 0;  // bytes of a stored block still to come from content
    CodeLengths lengths;
    std::array<uint16_t, litlen_symbols> litlen_codes{};
    std::array<uint16_t, dist_symbols> dist_codes{};

    void put_symbol(unsigned symbol) {
        if (lengths.litlen[symbol] == 0) refuse("the parse needs a symbol its block has no code for");
        bits.put(litlen_codes[symbol], lengths.litlen[symbol]);
    }

    void stored_bytes() {
        if (pos < piece_start || pos > piece_start + content.size()) refuse("a stored block outside the content given");
        const uint64_t n = std::min(stored_left, piece_start + content.size() - pos);
        bits.raw(content.substr(pos - piece_start, n));
        pos += n;
        stored_left -= n;
    }

    void literals(uint64_t count) {
        if (pos < piece_start || pos - piece_start > content.size() || count > content.size() - (pos - piece_start))
            refuse("literals outside the content given");
        for (const char byte : content.substr(pos - piece_start, count)) put_symbol(static_cast<uint8_t>(byte));
        pos += count;
    }

    void match(uint32_t length, uint32_t distance) {
        if (distance > max_distance || distance > pos) refuse("a match reaches before the content's start");
        const auto& codes = match_codes();
        const unsigned length_code = codes.length[length], dist_code = codes.distance[distance];
        put_symbol(257 + length_code);
        bits.put(length - length_base[length_code], length_extra[length_code]);
        if (lengths.dist[dist_code] == 0) refuse("the parse needs a distance its block has no code for");
        bits.put(dist_codes[dist_code], lengths.dist[dist_code]);
        bits.put(distance - dist_base[dist_code], dist_extra[dist_code]);
        pos += length;
    }

    void use_codes(const CodeLengths& l) {
        lengths = l;
        litlen_codes = canonical_codes(lengths.litlen);
        dist_codes = canonical_codes(lengths.dist);
    }

    void block_head(Cursor& c) {
        const auto head = c.u8();
        const unsigned type = head >> 1;
        if (head > 5) refuse("unknown block type in the parse");
        final_block = head & 1;
        bits.put(head, 3);
        if (type == Stored) {
            const auto fill = c.u8();
            if (fill >> bits.fill_bits()) refuse("more fill bits than a stored block has");
            bits.put(fill, bits.fill_bits());
            const auto length = c.u16();
            bits.put(length, 16);
            bits.put(length ^ 0xffff, 16);
            stored_left = length;
            stored_bytes();
            state = final_block ? State::Fill : State::BlockHead;
            return;
        }
        if (type == Fixed) {
            use_codes(fixed_lengths());
        } else {
            const auto header_bits = c.u16();
            const auto header_bytes = c.take((header_bits + 7) / 8);
            BitReader header(header_bytes);
            header.ensure(header_bytes.size());
            const auto dynamic = read_dynamic_header(header);
            if (!dynamic || header.position() != header_bits) refuse("invalid block header in the parse");
            use_codes(*dynamic);
            BitReader copy(header_bytes);
            copy.ensure(header_bytes.size());
            for (uint32_t left = header_bits; left > 0; left -= std::min<uint32_t>(left, 8)) {
                const unsigned n = std::min<uint32_t>(left, 8);
                bits.put(copy.take(n), n);
            }
        }
        state = State::Tokens;
    }

    void fill(Cursor& c) {
        const auto fill = c.u8();
        if (fill >> bits.fill_bits()) refuse("more fill bits than the last byte has");
        bits.put(fill, bits.fill_bits());
        state = State::Ended;
    }

    void token(Cursor& c) {
        const auto element = c.varint();
        literals(element >> 2);
        switch (element & 3) {
        case Match: {
            const uint32_t length = c.u8() + 3u;
            match(length, c.u16() + 1);
            break;
        }
        case BlockEnd:
            put_symbol(end_of_block);
            state = final_block ? State::Fill : State::BlockHead;
            break;
        case PieceEnd: break;
        default: refuse("unknown element in the parse");
        }
    }
};

DeflateReplay::DeflateReplay() : impl_(std::make_unique<Impl>()) {}
DeflateReplay::~DeflateReplay() = default;

void DeflateReplay::feed(std::string_view content, std::string_view parse, std::string& out) {
    auto& s = *impl_;
    s.bits.to(out);
    s.content = content;
    if (s.stored_left > 0) s.stored_bytes();
    Cursor c(parse);
    while (!c.done()) {
        if (s.stored_left > 0) refuse("the parse goes on inside a stored block");
        switch (s.state) {
        case Impl::State::BlockHead: s.block_head(c); break;
        case Impl::State::Tokens: s.token(c); break;
        case Impl::State::Fill: s.fill(c); break;
        case Impl::State::Ended: refuse("the parse goes on after the stream's end");
        }
    }
    s.bits.flush_bytes();
    s.piece_start += content.size();
    s.content = {};
}

void DeflateReplay::finish(std::string& out) {
    auto& s = *impl_;
    s.bits.to(out);
    if (s.state != Impl::State::Ended || s.stored_left > 0) refuse("the parse ends before the stream does");
    if (s.pos != s.piece_start) refuse("the parse does not cover its content");
    s.bits.flush_bytes();
}

std::optional<std::vector<std::string>> record_deflate_parse(std::string_view deflate, std::string_view content,
                                                             uint64_t piece_bytes) {
    if (piece_bytes == 0) throw Error("record deflate parse", "", "pieces of no bytes", Fault::InvalidInput);
    ParseDecoder decoder{BitReader(deflate), piece_bytes, content};
    auto step = ParseDecoder::Step::More;
    while (step == ParseDecoder::Step::More) step = decoder.step();
    if (step != ParseDecoder::Step::Ended || decoder.content_position() != content.size() || !decoder.input().at_last_byte())
        return std::nullopt;
    // One piece a piece of content; the end of the stream at the end of the content is the last one's.
    const uint64_t count = std::max<uint64_t>(1, (content.size() + piece_bytes - 1) / piece_bytes);
    auto starts = decoder.piece_starts();
    const std::string& whole = decoder.parse();
    starts.resize(count, whole.size());
    std::vector<std::string> pieces;
    for (uint64_t i = 0; i < count; ++i)
        pieces.push_back(whole.substr(starts[i], i + 1 < count ? starts[i + 1] - starts[i] : std::string::npos));
    // Replayed, the parse must give back deflate exactly: this also proves that it is the
    // parse of this content.
    DeflateReplay replay;
    std::string rebuilt;
    uint64_t matched = 0;
    try {
        for (uint64_t i = 0; i < count; ++i) {
            replay.feed(content.substr(std::min<uint64_t>(content.size(), i * piece_bytes), piece_bytes), pieces[i], rebuilt);
            if (deflate.substr(matched, rebuilt.size()) != rebuilt) return std::nullopt;
            matched += rebuilt.size();
            rebuilt.clear();
        }
        replay.finish(rebuilt);
    } catch (const Error&) {
        return std::nullopt;
    }
    if (deflate.substr(matched) != rebuilt) return std::nullopt;
    return pieces;
}


std::optional<DeflateParse> reference_parse(std::string_view deflate, uint64_t mark_bytes) {
    ParseDecoder decoder{BitReader(deflate), mark_bytes};
    auto step = ParseDecoder::Step::More;
    while (step == ParseDecoder::Step::More) step = decoder.step();
    if (step != ParseDecoder::Step::Ended) return std::nullopt;
    return DeflateParse{std::move(decoder.parse()), decoder.piece_starts()};
}

struct DeflateWindows::Impl {
    std::unique_ptr<Ahead> decoded;  // pieces: u64:content length, content, parse
    std::string content, parse;      // from content_start and parse_start on
    uint64_t content_start = 0, parse_start = 0;
    bool ended = false;  // or damaged

    bool next() {
        auto piece = decoded->take();
        if (!piece) {
            ended = true;
            return false;
        }
        uint64_t content_bytes = 0;
        std::memcpy(&content_bytes, piece->data(), 8);
        content.append(*piece, 8, content_bytes);
        parse.append(*piece, 8 + content_bytes);
        if (content.size() + parse.size() > max_held_bytes)
            throw Error("read gzip file", "", "content and parse asked for too far apart", Fault::InvalidInput);
        return true;
    }

    std::optional<std::string_view> range(std::string& held, uint64_t& start, uint64_t offset, uint64_t length) {
        if (offset < start) return std::nullopt;
        // What comes before offset is never read again: dropped, also while decoding up to it.
        const auto drop = [&] {
            const uint64_t n = std::min<uint64_t>(offset - start, held.size());
            held.erase(0, n);
            start += n;
        };
        while (!ended && start + held.size() < offset + length) {
            drop();
            next();
        }
        drop();
        if (start != offset || held.size() < length) return std::nullopt;
        return std::string_view(held).substr(0, length);
    }
};

DeflateWindows::DeflateWindows(Reader read, uint64_t mark_bytes) : impl_(std::make_unique<Impl>()) {
    // Decoded on a thread of its own, about a delta piece (24 MiB) ahead of the ranges asked
    // for, so it goes on while the decoder replays a piece: 8 MiB kept it waiting ~40 ms a piece.
    constexpr size_t ahead_bytes = 24u << 20, ahead_piece = 256u << 10;
    auto decoder = std::make_shared<ParseDecoder>(BitReader(std::move(read)), mark_bytes, std::nullopt, true);
    auto step = std::make_shared<ParseDecoder::Step>(ParseDecoder::Step::More);
    impl_->decoded = std::make_unique<Ahead>(
        [decoder, step]() -> std::optional<std::string> {
            while (*step == ParseDecoder::Step::More && decoder->parse().size() + decoder->content_size() < ahead_piece)
                *step = decoder->step();
            const auto content = decoder->take_content();
            const auto parse = decoder->take_parse();
            if (content.empty() && parse.empty()) return std::nullopt;
            std::string piece(8, '\0');
            const uint64_t content_bytes = content.size();
            std::memcpy(piece.data(), &content_bytes, 8);
            return piece.append(content).append(parse);
        },
        ahead_bytes);
}
DeflateWindows::DeflateWindows(DeflateWindows&&) noexcept = default;
DeflateWindows& DeflateWindows::operator=(DeflateWindows&&) noexcept = default;
DeflateWindows::~DeflateWindows() = default;

std::optional<std::string_view> DeflateWindows::content(uint64_t offset, uint64_t length) {
    return impl_->range(impl_->content, impl_->content_start, offset, length);
}

std::optional<std::string_view> DeflateWindows::parse(uint64_t offset, uint64_t length) {
    return impl_->range(impl_->parse, impl_->parse_start, offset, length);
}

}  // namespace strata::delta
