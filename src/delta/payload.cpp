#include "delta/payload.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <thread>
#include <vector>

#include "base/ahead.hpp"
#include "base/error.hpp"
#include "delta/bsdiff.hpp"
#include "delta/clone_writes.hpp"
#include "delta/gzip.hpp"
#include "delta/parent_files.hpp"
#include "delta/predecessors.hpp"
#include "sign/sha256.hpp"
#include "stream/protocol.hpp"
#include "stream/zstd.hpp"

namespace strata::delta {
namespace {

using stream::Attr;
using stream::Cmd;

enum class RecordType : uint8_t { Raw = 'R', Writes = 'W', GzipFile = 'Z', Content = 'C', End = 'E' };
enum class Encoding : uint8_t { Literal = 0, Copy = 1, Bsdiff = 2, Gzip = 3, Same = 4 };
// Set on a 'W' record's encoding byte: the client keeps the group's data for later Same records.
constexpr uint8_t keep_flag = 0x80;

constexpr size_t record_header_size = 9;  // u8 type, u64 length
constexpr size_t max_write_prefix = 64u << 10;
constexpr size_t max_writes_per_group = 1u << 16;
constexpr size_t raw_batch_bytes = 1u << 20;
constexpr size_t path_max = 4096;
// A large gzip file's content travels in pieces of this size, each diffed against a window of
// max_source_bytes of its predecessor's content that starts this far before the piece.
constexpr uint64_t gzip_piece_bytes = max_source_bytes / 4 * 3;
constexpr uint64_t gzip_window_margin = max_source_bytes / 8;
// What a gzip member starts with (RFC 1952: id1, id2, deflate).
constexpr std::string_view gzip_magic = "\x1f\x8b\x08";
// A gzip member this large or larger travels with its parse ('Z') even when a 'W' group would
// hold it (Encoder::replays_better), when its parse costs at most this share of the member's
// bytes: a parse that diffs well against the predecessor's (the same text with new entries on
// top), not one of new content, which costs about as much as the member once more.
constexpr uint64_t min_replayed_gzip_bytes = 512u << 10;
constexpr uint64_t max_replayed_parse_share = 8;  // 1/8
// The predecessor's parse is cut every MiB of its content: where a window of it starts and ends.
constexpr uint64_t parse_mark_bytes = 1u << 20;
// A piece's parse: a few bytes a back-reference of at least 3 bytes of content, and block heads.
constexpr uint64_t max_parse_piece_bytes = 2 * max_group_bytes;

std::span<const std::byte> bytes_of(std::string_view s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

void put(std::string& out, uint64_t value, size_t width) {
    for (size_t i = 0; i < width; ++i) out += static_cast<char>(value >> (8 * i));
}

// Decoding errors get "decode delta payload: record N: " as they leave the decoder.
[[noreturn]] void refuse(const std::string& why) { throw Error("", "", why, Fault::InvalidInput); }

// Reads the fields of a record in order, refusing to run past its end.
class RecordReader {
public:
    explicit RecordReader(std::string_view body) : body_(body) {}
    uint64_t number(size_t width) {
        const auto b = take(width);
        return stream::load_le(bytes_of(b), 0, width);
    }
    std::string_view take(uint64_t n) {
        if (n > body_.size() - pos_) refuse("record ends early");
        const auto part = body_.substr(pos_, n);
        pos_ += n;
        return part;
    }
    uint64_t left() const { return body_.size() - pos_; }

private:
    std::string_view body_;
    size_t pos_ = 0;
};

// A parent file's path as a payload names it: relative, no '.', '..' or empty components.
void check_source_path(std::string_view path) {
    if (path.empty() || path.size() >= path_max) refuse("source path empty or too long");
    if (path.front() == '/') refuse("source path '" + std::string(path) + "' is absolute");
    size_t start = 0;
    while (start <= path.size()) {
        const auto slash = std::min(path.find('/', start), path.size());
        const auto part = path.substr(start, slash - start);
        if (part.empty() || part == "." || part == "..")
            refuse("source path '" + std::string(path) + "' has an empty, '.' or '..' component");
        if (part.find('\0') != std::string_view::npos) refuse("source path contains a NUL byte");
        start = slash + 1;
    }
}

void put_patch(std::string& body, const Patch& patch) {
    put(body, patch.controls.size(), 4);
    for (const auto& c : patch.controls) {
        put(body, c.add, 8);
        put(body, c.copy, 8);
        put(body, static_cast<uint64_t>(c.seek), 8);
    }
    body += patch.diff;
    body += patch.extra;
}

// A patch's controls and blocks as put_patch wrote them, checked against the record and the
// output they must make; the controls go into `controls`, the blocks stay in the record.
PatchView read_patch(RecordReader& r, uint64_t target_size, std::vector<Control>& controls) {
    const auto count = r.number(4);
    if (count > r.left() / 24) refuse("more patch controls than the record holds");
    controls.clear();
    uint64_t add = 0, copy = 0;
    for (uint64_t i = 0; i < count; ++i) {
        Control c{r.number(8), r.number(8), static_cast<int64_t>(r.number(8))};
        if (c.add > target_size || c.copy > target_size) refuse("patch control longer than its output");
        add += c.add, copy += c.copy;
        if (add > target_size || copy > target_size) refuse("patch controls longer than their output");
        controls.push_back(c);
    }
    const auto diff = r.take(add);
    const auto extra = r.take(copy);
    return PatchView{target_size, controls, diff, extra};
}

// ---- Reading the send stream (the publisher's own, from its own btrfs send) ------------------

struct Command {
    Cmd type{};
    std::string bytes;  // header and payload
    std::string_view payload() const { return std::string_view(bytes).substr(stream::command_header_size); }
};

class CommandFile {
public:
    CommandFile(int fd) : fd_(fd) {
        if (lseek(fd_, 0, SEEK_SET) < 0) throw_errno("seek send stream", "");
        header_ = read_exactly(stream::stream_header_size, true);
        if (header_.size() != stream::stream_header_size || !header_.starts_with(stream::stream_magic))
            throw Error("encode delta payload", "", "not a btrfs send stream", Fault::InvalidInput);
        version_ = static_cast<uint32_t>(stream::load_le32(bytes_of(header_), stream::stream_magic.size()));
    }
    const std::string& header() const { return header_; }
    uint32_t version() const { return version_; }

    std::optional<Command> next() {
        auto head = read_exactly(stream::command_header_size, true);
        if (head.empty()) return std::nullopt;
        const auto length = stream::load_le32(bytes_of(head), 0);
        Command command{static_cast<Cmd>(stream::load_le16(bytes_of(head), 4)), std::move(head)};
        command.bytes += read_exactly(length, false);
        return command;
    }

private:
    std::string read_exactly(size_t n, bool end_allowed) {
        std::string data(n, '\0');
        const size_t got = read_full(fd_, data.data(), n, "send stream");
        if (got == 0 && end_allowed) return {};
        if (got != n) throw Error("encode delta payload", "", "send stream ends inside a command", Fault::InvalidInput);
        return data;
    }
    int fd_;
    std::string header_;
    uint32_t version_ = 0;
};

// A write command as a payload rebuilds it from parts: its path, offset, data, and the bytes
// before the data. Only the kernel's layout (data last, not empty) qualifies; nullopt for
// anything else, which goes into the payload as it is.
struct WriteParts {
    std::string_view path;
    uint64_t offset = 0;
    std::string_view prefix, data;
};

std::optional<WriteParts> write_parts(const Command& command, uint32_t version) {
    const auto attrs = stream::view_attributes(command.payload(), version);
    const auto path = attrs.get(Attr::Path), offset = attrs.get(Attr::FileOffset), data = attrs.get(Attr::Data);
    if (!path || !offset || offset->size() != 8 || !data || data->empty() ||
        attrs.data_at + data->size() != command.payload().size())
        return std::nullopt;
    return WriteParts{*path, stream::load_le64(bytes_of(*offset), 0), command.payload().substr(0, attrs.data_at), *data};
}

// Files the stream creates under a temporary name ("o<ino>-<gen>-<n>") and renames later:
// their data is written under the temporary name, their predecessor is found by the final one.
bool is_orphan_name(std::string_view name) {
    if (name.size() < 6 || name[0] != 'o') return false;
    int dashes = 0;
    for (char c : name.substr(1)) {
        if (c == '-') ++dashes;
        else if (c < '0' || c > '9') return false;
    }
    return dashes == 2;
}

class FinalNames {
public:
    void learn(const Command& command, uint32_t version) {
        if (command.type != Cmd::Rename) return;
        const auto attrs = stream::view_attributes(command.payload(), version);
        const auto from = attrs.get(Attr::Path), to = attrs.get(Attr::PathTo);
        if (!from || !to) return;
        const auto slash = from->rfind('/');
        if (is_orphan_name(slash == std::string_view::npos ? *from : from->substr(slash + 1)))
            renames_.emplace(std::string(*from), std::string(*to));
    }
    // The path with every temporary directory or file name on it replaced by its final one.
    std::string resolve(std::string path) const {
        for (int round = 0; round < 64; ++round) {
            bool changed = false;
            for (size_t end = path.size(); end != std::string::npos && end > 0; end = path.rfind('/', end - 1)) {
                const auto it = renames_.find(path.substr(0, end));
                if (it != renames_.end()) {
                    path = it->second + path.substr(end);
                    changed = true;
                    break;
                }
                if (end == 0) break;
            }
            if (!changed) break;
        }
        return path;
    }

private:
    std::map<std::string, std::string> renames_;
};

// Content the stream writes as a whole file more than once (one program installed under two
// names, as git puts /usr/bin/git and /usr/lib/git-core/git; a copyright file in every package
// of a family): learned in the first pass from each run of writes that starts a file, so that
// the client keeps the first and later ones refer to it. The solid stream's compressor would find
// them only within its window, and not across the jobs its workers share (8 of the 10 MB of such
// files in bench/delta.sh's v1 -> v2 update were 16 to 30 MiB apart).
class RepeatedFiles {
public:
    void learn(const Command& command, uint32_t version) {
        const auto w = command.type == Cmd::Write ? write_parts(command, version) : std::nullopt;
        if (!w) return close();
        if (run_ && run_->path == w->path && run_->size == w->offset && w->offset + w->data.size() <= max_group_bytes) {
            run_->sha.update(w->data);
            run_->size += w->data.size();
            return;
        }
        close();
        if (w->offset != 0) return;
        run_.emplace();
        run_->path = w->path;
        run_->sha.update(w->data);
        run_->size = w->data.size();
    }
    void finish() { close(); }
    bool repeated(const std::string& digest) const {
        const auto it = counts_.find(digest);
        return it != counts_.end() && it->second > 1;
    }

private:
    void close() {
        if (run_) ++counts_[run_->sha.hex_digest()];
        run_.reset();
    }
    struct Run {
        std::string path;
        uint64_t size = 0;
        sign::Sha256 sha;
    };
    std::optional<Run> run_;
    std::map<std::string, unsigned> counts_;
};

// One run of write commands to one file at consecutive offsets.
struct Group {
    std::string path;  // as the stream names it at the time of the writes
    uint64_t offset = 0;
    std::vector<std::string> prefixes;  // each command's payload before its data value
    std::vector<uint32_t> lengths;
    std::string data;
};

class Encoder {
public:
    Encoder(const Dir& parent, const FinalNames& names, const RepeatedFiles& repeated, const Sink& out)
        : parent_(parent), files_(ParentFiles::scan(parent)), names_(names), repeated_(repeated), out_(out) {
        emit(std::string(payload_magic));
    }

    void raw(std::string_view bytes) {
        flush_group();
        pending_raw_ += bytes;
        if (pending_raw_.size() >= raw_batch_bytes) flush_raw();
    }

    void write(const Command& command, uint32_t version) {
        const auto w = write_parts(command, version);
        if (!w) {
            raw(command.bytes);
            return;
        }
        if (group_ && (group_->path != w->path || group_->offset + group_->data.size() != w->offset ||
                       group_->data.size() + w->data.size() > group_limit(*group_)))
            flush_group();
        flush_raw();
        if (!group_) group_ = Group{std::string(w->path), w->offset, {}, {}, {}};
        group_->prefixes.emplace_back(w->prefix);
        group_->lengths.push_back(static_cast<uint32_t>(w->data.size()));
        group_->data += w->data;
    }

    EncodeStats finish() {
        flush_group();
        flush_raw();
        emit_record(RecordType::End, "");
        return stats_;
    }

private:
    void emit(std::string_view bytes) {
        stats_.body_bytes += bytes.size();
        out_(bytes);
    }
    void emit_record(RecordType type, std::string_view body) {
        std::string head;
        put(head, static_cast<uint8_t>(type), 1);
        put(head, body.size(), 8);
        emit(head);
        emit(body);
    }
    void flush_raw() {
        if (pending_raw_.empty()) return;
        emit_record(RecordType::Raw, pending_raw_);
        pending_raw_.clear();
    }

    struct Range {
        std::string path;
        uint64_t offset = 0;
        std::string bytes;
        // Its bytes from a file offset on; empty outside the range.
        std::string_view from(uint64_t file_offset) const {
            if (file_offset < offset || file_offset - offset >= bytes.size()) return {};
            return std::string_view(bytes).substr(file_offset - offset);
        }
    };
    // A file that starts as a gzip member collects up to max_gzip_file_bytes of writes, so that
    // it can be rebuilt whole (encode_gzip_file); any other run of writes is cut at
    // max_group_bytes.
    static uint64_t group_limit(const Group& g) { return starts_gzip_file(g) ? max_gzip_file_bytes : max_group_bytes; }
    static bool starts_gzip_file(const Group& g) { return g.offset == 0 && g.data.starts_with(gzip_magic); }

    void flush_group() {
        if (!group_) return;
        Group g = std::move(*group_);
        group_.reset();
        if (g.data.size() <= max_group_bytes) {
            if (replays_better(g) && encode_gzip_file(g, g.data.size() / max_replayed_parse_share)) return;
            return encode_writes(std::move(g));
        }
        if (encode_gzip_file(g)) return;
        // Not a gzip file rebuilt whole: the groups of at most max_group_bytes that write()
        // would have cut.
        size_t first = 0, at = 0;
        while (first < g.lengths.size()) {
            Group part{g.path, g.offset + at, {}, {}, {}};
            size_t bytes = 0, end = first;
            while (end < g.lengths.size() && bytes + g.lengths[end] <= max_group_bytes) bytes += g.lengths[end++];
            part.prefixes.assign(g.prefixes.begin() + static_cast<ptrdiff_t>(first), g.prefixes.begin() + static_cast<ptrdiff_t>(end));
            part.lengths.assign(g.lengths.begin() + static_cast<ptrdiff_t>(first), g.lengths.begin() + static_cast<ptrdiff_t>(end));
            part.data = g.data.substr(at, bytes);
            encode_writes(std::move(part));
            first = end, at += bytes;
        }
    }

    // Whether a file small enough for a 'W' group may go as a 'Z' record instead: a gzip member
    // of min_replayed_gzip_bytes or more (a kernel's changelog: 1.1 MB, 3.2 MB of content) costs
    // the client ~0.23 s of a core to compress again with `gzip -9`, replaying its parse a few
    // milliseconds. A file the parent holds as it is stays a copy.
    bool replays_better(const Group& g) const {
        return starts_gzip_file(g) && g.data.size() >= min_replayed_gzip_bytes && !identical_file(g);
    }

    void encode_writes(Group g) {
        // The predecessor's range is read once: it decides between a copy and a patch.
        auto source = predecessor_range(names_.resolve(g.path), g);
        if (source)
            if (auto head = unchanged_head(g, *source)) encode_group(*head, source);
        encode_group(g, source);
    }

    // A group's write commands as 'W' and 'Z' records list them.
    static void put_writes(std::string& body, const Group& g) {
        put(body, g.prefixes.size(), 4);
        for (size_t i = 0; i < g.prefixes.size(); ++i) {
            put(body, g.prefixes[i].size(), 4);
            body += g.prefixes[i];
            put(body, g.lengths[i], 4);
        }
    }

    static void put_gzip_parameters(std::string& body, const GzipParameters& parameters, uint64_t content_length) {
        put(body, static_cast<uint8_t>(parameters.level), 1);
        put(body, static_cast<uint8_t>(parameters.mem_level), 1);
        put(body, parameters.header.size(), 2);
        body += parameters.header;
        put(body, content_length, 8);
    }

    // A gzip file larger than a group (an initrd): a 'Z' record, then its content in 'C' records
    // of gzip_piece_bytes, each with the parse of its piece (deflate_parse.hpp), so the client
    // rebuilds the file without compressing it again (`gzip -6` of the bench's 130 MB initrd
    // took ~5 s of one core). Content and parse are each diffed against a window of the
    // predecessor's around the same content position (an initrd of the next kernel keeps its
    // files in the same order, shifted by kilobytes, and its compressor makes the same choices
    // where the content is the same) or sent literally. With max_parse_cost, nothing is emitted
    // (false) when the content is more than one piece or its parse would cost more compressed
    // bytes than that.
    bool encode_gzip_file(const Group& g, std::optional<uint64_t> max_parse_cost = std::nullopt) {
        const auto pred = files_.predecessor(names_.resolve(g.path));
        std::optional<std::string> pred_bytes;
        if (pred && *files_.size_of(*pred) <= max_gzip_file_bytes) pred_bytes = read_parent_file(parent_, *pred, max_gzip_file_bytes);
        // The same file again (a package reinstalled): its groups are copies from the parent, which
        // cost the client a read instead of rebuilding it.
        if (pred_bytes == g.data) return false;
        const auto content = gunzip(g.data, max_gzip_content_bytes);
        if (!content) return false;
        // Checked, the file's one piece is made before anything is emitted.
        if (max_parse_cost && content->size() > gzip_piece_bytes) return false;
        const auto recorded = record_gzip(g.data, *content, gzip_piece_bytes);
        if (!recorded) return false;
        std::string source_path;
        std::optional<std::string> source_content;
        std::optional<DeflateParse> source_parse;
        if (pred_bytes) {
            source_content = gunzip(*pred_bytes, max_gzip_content_bytes);
            if (source_content) source_parse = gzip_reference_parse(*pred_bytes, parse_mark_bytes);
        }
        if (source_parse) source_path = *pred;
        // parse_cost, when given, gains what the piece's parse is estimated to cost compressed.
        const auto piece_record = [&](uint64_t at, size_t i, uint64_t* parse_cost) {
            const auto piece = std::string_view(*content).substr(at, gzip_piece_bytes);
            std::string body;
            put(body, piece.size(), 8);
            std::optional<std::pair<uint64_t, std::string_view>> window;
            if (source_parse) {
                const uint64_t size = source_content->size(), length = std::min<uint64_t>(size, max_source_bytes);
                const uint64_t window_at = std::min(at - std::min<uint64_t>(at, gzip_window_margin), size - length);
                window.emplace(window_at, std::string_view(*source_content).substr(window_at, length));
            }
            put_piece(body, piece, window);
            // The parse of the same stretch of content, and some on either side.
            const auto& parse = recorded->parse[i];
            window.reset();
            if (source_parse) {
                const auto& marks = source_parse->marks;
                const auto mark = [&](uint64_t pos) {
                    return pos / parse_mark_bytes < marks.size() ? marks[pos / parse_mark_bytes] : source_parse->bytes.size();
                };
                const uint64_t from = mark(at - std::min<uint64_t>(at, gzip_window_margin));
                const uint64_t to =
                    std::min(mark(at + gzip_piece_bytes + gzip_window_margin + parse_mark_bytes), from + max_source_bytes);
                window.emplace(from, std::string_view(source_parse->bytes).substr(from, to - from));
            }
            put(body, parse.size(), 8);
            const auto patch = put_piece(body, parse, window);
            if (parse_cost) *parse_cost += patch ? patch_cost(*patch) : estimate_.compressed_size(parse);
            return body;
        };
        std::optional<std::string> checked;
        uint64_t parse_cost = 0;
        if (max_parse_cost) {
            checked = piece_record(0, 0, &parse_cost);
            if (parse_cost > *max_parse_cost) return false;
        }
        ++stats_.groups;
        std::string head;
        put_writes(head, g);
        sign::Sha256 sha;
        sha.update(g.data);
        head += sha.hex_digest();
        put_gzip_parameters(head, recorded->parameters, content->size());
        put(head, source_path.size(), 2);
        head += source_path;
        emit_record(RecordType::GzipFile, head);
        if (checked) emit_record(RecordType::Content, *checked);
        else
            for (uint64_t at = 0, i = 0; at < content->size(); at += gzip_piece_bytes, ++i)
                emit_record(RecordType::Content, piece_record(at, i, nullptr));
        stats_.recompressed_bytes += g.data.size();
        return true;
    }

    // Bytes of a gzip file's content or parse: a patch against the window (offset, bytes) of the
    // predecessor's when one is worth it, else literal. Returns the patch, if it was one.
    std::optional<Patch> put_piece(std::string& body, std::string_view piece,
                                   const std::optional<std::pair<uint64_t, std::string_view>>& window) {
        std::optional<Patch> patch;
        if (window) patch = worthwhile_patch(window->second, piece);
        if (!patch) {
            put(body, static_cast<uint8_t>(Encoding::Literal), 1);
            body += piece;
            return patch;
        }
        put(body, static_cast<uint8_t>(Encoding::Bsdiff), 1);
        put(body, window->first, 8);
        put(body, window->second.size(), 8);
        put_patch(body, *patch);
        return patch;
    }

    // The leading writes of g that carry the parent's bytes at their own offsets (a file
    // rewritten whole with a line appended, a tail sent again), split off g as a group of their
    // own, which is then a copy; nullopt when they are fewer than min_split_bytes or all of g
    // (a copy as it is). As part of a patch they would be as many bytes of zeros in its diff
    // block, nearly free compressed but not to compress: 70 of the 76 MB of a bench/update.sh
    // delta body at level 16.
    static std::optional<Group> unchanged_head(Group& g, const Range& source) {
        constexpr size_t min_split_bytes = 256u << 10;
        const auto parent = source.from(g.offset);
        size_t count = 0, bytes = 0;
        while (count < g.lengths.size() && bytes + g.lengths[count] <= parent.size() &&
               std::string_view(g.data).substr(bytes, g.lengths[count]) == parent.substr(bytes, g.lengths[count]))
            bytes += g.lengths[count++];
        if (bytes < min_split_bytes || count == g.lengths.size()) return std::nullopt;
        Group head{g.path, g.offset, {g.prefixes.begin(), g.prefixes.begin() + static_cast<ptrdiff_t>(count)},
                   {g.lengths.begin(), g.lengths.begin() + static_cast<ptrdiff_t>(count)}, g.data.substr(0, bytes)};
        g.offset += bytes;
        g.prefixes.erase(g.prefixes.begin(), g.prefixes.begin() + static_cast<ptrdiff_t>(count));
        g.lengths.erase(g.lengths.begin(), g.lengths.begin() + static_cast<ptrdiff_t>(count));
        g.data.erase(0, bytes);
        return head;
    }

    // One 'W' record for g; source is its predecessor's range (predecessor_range), narrowed
    // when a patch from a part of it is taken.
    void encode_group(const Group& g, std::optional<Range>& source) {
        ++stats_.groups;
        std::string body;
        put_writes(body, g);
        sign::Sha256 sha;
        sha.update(g.data);
        const auto digest = sha.hex_digest();
        // A whole file the stream wrote before with the same content: the client has it kept.
        if (g.offset == 0 && kept_.contains(digest)) {
            put(body, static_cast<uint8_t>(Encoding::Same), 1);
            body += digest;
            stats_.repeated_bytes += g.data.size();
            emit_record(RecordType::Writes, body);
            return;
        }
        uint8_t keep = 0;
        if (g.offset == 0 && repeated_.repeated(digest) && kept_bytes_ + g.data.size() <= max_kept_bytes) {
            keep = keep_flag;
            kept_.insert(digest);
            kept_bytes_ += g.data.size();
        }
        const auto put_encoding = [&](Encoding encoding) {
            put(body, static_cast<uint8_t>(encoding) | keep, 1);
            body += digest;
        };
        const auto put_source = [&](Encoding encoding, const std::string& path, uint64_t offset) {
            put_encoding(encoding);
            put(body, path.size(), 2);
            body += path;
            put(body, offset, 8);
        };
        std::optional<std::pair<std::string, uint64_t>> copy;
        if (source && source->from(g.offset).substr(0, g.data.size()) == g.data)
            copy = std::pair{source->path, g.offset};
        else copy = identical_file(g);
        std::optional<std::string> gzip;
        if (!copy) gzip = gzip_encoding(g.data, source);
        std::optional<Patch> patch;
        if (!copy && !gzip && source) {
            // Writes inside a file (an edit in place, the tail a send stream carries again after
            // an append) are first held against the parent's bytes at their offset, as make_patch
            // holds them against the whole range: a patch from those spares sorting the whole
            // predecessor (for the last 1.1 MiB of an 18 MiB file, 0.8 s of a publish with 3
            // deltas, bench/update.sh).
            const auto aligned = source->from(g.offset).substr(0, g.data.size());
            if (!aligned.empty() && aligned.size() < source->bytes.size()) patch = edit_in_place(aligned, g.data);
            if (patch) source = Range{source->path, g.offset, std::string(aligned)};
            if (!patch) patch = worthwhile_patch(source->bytes, g.data);
        }
        if (copy) {
            put_source(Encoding::Copy, copy->first, copy->second);
            stats_.copied_bytes += g.data.size();
        } else if (gzip) {
            put_encoding(Encoding::Gzip);
            body += *gzip;
            stats_.recompressed_bytes += g.data.size();
        } else if (patch) {
            put_source(Encoding::Bsdiff, source->path, source->offset);
            put(body, source->bytes.size(), 8);
            put_patch(body, *patch);
            stats_.diffed_bytes += g.data.size();
        } else {
            put_encoding(Encoding::Literal);
            body += g.data;
            stats_.literal_bytes += g.data.size();
        }
        emit_record(RecordType::Writes, body);
    }

    // The predecessor's bytes, or the max_source_bytes window of them that starts at the group
    // (or ends at the file's end); nullopt without a (non-empty) predecessor.
    std::optional<Range> predecessor_range(const std::string& name, const Group& g) const {
        const auto pred = files_.predecessor(name);
        if (!pred) return std::nullopt;
        const uint64_t size = *files_.size_of(*pred);
        if (size == 0) return std::nullopt;
        const uint64_t offset = size > max_source_bytes ? std::min(g.offset, size - max_source_bytes) : 0;
        const uint64_t length = std::min(size, max_source_bytes);
        return Range{*pred, offset, read_parent_range(parent_, *pred, offset, length)};
    }

    // The gzip encoding of data that is one gzip member zlib rebuilds exactly: the parameters,
    // then the content diffed against the predecessor's content (a whole gzip file too) or as it
    // is. (The solid stream compresses content better than deflate did, while deflate's output
    // does not compress at all; zstd's fastest level, as the estimates use, would not show it.)
    std::optional<std::string> gzip_encoding(std::string_view data, const std::optional<Range>& source) {
        const auto content = gunzip(data, max_source_bytes);
        if (!content) return std::nullopt;
        const auto parameters = reproducible_gzip(data, *content);
        if (!parameters) return std::nullopt;
        std::string body;
        put_gzip_parameters(body, *parameters, content->size());
        std::optional<std::string> source_content;
        if (source && source->offset == 0 && *files_.size_of(source->path) == source->bytes.size())
            source_content = gunzip(source->bytes, max_source_bytes);
        std::optional<Patch> patch;
        if (source_content) patch = worthwhile_patch(*source_content, *content);
        if (patch) {
            put(body, static_cast<uint8_t>(Encoding::Bsdiff), 1);
            put(body, source->path.size(), 2);
            body += source->path;
            put_patch(body, *patch);
        } else {
            put(body, static_cast<uint8_t>(Encoding::Literal), 1);
            body += *content;
        }
        return body;
    }

    // A whole parent file with exactly this content, for a group that starts a file.
    std::optional<std::pair<std::string, uint64_t>> identical_file(const Group& g) const {
        if (g.offset != 0) return std::nullopt;
        constexpr size_t max_candidates = 8;
        const auto& candidates = files_.of_size(g.data.size());
        for (size_t i = 0; i < std::min(candidates.size(), max_candidates); ++i)
            if (read_parent_range(parent_, candidates[i], 0, g.data.size()) == g.data) return std::pair{candidates[i], uint64_t{0}};
        return std::nullopt;
    }

    // A patch when it is likely to compress smaller than the bytes themselves.
    std::optional<Patch> worthwhile_patch(std::string_view source, std::string_view target) {
        // Incompressible bytes (compressed or random) that share little with the source would
        // make a patch of almost only extra bytes, no smaller than the literal, and the search is
        // at its slowest there (bench/update.sh: 4 MiB of new random bytes diffed against the
        // last version's took most of a 12 s publish). Such bytes have so many distinct windows
        // that shared_content's sample is reliable; for compressible ones (code with relocated
        // addresses every few bytes) it underestimates what bsdiff finds, so they are diffed.
        // What they do share (stretches of a compressed stream that did not change) is taken
        // from the parent when it comes to enough to matter.
        const size_t literal = estimate_.compressed_size(target);
        constexpr double min_shared = 1.0 / 8;
        constexpr size_t min_kept = 64u << 10;
        if (literal * 100 >= target.size() * 97 && shared_content(source, target) < min_shared) {
            auto stretches = shared_stretches(source, target);
            if (stretches.diff.size() < min_kept) return std::nullopt;
            return stretches;
        }
        auto patch = make_patch(source, target);
        if (patch_cost(patch) >= literal) return std::nullopt;
        return patch;
    }

    // What a patch is estimated to cost in the compressed body.
    size_t patch_cost(const Patch& patch) {
        return patch.controls.size() * 24 + estimate_.compressed_size(patch.diff) + estimate_.compressed_size(patch.extra);
    }

    const Dir& parent_;
    ParentFiles files_;
    const FinalNames& names_;
    const RepeatedFiles& repeated_;
    std::set<std::string> kept_;  // digests of the groups the client keeps
    uint64_t kept_bytes_ = 0;
    const Sink& out_;
    std::string pending_raw_;
    std::optional<Group> group_;
    stream::ZstdProbe estimate_;
    EncodeStats stats_;
};

}  // namespace

EncodeStats encode_payload(int stream_fd, const Dir& parent, const Sink& out) {
    return with_context("encode delta payload", parent.path().string(), [&] {
        FinalNames names;
        RepeatedFiles repeated;
        {
            CommandFile file(stream_fd);
            while (const auto command = file.next()) {
                names.learn(*command, file.version());
                repeated.learn(*command, file.version());
            }
            repeated.finish();
        }
        CommandFile file(stream_fd);
        sign::Sha256 sha;
        uint64_t stream_bytes = file.header().size();
        sha.update(file.header());
        Encoder encoder(parent, names, repeated, out);
        encoder.raw(file.header());
        while (const auto command = file.next()) {
            sha.update(command->bytes);
            stream_bytes += command->bytes.size();
            if (command->type == Cmd::Write) encoder.write(*command, file.version());
            else encoder.raw(command->bytes);
        }
        auto stats = encoder.finish();
        stats.stream_bytes = stream_bytes;
        stats.stream_sha256 = sha.hex_digest();
        return stats;
    });
}

// ---- Decoding ------------------------------------------------------------------------------

// A write group record's fields up to the parent range its encoding reads, checked; the reader
// is left at the fields that follow (literal data or a patch).
struct GroupHead {
    std::vector<std::string_view> prefixes;
    std::vector<uint64_t> lengths;
    uint64_t total = 0;
    Encoding encoding{};
    bool keep = false;  // the client keeps the data for later Same records
    std::string_view digest;
    GzipParameters gzip;
    uint64_t content_length = 0;
    Encoding content_encoding{};
    std::string source_path;  // empty: the record reads nothing of the parent
    uint64_t source_offset = 0, source_length = 0;  // source_length 0: the whole file
};

std::string read_source_path(RecordReader& r) {
    std::string path(r.take(r.number(2)));
    check_source_path(path);
    return path;
}

// The write commands of a 'W' or 'Z' record, at most max_total bytes of data.
void read_writes(RecordReader& r, uint64_t max_total, GroupHead& g) {
    const auto count = r.number(4);
    if (count == 0 || count > max_writes_per_group) refuse("write group of " + std::to_string(count) + " commands");
    for (uint64_t i = 0; i < count; ++i) {
        const auto prefix_length = r.number(4);
        if (prefix_length > max_write_prefix) refuse("write command prefix too long");
        g.prefixes.push_back(r.take(prefix_length));
        g.lengths.push_back(r.number(4));
        if (g.lengths.back() == 0) refuse("write command without data");
        g.total += g.lengths.back();
    }
    if (g.total > max_total) refuse("write group larger than " + std::to_string(max_total) + " bytes");
}

void read_gzip_parameters(RecordReader& r, uint64_t max_content, GroupHead& g) {
    g.gzip.level = static_cast<int>(r.number(1));
    g.gzip.mem_level = static_cast<int>(r.number(1));
    g.gzip.header = r.take(r.number(2));
    g.content_length = r.number(8);
    if (g.content_length > max_content) refuse("gzip content larger than " + std::to_string(max_content) + " bytes");
}

// A 'Z' record: the write commands, their digest, the gzip parameters and the predecessor (the
// whole file) whose content the 'C' records diff against, if any.
GroupHead read_gzip_file_head(RecordReader& r) {
    GroupHead g;
    read_writes(r, max_gzip_file_bytes, g);
    g.encoding = Encoding::Gzip;
    g.digest = r.take(64);
    read_gzip_parameters(r, max_gzip_content_bytes, g);
    if (g.content_length == 0) refuse("gzip file without content");
    if (!g.gzip.replays()) refuse("gzip file record without a parse to replay");
    const auto path_length = r.number(2);
    if (path_length != 0) {
        g.source_path = r.take(path_length);
        check_source_path(g.source_path);
    }
    if (r.left() != 0) refuse("gzip file record has " + std::to_string(r.left()) + " bytes left over");
    return g;
}

GroupHead read_group_head(RecordReader& r) {
    GroupHead g;
    read_writes(r, max_group_bytes, g);
    const auto encoding = static_cast<uint8_t>(r.number(1));
    g.encoding = static_cast<Encoding>(encoding & ~keep_flag);
    g.keep = encoding & keep_flag;
    g.digest = r.take(64);
    switch (g.encoding) {
    case Encoding::Literal: break;
    case Encoding::Same:
        if (g.keep) refuse("data of an earlier group kept again");
        break;
    case Encoding::Copy:
        g.source_path = read_source_path(r);
        g.source_offset = r.number(8);
        g.source_length = g.total;
        break;
    case Encoding::Bsdiff:
        g.source_path = read_source_path(r);
        g.source_offset = r.number(8);
        g.source_length = r.number(8);
        if (g.source_length > max_source_bytes) refuse("diff source larger than " + std::to_string(max_source_bytes) + " bytes");
        break;
    case Encoding::Gzip:
        read_gzip_parameters(r, max_source_bytes, g);
        if (g.gzip.replays()) refuse("gzip group without a deflate level");
        g.content_encoding = static_cast<Encoding>(r.number(1));
        if (g.content_encoding == Encoding::Bsdiff) g.source_path = read_source_path(r);
        else if (g.content_encoding != Encoding::Literal)
            refuse("unknown gzip content encoding " + std::to_string(static_cast<unsigned>(g.content_encoding)));
        break;
    default: refuse("unknown data encoding " + std::to_string(static_cast<unsigned>(g.encoding)));
    }
    return g;
}

// The content of a gzip group that is a patch against its predecessor's content; r is at the
// patch.
std::string patched_gzip_content(const Dir& parent, const std::string& source_path, RecordReader& r,
                                 uint64_t content_length) {
    const auto source = gunzip(read_parent_file(parent, source_path, max_source_bytes), max_source_bytes);
    if (!source) throw Error("rebuild file data from", source_path, "is not a gzip file (a wrong or modified parent)");
    std::vector<Control> controls;
    const auto patch = read_patch(r, content_length, controls);
    return apply_patch(*source, patch);
}

// The gzip members of records, rebuilt by two threads of their own while the decoder works on
// the records before them: from content in the record itself, or from a patch against the
// predecessor's content (read and inflated by such a thread too). Debian compresses changelogs
// and manual pages with `gzip -9`, which is slow: rebuilt in the decoder's turn, GNU gzip took a
// fifth of the CPU of bench/delta.sh's v1 -> v2 update and held up everything after each file.
// With one thread for all of them the decoder waited longer than when it rebuilt the patched
// ones itself beside that thread.
class GzipAhead {
public:
    explicit GzipAhead(const Dir& parent) : parent_(parent) {
        for (auto& t : threads_) t = std::thread([this] { run(); });
    }
    ~GzipAhead() {
        {
            const std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& t : threads_) t.join();
    }
    GzipAhead(const GzipAhead&) = delete;
    GzipAhead& operator=(const GzipAhead&) = delete;

    // Rebuilds the member of record number `record` from its content (source_path empty) or
    // from source_path's content and the patch in `content`, unless max_waiting_bytes of content
    // wait. False when it did not take the job.
    bool want(uint64_t record, GzipParameters parameters, uint64_t content_length, std::string content,
              std::string source_path) {
        const std::lock_guard lock(mutex_);
        if (waiting_bytes_ + content_length > max_waiting_bytes) return false;
        waiting_bytes_ += content_length;
        jobs_.try_emplace(record, std::move(parameters), content_length, std::move(content), std::move(source_path));
        wake_.notify_all();
        return true;
    }

    // The member of record's content if it was wanted (waiting for it), with gzip_member's
    // errors; the jobs of earlier records are dropped.
    std::optional<std::string> take(uint64_t record) {
        std::unique_lock lock(mutex_);
        for (auto it = jobs_.begin(); it != jobs_.end() && it->first < record;) it = drop(it);
        const auto it = jobs_.find(record);
        if (it == jobs_.end()) return std::nullopt;
        wake_.wait(lock, [&] { return it->second.done; });
        auto job = std::move(it->second);
        drop(it);
        if (job.error) std::rethrow_exception(job.error);
        return std::move(job.member);
    }

private:
    static constexpr uint64_t max_waiting_bytes = 16u << 20;
    struct Job {
        Job(GzipParameters p, uint64_t length, std::string c, std::string path)
            : parameters(std::move(p)), content_bytes(length), content(std::move(c)), source_path(std::move(path)) {}
        GzipParameters parameters;
        uint64_t content_bytes;
        std::string content;      // or the patch, with a source_path
        std::string source_path;  // empty: content is the content
        bool started = false, done = false;
        std::string member;
        std::exception_ptr error;
    };
    std::map<uint64_t, Job>::iterator drop(std::map<uint64_t, Job>::iterator it) {
        waiting_bytes_ -= it->second.content_bytes;
        return jobs_.erase(it);
    }

    void run() {
        std::unique_lock lock(mutex_);
        while (true) {
            auto next = jobs_.end();
            wake_.wait(lock, [&] {
                next = std::find_if(jobs_.begin(), jobs_.end(), [](const auto& j) { return !j.second.started; });
                return stopping_ || next != jobs_.end();
            });
            if (stopping_) return;
            const uint64_t record = next->first;
            next->second.started = true;
            const auto parameters = next->second.parameters;
            const auto content_bytes = next->second.content_bytes;
            const auto content = std::move(next->second.content);
            const auto source_path = std::move(next->second.source_path);
            lock.unlock();
            std::string member;
            std::exception_ptr error;
            try {
                if (source_path.empty()) {
                    member = gzip_member(parameters, content);
                } else {
                    RecordReader r(content);
                    member = gzip_member(parameters, patched_gzip_content(parent_, source_path, r, content_bytes));
                }
            } catch (...) {
                error = std::current_exception();
            }
            lock.lock();
            // take() may have dropped the job meanwhile (the decoder went past its record).
            if (const auto it = jobs_.find(record); it != jobs_.end()) {
                it->second.member = std::move(member);
                it->second.error = error;
                it->second.done = true;
            }
            wake_.notify_all();
        }
    }

    const Dir& parent_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::map<uint64_t, Job> jobs_;
    uint64_t waiting_bytes_ = 0;
    bool stopping_ = false;
    std::array<std::thread, 2> threads_;  // last: start after the members they use exist
};

struct PayloadDecoder::State {
    Dir parent;
    Sink out;
    size_t lookahead;
    std::string buffer;
    size_t consumed = 0;  // of buffer: records before it are decoded
    size_t scanned = 0;   // of buffer: records before it have had their parent ranges read ahead
    bool magic_seen = false, ended = false;
    uint64_t records = 0, scanned_records = 0, stream_bytes = 0;
    // The stream's digest, on a thread of its own: on the decoder's, hashing a kernel update's
    // ~450 MB took a tenth of the time of applying it.
    sign::Sha256 sha;
    Behind hasher{[this](std::string_view bytes) { sha.update(bytes); }, 1u << 20, 16u << 20};
    std::optional<ParentReadahead> readahead;  // started by the first record that reads the parent
    std::optional<GzipAhead> gzip_ahead;       // started by the first gzip record

    // The gzip file a 'Z' record opened, until its 'C' records have brought all of its content.
    struct GzipFile {
        std::vector<std::string> prefixes;  // copies: the record they came in is gone by the end
        std::vector<uint64_t> lengths;
        uint64_t total = 0;
        std::string digest, source_path;
        uint64_t content_length = 0, content_received = 0, last_window_at = 0;
        std::unique_ptr<GzipBuilder> builder;
        std::optional<DeflateWindows> source;  // the predecessor's content and parse
        uint64_t last_parse_window_at = 0;
        // The member's bytes as they are made: hashed, and passed on a write command at a time.
        sign::Sha256 sha;
        uint64_t made = 0;
        size_t commands_out = 0;
        std::string partial;  // the made bytes of the next command while it is not complete
    };
    std::optional<GzipFile> gzip_file;
    std::map<std::string, std::string, std::less<>> kept;  // by digest, for Same records
    uint64_t kept_bytes = 0;

    // Clones: the parent receive would clone from, the file system's block size, and the
    // writer, once the stream's start has named that parent.
    std::optional<stream::SubvolumeRef> clone_from;
    std::optional<uint64_t> clone_block;
    StreamStart start;
    std::optional<CloneWriter> cloner;

    State(Dir parent_tree, Sink sink, size_t lookahead_bytes, std::optional<stream::SubvolumeRef> clone_parent)
        : parent(std::move(parent_tree)), out(std::move(sink)), lookahead(lookahead_bytes), clone_from(clone_parent) {
        if (clone_from) clone_block = clone_block_size(parent.fd());
    }

    // Bytes of the original stream: hashed, counted and passed on.
    void emit(std::string_view bytes) {
        account(bytes);
        out(bytes);
    }
    void account(std::string_view bytes) {
        if (!start.known()) start.feed(bytes);
        hasher.feed(bytes);
        stream_bytes += bytes.size();
    }

    CloneWriter* clone_writer() {
        if (!clone_block || !start.known() || !start.parent() || start.parent()->uuid != clone_from->uuid ||
            start.parent()->ctransid != clone_from->ctransid)
            return nullptr;
        if (!cloner) cloner.emplace(start.version(), *start.parent(), *clone_block, [this](std::string_view c) { out(c); });
        return &*cloner;
    }

    void writes(std::string_view body) {
        RecordReader r(body);
        const auto g = read_group_head(r);
        std::string data, source;
        switch (g.encoding) {
        case Encoding::Literal: data = r.take(g.total); break;
        case Encoding::Same: {
            const auto it = kept.find(g.digest);
            if (it == kept.end()) refuse("the same data as an earlier group, which was not kept");
            data = it->second;
            break;
        }
        case Encoding::Copy: data = read_parent_range(parent, g.source_path, g.source_offset, g.total); break;
        case Encoding::Bsdiff: {
            std::vector<Control> controls;
            const auto patch = read_patch(r, g.total, controls);
            source = read_parent_range(parent, g.source_path, g.source_offset, g.source_length);
            data = apply_patch(source, patch);
            break;
        }
        case Encoding::Gzip: {
            // The record is read whole either way: what is left over is refused below.
            auto ahead = gzip_ahead ? gzip_ahead->take(records) : std::nullopt;
            if (g.content_encoding == Encoding::Literal) {
                const auto content = r.take(g.content_length);
                data = ahead ? std::move(*ahead) : gzip_member(g.gzip, content);
            } else if (ahead) {
                std::vector<Control> controls;
                read_patch(r, g.content_length, controls);
                data = std::move(*ahead);
            } else {
                data = gzip_member(g.gzip, patched_gzip_content(parent, g.source_path, r, g.content_length));
            }
            break;
        }
        default: break;  // read_group_head refused it
        }
        if (r.left() != 0) refuse("write group record has " + std::to_string(r.left()) + " bytes left over");
        if (g.keep && data.size() > max_kept_bytes - kept_bytes)
            refuse("more data kept than " + std::to_string(max_kept_bytes) + " bytes");
        std::optional<ParentBytes> from;
        if (g.encoding == Encoding::Copy) from = ParentBytes{g.source_path, g.source_offset, data};
        if (g.encoding == Encoding::Bsdiff) from = ParentBytes{g.source_path, g.source_offset, source};
        emit_writes(g.prefixes, g.lengths, g.total, data, g.digest, g.source_path,
                    g.encoding != Encoding::Literal && g.encoding != Encoding::Same, from);
        if (g.keep) {
            kept_bytes += data.size();
            kept.emplace(g.digest, std::move(data));
        }
    }

    // Rebuilt data that is not what the publisher wrote: the payload's fault, or the parent's
    // when the data came from it.
    [[noreturn]] static void data_mismatch(const std::string& source_path) {
        if (source_path.empty()) refuse("literal data does not match its digest");
        throw Error("rebuild file data from", source_path, "does not match its digest (a wrong or modified parent)");
    }

    // The write commands of a group, once its data has their length and, when rebuilt, matches
    // the digest. Data the payload carries as it is (literal, or the same as such data before)
    // is not hashed again: its bytes are the payload's, which is verified before decoding and
    // whose rebuilt stream's digest covers them, like the bytes of raw records; hashing them
    // twice was a tenth of the CPU of an update.
    template <typename Prefixes>
    void emit_writes(const Prefixes& prefixes, const std::vector<uint64_t>& lengths, uint64_t total, std::string_view data,
                     std::string_view digest, const std::string& source_path, bool rebuilt = true,
                     const std::optional<ParentBytes>& from = std::nullopt) {
        if (data.size() != total) data_mismatch(source_path);
        if (rebuilt) {
            sign::Sha256 sha_data;
            sha_data.update(data);
            if (sha_data.hex_digest() != digest) data_mismatch(source_path);
        }
        CloneWriter* const clones = from ? clone_writer() : nullptr;
        uint64_t at = 0;
        for (size_t i = 0; i < prefixes.size(); ++i) {
            const auto piece = data.substr(at, lengths[i]);
            const auto command = stream::make_command(Cmd::Write, prefixes[i], piece);
            at += lengths[i];
            if (!clones) {
                emit(command);
                continue;
            }
            account(command);
            clones->write(command, *from);
        }
        if (clones) clones->flush();
    }

    void open_gzip_file(std::string_view body) {
        RecordReader r(body);
        const auto g = read_gzip_file_head(r);
        GzipFile file;
        file.prefixes.assign(g.prefixes.begin(), g.prefixes.end());
        file.lengths = g.lengths;
        file.total = g.total;
        file.digest = g.digest;
        file.source_path = g.source_path;
        file.content_length = g.content_length;
        file.builder = std::make_unique<GzipBuilder>(g.gzip);
        if (!file.source_path.empty()) {
            auto fd = std::make_shared<Fd>(open_parent_file(parent, file.source_path).first);
            file.source = open_gzip_windows(
                [fd, path = file.source_path](char* into, size_t size) { return read_full(fd->get(), into, size, path); },
                parse_mark_bytes);
            if (!file.source)
                throw Error("rebuild file data from", file.source_path, "is not a gzip file (a wrong or modified parent)");
        }
        gzip_file = std::move(file);
    }

    void gzip_content(std::string_view body) {
        if (!gzip_file) refuse("gzip content without a gzip file record");
        auto& file = *gzip_file;
        RecordReader r(body);
        const auto length = r.number(8);
        if (length == 0 || length > max_group_bytes || length > file.content_length - file.content_received)
            refuse("gzip content piece of " + std::to_string(length) + " bytes does not fit its file");
        bool patched = false;
        const auto content = gzip_piece(r, length, GzipPart::Content, patched);
        const auto parse_length = r.number(8);
        if (parse_length > max_parse_piece_bytes) refuse("gzip parse piece larger than " + std::to_string(max_parse_piece_bytes) + " bytes");
        const auto parse = gzip_piece(r, parse_length, GzipPart::Parse, patched);
        if (r.left() != 0) refuse("gzip content record has " + std::to_string(r.left()) + " bytes left over");
        try {
            file.builder->feed(content, parse);
        } catch (const Error& e) {
            // A parse that does not fit its content, when either came from the parent, is the
            // parent's fault as much as a digest that does not match.
            if (e.fault() == Fault::InvalidInput && patched) data_mismatch(file.source_path);
            throw;
        }
        file.content_received += length;
        if (file.content_received < file.content_length) {
            pass_made(file, file.builder->take());
            return;
        }
        pass_made(file, file.builder->finish());
        if (file.made != file.total || file.sha.hex_digest() != file.digest) data_mismatch(file.source_path);
        gzip_file.reset();
    }

    // Passes on the write commands that the member's newly made bytes complete, so that receive
    // works on the member while the rest of it is rebuilt, in one piece's memory. Its digest is
    // checked once it is whole; a member that fails it fails the stream, and nothing received
    // gets a name before the stream's digest is the signed one.
    void pass_made(GzipFile& file, std::string_view made) {
        // Bytes beyond the file's cannot be the file: stopped before they fill memory.
        if (made.size() > file.total - file.made) data_mismatch(file.source_path);
        file.sha.update(made);
        file.made += made.size();
        while (file.commands_out < file.lengths.size()) {
            const size_t want = file.lengths[file.commands_out] - file.partial.size();
            if (made.size() < want) {
                file.partial.append(made);
                return;
            }
            std::string_view data = made.substr(0, want);
            if (!file.partial.empty()) data = file.partial.append(data);
            emit(stream::make_command(Cmd::Write, file.prefixes[file.commands_out], data));
            made.remove_prefix(want);
            file.partial.clear();
            ++file.commands_out;
        }
    }

    // The next piece of the open gzip file's content or parse: literal, or a patch against a
    // window of the predecessor's, windows never starting before an earlier one of their kind.
    enum class GzipPart { Content, Parse };
    std::string gzip_piece(RecordReader& r, uint64_t length, GzipPart part, bool& patched) {
        auto& source = gzip_file->source;
        const std::string what = part == GzipPart::Content ? "content" : "parse";
        uint64_t& last_window_at = part == GzipPart::Content ? gzip_file->last_window_at : gzip_file->last_parse_window_at;
        const auto encoding = static_cast<Encoding>(r.number(1));
        if (encoding == Encoding::Literal) return std::string(r.take(length));
        patched = true;
        if (encoding != Encoding::Bsdiff) refuse("unknown gzip " + what + " encoding " + std::to_string(static_cast<unsigned>(encoding)));
        if (!source) refuse("gzip " + what + " patch without a source file");
        const auto window_at = r.number(8), window_length = r.number(8);
        if (window_length > max_source_bytes) refuse("diff source larger than " + std::to_string(max_source_bytes) + " bytes");
        if (window_at < last_window_at) refuse("gzip " + what + " patch reads before an earlier one");
        last_window_at = window_at;
        const auto window =
            part == GzipPart::Content ? source->content(window_at, window_length) : source->parse(window_at, window_length);
        if (!window)
            throw Error("rebuild file data from", gzip_file->source_path,
                        "has no gzip " + what + " at " + std::to_string(window_at) + "+" + std::to_string(window_length) +
                            " (a wrong or modified parent)");
        std::vector<Control> controls;
        const auto patch = read_patch(r, length, controls);
        return apply_patch(*window, patch);
    }

    void record(RecordType type, std::string_view body) {
        if (ended) refuse("data after the end record");
        ++records;
        if (readahead) readahead->reached(records);
        if (gzip_file && type != RecordType::Content) refuse("a gzip file's content ends early");
        switch (type) {
        case RecordType::Raw: emit(body); break;
        case RecordType::Writes: writes(body); break;
        case RecordType::GzipFile: open_gzip_file(body); break;
        case RecordType::Content: gzip_content(body); break;
        case RecordType::End:
            if (!body.empty()) refuse("end record with a body");
            ended = true;
            break;
        default: refuse("unknown record type " + std::to_string(static_cast<unsigned>(type)));
        }
    }

    // The complete record at `at` of the buffer: its type and body, or nullopt when more of the
    // body must arrive first.
    std::optional<std::pair<RecordType, std::string_view>> record_at(size_t at) const {
        const std::string_view rest = std::string_view(buffer).substr(at);
        if (rest.size() < record_header_size) return std::nullopt;
        const auto length = stream::load_le64(bytes_of(rest), 1);
        if (length > max_record_bytes) refuse("record " + std::to_string(records) + " is too large");
        if (rest.size() - record_header_size < length) return std::nullopt;
        return std::pair{static_cast<RecordType>(rest[0]), rest.substr(record_header_size, length)};
    }

    // Hands the parent ranges of the records received since the last scan to the readahead. A
    // record malformed here is skipped: decoding it refuses it with its number.
    void scan() {
        while (true) {
            std::optional<std::pair<RecordType, std::string_view>> next;
            try {
                next = record_at(scanned);
            } catch (const Error&) {
                return;
            }
            if (!next) return;
            scanned += record_header_size + next->second.size();
            ++scanned_records;
            if (next->first != RecordType::Writes && next->first != RecordType::GzipFile) continue;
            try {
                RecordReader r(next->second);
                auto g = next->first == RecordType::Writes ? read_group_head(r) : read_gzip_file_head(r);
                if (next->first == RecordType::Writes && g.encoding == Encoding::Gzip) {
                    if (!gzip_ahead) gzip_ahead.emplace(parent);
                    // Literal: the content; else the patch, which starts where the reader is.
                    std::string content(g.content_encoding == Encoding::Literal ? r.take(g.content_length) : r.take(r.left()));
                    // A patched one's predecessor is still read ahead, for the thread to find it cached.
                    if (gzip_ahead->want(scanned_records, std::move(g.gzip), g.content_length, std::move(content), g.source_path) &&
                        g.source_path.empty())
                        continue;
                }
                if (g.source_path.empty()) continue;
                if (!readahead) readahead.emplace(parent);
                readahead->want(scanned_records, std::move(g.source_path), g.source_offset, g.source_length);
            } catch (const Error&) {
            }
        }
    }

    // Decodes complete records while more than `keep` bytes of body wait, the record included.
    void decode(size_t keep) {
        while (buffer.size() - consumed > keep) {
            const auto next = record_at(consumed);
            if (!next) break;
            try {
                record(next->first, next->second);
            } catch (Error& e) {
                e.within("record " + std::to_string(records));
                throw;
            }
            consumed += record_header_size + next->second.size();
        }
        if (consumed > buffer.size() / 2) {
            buffer.erase(0, consumed);
            scanned -= consumed;
            consumed = 0;
        }
    }

    void parse(size_t keep) {
        if (!magic_seen) {
            if (buffer.size() < payload_magic.size()) return;
            if (!buffer.starts_with(payload_magic))
                refuse(buffer.starts_with("strata-delta ") ? "a strata delta payload of another format than this client reads"
                                                            : "not a strata delta payload (bad magic)");
            magic_seen = true;
            consumed = scanned = payload_magic.size();
        }
        scan();
        decode(keep);
    }
};

PayloadDecoder::PayloadDecoder(Dir parent, Sink out, size_t lookahead, std::optional<stream::SubvolumeRef> clone_from)
    : state_(std::make_unique<State>(std::move(parent), std::move(out), lookahead, clone_from)) {}
PayloadDecoder::~PayloadDecoder() = default;

void PayloadDecoder::feed(std::string_view body) {
    with_context("decode delta payload", "", [&] {
        if (state_->ended && !body.empty()) refuse("data after the end record");
        state_->buffer += body;
        state_->parse(state_->lookahead);
    });
}

DecodeResult PayloadDecoder::finish() {
    return with_context("decode delta payload", "", [&] {
        state_->parse(0);
        if (state_->gzip_file) refuse("payload ends inside a gzip file's content");
        if (!state_->ended) refuse("payload ends before its end record");
        if (state_->consumed != state_->buffer.size()) refuse("data after the end record");
        state_->hasher.finish();
        return DecodeResult{state_->stream_bytes, state_->sha.hex_digest()};
    });
}

}  // namespace strata::delta
