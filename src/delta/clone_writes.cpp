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

// The destination of a write command as the kernel lays it out (path, offset, data last).
struct WriteTarget {
    std::string_view path;
    uint64_t offset = 0;
    std::string_view data;
};

std::optional<WriteTarget> write_target(std::string_view command, uint32_t version) {
    if (command.size() < stream::command_header_size ||
        stream::load_le16(std::as_bytes(std::span(command.data(), command.size())), 4) != static_cast<uint16_t>(Cmd::Write))
        return std::nullopt;
    const auto payload = command.substr(stream::command_header_size);
    const auto attrs = stream::view_attributes(payload, version);
    const auto path = attrs.get(Attr::Path), data = attrs.get(Attr::Data);
    const auto offset = attrs.get_u64(Attr::FileOffset);
    if (!attrs.whole || attrs.values.size() != 3 || !path || !offset || !data || attrs.data_at + data->size() != payload.size())
        return std::nullopt;
    return WriteTarget{*path, *offset, *data};
}

}  // namespace

void StreamStart::feed(std::string_view bytes) {
    constexpr size_t max_start = 64u << 10;  // a snapshot command is a path and two references
    if (done_) return;
    start_.append(bytes.substr(0, std::min(bytes.size(), max_start - start_.size())));
    const auto all = std::as_bytes(std::span(start_.data(), start_.size()));
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
    const auto attrs = stream::view_attributes(std::string_view(start_).substr(payload_at, length), version_);
    const auto uuid = attrs.get(Attr::CloneUuid);
    const auto ctransid = attrs.get_u64(Attr::CloneCtransid);
    if (attrs.whole && type == static_cast<uint16_t>(Cmd::Snapshot) && uuid && uuid->size() == 16 && ctransid) {
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

void CloneWriter::write(std::string_view command, const ParentBytes& parent) {
    const auto target = write_target(command, version_);
    if (!target || parent.path.empty()) {
        flush();
        out_(command);
        return;
    }
    const auto data = target->data;
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
        // No block of it clones (most writes of a rebuilt file): the command as it came.
        if (at == 0 && end == data.size()) out_(command);
        else put_write(target->path, offset, data.substr(at, end - at));
        at = end;
    }
}

void CloneWriter::put_write(std::string_view path, uint64_t offset, std::string_view data) {
    std::string prefix;
    stream::put_attribute(prefix, Attr::Path, path);
    stream::put_attribute(prefix, Attr::FileOffset, offset);
    stream::put_data_head(prefix, data.size(), version_);
    out_(stream::make_command(Cmd::Write, prefix, data));
}

void CloneWriter::flush() {
    if (!pending_) return;
    const Clone clone = std::move(*pending_);
    pending_.reset();
    std::string payload;
    stream::put_attribute(payload, Attr::Path, clone.path);
    stream::put_attribute(payload, Attr::FileOffset, clone.offset);
    stream::put_attribute(payload, Attr::CloneLen, clone.length);
    stream::put_attribute(payload, Attr::CloneUuid,
                          std::string_view(reinterpret_cast<const char*>(parent_.uuid.data()), parent_.uuid.size()));
    stream::put_attribute(payload, Attr::CloneCtransid, parent_.ctransid);
    stream::put_attribute(payload, Attr::ClonePath, clone.source_path);
    stream::put_attribute(payload, Attr::CloneOffset, clone.offset);
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
