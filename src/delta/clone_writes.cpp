#include "delta/clone_writes.hpp"

#include <linux/magic.h>
#include <sys/vfs.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "stream/protocol.hpp"

namespace strata::delta {
namespace {

using stream::Attr;
using stream::Cmd;

std::span<const std::byte> bytes_of(std::string_view s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

void put_le(std::string& out, uint64_t value, size_t width) {
    for (size_t i = 0; i < width; ++i) out += static_cast<char>(value >> (8 * i) & 0xff);
}

void put_attr(std::string& out, Attr type, std::string_view value) {
    put_le(out, static_cast<uint16_t>(type), 2);
    put_le(out, value.size(), 2);
    out += value;
}

void put_u64_attr(std::string& out, Attr type, uint64_t value) {
    std::string bytes;
    put_le(bytes, value, 8);
    put_attr(out, type, bytes);
}

// The attributes of a payload as type-length-value triples, stopping at the data attribute
// (which a write prefix ends with, without its value); nullopt when they do not parse.
struct Attribute {
    uint16_t type = 0;
    std::string_view value;
};

template <typename Visit>
bool for_each_attribute(std::string_view payload, uint32_t version, Visit visit) {
    const auto bytes = bytes_of(payload);
    size_t pos = 0;
    while (pos + 2 <= payload.size()) {
        const uint16_t type = stream::load_le16(bytes, pos);
        pos += 2;
        if (type == static_cast<uint16_t>(Attr::Data)) {
            // A write prefix: in v1 the data's length follows, in v2 the data runs to the end.
            return visit(Attribute{type, {}}) && pos + (version == 1 ? 2 : 0) == payload.size();
        }
        if (pos + 2 > payload.size()) return false;
        const size_t length = stream::load_le16(bytes, pos);
        pos += 2;
        if (length > payload.size() - pos) return false;
        if (!visit(Attribute{type, payload.substr(pos, length)})) return false;
        pos += length;
    }
    return pos == payload.size();
}

struct WriteTarget {
    std::string_view path;
    uint64_t offset = 0;
};

// data_size: a v1 prefix ends with the data's length, which must be it.
std::optional<WriteTarget> write_target(std::string_view prefix, uint32_t version, size_t data_size) {
    if (version == 1 && (prefix.size() < 2 || stream::load_le16(bytes_of(prefix), prefix.size() - 2) != data_size))
        return std::nullopt;
    std::optional<std::string_view> path;
    std::optional<uint64_t> offset;
    bool data = false;
    const bool parsed = for_each_attribute(prefix, version, [&](const Attribute& a) {
        switch (static_cast<Attr>(a.type)) {
        case Attr::Path: path = a.value; return true;
        case Attr::FileOffset:
            if (a.value.size() != 8) return false;
            offset = stream::load_le64(bytes_of(a.value), 0);
            return true;
        case Attr::Data: data = true; return true;
        default: return false;
        }
    });
    if (!parsed || !data || !path || !offset) return std::nullopt;
    return WriteTarget{*path, *offset};
}

}  // namespace

void StreamStart::feed(std::string_view bytes) {
    constexpr size_t max_start = 64u << 10;  // a snapshot command is a path and two references
    if (done_) return;
    start_.append(bytes.substr(0, std::min(bytes.size(), max_start - start_.size())));
    const auto all = bytes_of(start_);
    const auto give_up = [&] {
        done_ = true;
        start_ = {};
    };
    if (start_.size() < stream::stream_header_size) return;
    if (!std::string_view(start_).starts_with(stream::stream_magic)) return give_up();
    version_ = stream::load_le32(all, stream::stream_magic.size());
    const size_t command_at = stream::stream_header_size;
    if (start_.size() < command_at + stream::command_header_size) return;
    const uint32_t length = stream::load_le32(all, command_at);
    const uint16_t type = stream::load_le16(all, command_at + 4);
    const size_t payload_at = command_at + stream::command_header_size;
    if (payload_at + length > max_start) return give_up();
    if (start_.size() < payload_at + length) return;
    std::optional<std::string_view> uuid;
    std::optional<uint64_t> ctransid;
    const bool parsed = for_each_attribute(std::string_view(start_).substr(payload_at, length), version_, [&](const Attribute& a) {
        if (a.type == static_cast<uint16_t>(Attr::CloneUuid)) uuid = a.value;
        if (a.type == static_cast<uint16_t>(Attr::CloneCtransid) && a.value.size() == 8)
            ctransid = stream::load_le64(bytes_of(a.value), 0);
        return a.type != static_cast<uint16_t>(Attr::Data);
    });
    if (parsed && type == static_cast<uint16_t>(Cmd::Snapshot) && uuid && uuid->size() == 16 && ctransid) {
        stream::SubvolumeRef ref;
        std::memcpy(ref.uuid.data(), uuid->data(), ref.uuid.size());
        ref.ctransid = *ctransid;
        parent_ = ref;
    }
    give_up();
}

CloneWriter::CloneWriter(uint32_t version, stream::SubvolumeRef parent, uint64_t block_size, CommandSink out)
    : version_(version), parent_(parent), block_size_(block_size), out_(std::move(out)) {}

bool CloneWriter::same_block(uint64_t offset, std::string_view block, const ParentBytes& parent) const {
    if (offset < parent.offset || offset - parent.offset > parent.bytes.size()) return false;
    const auto there = parent.bytes.substr(offset - parent.offset);
    return there.size() >= block_size_ && std::memcmp(there.data(), block.data(), block_size_) == 0;
}

void CloneWriter::write(std::string_view prefix, std::string_view data, const ParentBytes& parent) {
    const auto target = write_target(prefix, version_, data.size());
    if (!target || parent.path.empty()) {
        flush();
        out_(stream::make_command(Cmd::Write, prefix, data));
        return;
    }
    const auto clones_at = [&](uint64_t at) {
        return data.size() - at >= block_size_ && (target->offset + at) % block_size_ == 0 &&
               same_block(target->offset + at, data.substr(at, block_size_), parent);
    };
    uint64_t at = 0;
    while (at < data.size()) {
        const uint64_t offset = target->offset + at;
        if (clones_at(at)) {
            if (!pending_ || pending_->path != target->path || pending_->source_path != parent.path ||
                pending_->offset + pending_->length != offset) {
                flush();
                pending_ = Clone{std::string(target->path), std::string(parent.path), offset, 0};
            }
            pending_->length += block_size_;
            at += block_size_;
            continue;
        }
        // Written: up to the next block that clones, or the end.
        uint64_t end = std::min<uint64_t>(data.size(), (offset / block_size_ + 1) * block_size_ - target->offset);
        while (end < data.size() && !clones_at(end)) end = std::min<uint64_t>(data.size(), end + block_size_);
        flush();
        put_write(target->path, offset, data.substr(at, end - at));
        at = end;
    }
}

void CloneWriter::put_write(std::string_view path, uint64_t offset, std::string_view data) {
    std::string prefix;
    put_attr(prefix, Attr::Path, path);
    put_u64_attr(prefix, Attr::FileOffset, offset);
    put_le(prefix, static_cast<uint16_t>(Attr::Data), 2);
    if (version_ == 1) put_le(prefix, data.size(), 2);
    out_(stream::make_command(Cmd::Write, prefix, data));
}

void CloneWriter::flush() {
    if (!pending_) return;
    const Clone clone = std::move(*pending_);
    pending_.reset();
    std::string payload;
    put_attr(payload, Attr::Path, clone.path);
    put_u64_attr(payload, Attr::FileOffset, clone.offset);
    put_u64_attr(payload, Attr::CloneLen, clone.length);
    put_attr(payload, Attr::CloneUuid,
             std::string_view(reinterpret_cast<const char*>(parent_.uuid.data()), parent_.uuid.size()));
    put_u64_attr(payload, Attr::CloneCtransid, parent_.ctransid);
    put_attr(payload, Attr::ClonePath, clone.source_path);
    put_u64_attr(payload, Attr::CloneOffset, clone.offset);
    out_(stream::make_command(Cmd::Clone, payload));
}

std::optional<uint64_t> clone_block_size(int fd) {
    struct statfs st {};
    if (::fstatfs(fd, &st) != 0 || st.f_type != BTRFS_SUPER_MAGIC) return std::nullopt;
    const auto size = static_cast<uint64_t>(st.f_bsize);
    if (size < 512 || size > (1u << 16) || (size & (size - 1)) != 0) return std::nullopt;
    return size;
}

}  // namespace strata::delta
