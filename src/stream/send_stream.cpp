#include "stream/send_stream.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "base/error.hpp"
#include "stream/protocol.hpp"

namespace strata::stream {
namespace {

// ---- The format, as the kernel defines it (fs/btrfs/send.h) ---------------------------------

constexpr uint32_t min_version = 1;
constexpr uint32_t max_version = 2;  // v3 (fs-verity) is only sent by debug kernels
constexpr size_t path_max = 4096;    // PATH_MAX, which counts the terminating NUL
constexpr size_t name_max = 255;     // one directory entry; also XATTR_NAME_MAX

// How an attribute's value is checked. Fixed-size kinds must have exactly their size, as
// btrfs-progs requires; Path values are checked by the role they play in their command.
enum class ValueKind { U8, U32, U64, Uuid, Timespec, Path, Name, Bytes };

struct AttributeInfo {
    std::string_view name;  // the kernel's BTRFS_SEND_A_* in lower case; empty: no such type
    uint32_t since_version;
    ValueKind kind;
};

// Indexed by attribute type.
constexpr std::array<AttributeInfo, 36> attribute_table{{
    {"", 0, ValueKind::Bytes},
    {"uuid", 1, ValueKind::Uuid},
    {"ctransid", 1, ValueKind::U64},
    {"ino", 1, ValueKind::U64},
    {"size", 1, ValueKind::U64},
    {"mode", 1, ValueKind::U64},
    {"uid", 1, ValueKind::U64},
    {"gid", 1, ValueKind::U64},
    {"rdev", 1, ValueKind::U64},
    {"ctime", 1, ValueKind::Timespec},
    {"mtime", 1, ValueKind::Timespec},
    {"atime", 1, ValueKind::Timespec},
    {"otime", 1, ValueKind::Timespec},
    {"xattr_name", 1, ValueKind::Name},
    {"xattr_data", 1, ValueKind::Bytes},
    {"path", 1, ValueKind::Path},
    {"path_to", 1, ValueKind::Path},
    {"path_link", 1, ValueKind::Path},
    {"file_offset", 1, ValueKind::U64},
    {"data", 1, ValueKind::Bytes},
    {"clone_uuid", 1, ValueKind::Uuid},
    {"clone_ctransid", 1, ValueKind::U64},
    {"clone_path", 1, ValueKind::Path},
    {"clone_offset", 1, ValueKind::U64},
    {"clone_len", 1, ValueKind::U64},
    {"fallocate_mode", 2, ValueKind::U32},
    {"fileattr", 2, ValueKind::U64},
    {"unencoded_file_len", 2, ValueKind::U64},
    {"unencoded_len", 2, ValueKind::U64},
    {"unencoded_offset", 2, ValueKind::U64},
    {"compression", 2, ValueKind::U32},
    {"encryption", 2, ValueKind::U32},
    {"verity_algorithm", 3, ValueKind::U8},
    {"verity_block_size", 3, ValueKind::U32},
    {"verity_salt_data", 3, ValueKind::Bytes},
    {"verity_sig_data", 3, ValueKind::Bytes},
}};

using AttrSet = uint64_t;  // bit n: attribute type n

constexpr AttrSet bit(Attr attr) { return AttrSet{1} << static_cast<unsigned>(attr); }

template <class... Attrs>
constexpr AttrSet attr_set(Attrs... attrs) {
    return (AttrSet{0} | ... | bit(attrs));
}

struct CommandInfo {
    std::string_view name;  // the kernel's BTRFS_SEND_C_* in lower case; empty: no such type
    uint32_t since_version;
    AttrSet required;  // what btrfs-progs reads for this command; it fails without them
    // An empty `path` names the subvolume's top directory: the kernel sends that for the
    // metadata of the top directory, and only with these commands.
    bool may_target_top;
};

// Indexed by command type: the one place that names the commands.
constexpr std::array<CommandInfo, 27> command_table{{
    {"", 0, 0, false},
    {"subvol", 1, attr_set(Attr::Path, Attr::Uuid, Attr::Ctransid), false},
    {"snapshot", 1,
     attr_set(Attr::Path, Attr::Uuid, Attr::Ctransid, Attr::CloneUuid, Attr::CloneCtransid), false},
    {"mkfile", 1, attr_set(Attr::Path, Attr::Ino), false},
    {"mkdir", 1, attr_set(Attr::Path, Attr::Ino), false},
    {"mknod", 1, attr_set(Attr::Path, Attr::Ino, Attr::Mode, Attr::Rdev), false},
    {"mkfifo", 1, attr_set(Attr::Path, Attr::Ino), false},
    {"mksock", 1, attr_set(Attr::Path, Attr::Ino), false},
    {"symlink", 1, attr_set(Attr::Path, Attr::Ino, Attr::PathLink), false},
    {"rename", 1, attr_set(Attr::Path, Attr::PathTo), false},
    {"link", 1, attr_set(Attr::Path, Attr::PathLink), false},
    {"unlink", 1, attr_set(Attr::Path), false},
    {"rmdir", 1, attr_set(Attr::Path), false},
    {"set_xattr", 1, attr_set(Attr::Path, Attr::XattrName, Attr::XattrData), true},
    {"remove_xattr", 1, attr_set(Attr::Path, Attr::XattrName), true},
    {"write", 1, attr_set(Attr::Path, Attr::FileOffset, Attr::Data), false},
    {"clone", 1,
     attr_set(Attr::Path, Attr::FileOffset, Attr::CloneLen, Attr::CloneUuid, Attr::CloneCtransid,
              Attr::ClonePath, Attr::CloneOffset),
     false},
    {"truncate", 1, attr_set(Attr::Path, Attr::Size), false},
    {"chmod", 1, attr_set(Attr::Path, Attr::Mode), true},
    {"chown", 1, attr_set(Attr::Path, Attr::Uid, Attr::Gid), true},
    {"utimes", 1, attr_set(Attr::Path, Attr::Atime, Attr::Mtime, Attr::Ctime), true},
    {"end", 1, 0, false},
    {"update_extent", 1, attr_set(Attr::Path, Attr::FileOffset, Attr::Size), false},
    {"fallocate", 2, attr_set(Attr::Path, Attr::FallocateMode, Attr::FileOffset, Attr::Size), false},
    {"fileattr", 2, attr_set(Attr::Path, Attr::Fileattr), true},
    {"encoded_write", 2,
     attr_set(Attr::Path, Attr::FileOffset, Attr::UnencodedFileLen, Attr::UnencodedLen,
              Attr::UnencodedOffset, Attr::Data),
     false},
    {"enable_verity", 3,
     attr_set(Attr::Path, Attr::VerityAlgorithm, Attr::VerityBlockSize, Attr::VeritySaltData,
              Attr::VeritySigData),
     false},
}};

static_assert(command_table.size() == static_cast<size_t>(Cmd::EnableVerity) + 1);
static_assert(attribute_table.size() == static_cast<size_t>(Attr::VeritySigData) + 1);
static_assert(attribute_table.size() <= 64, "AttrSet has one bit per attribute type");

// ---- Small helpers -------------------------------------------------------------------------

[[noreturn]] void reject(std::string_view reason) { throw Error("", "", reason, Fault::InvalidInput); }

[[noreturn]] void reject_value(std::string_view attribute, std::string_view value, std::string_view reason) {
    // Quote at most the start of a value: a path may be 64 KiB of garbage.
    constexpr size_t shown = 200;
    std::string quoted(value.substr(0, shown));
    if (value.size() > shown) quoted += "...";
    throw Error(attribute, quoted, reason, Fault::InvalidInput);
}

std::string_view as_text(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

Uuid as_uuid(std::span<const std::byte> bytes) {
    Uuid uuid{};
    std::transform(bytes.begin(), bytes.end(), uuid.begin(),
                   [](std::byte b) { return std::to_integer<uint8_t>(b); });
    return uuid;
}

const CommandInfo* find_command(uint16_t type) {
    if (type >= command_table.size() || command_table[type].name.empty()) return nullptr;
    return &command_table[type];
}

const AttributeInfo* find_attribute(uint16_t type) {
    if (type >= attribute_table.size() || attribute_table[type].name.empty()) return nullptr;
    return &attribute_table[type];
}

std::string_view attribute_name(Attr attr) { return attribute_table[static_cast<size_t>(attr)].name; }

// "command 17 (rename)": how every message about a command begins; index counts from 1.
std::string command_label(uint64_t index, uint16_t type) {
    std::string label = "command " + std::to_string(index);
    if (const CommandInfo* info = find_command(type)) {
        label += " (";
        label += info->name;
        label += ")";
    } else {
        label += " (type " + std::to_string(type) + ")";
    }
    return label;
}

// Runs fn and prefixes any error with the command's label; the label is only built on failure,
// as most streams have millions of commands and no error.
template <class Fn>
void within_command(uint64_t index, uint16_t type, Fn&& fn) {
    try {
        fn();
    } catch (Error& e) {
        e.within(command_label(index, type));
        throw;
    }
}

// ---- Paths ---------------------------------------------------------------------------------

// What a path attribute stands for decides what it may look like.
enum class PathRole {
    Inside,          // a file in the subvolume: relative, normalized, no way out
    InsideOrTop,     // as Inside, or empty for the subvolume's top directory
    SubvolumeName,   // the name the received subvolume gets: one path component
    SymlinkTarget,   // the content of a symlink: any text the kernel accepts
};

PathRole path_role(Cmd command, Attr attr, const CommandInfo& info) {
    if (attr == Attr::Path && (command == Cmd::Subvol || command == Cmd::Snapshot)) {
        return PathRole::SubvolumeName;
    }
    // LINK's path_link is the existing file a hard link is made to: a path inside like any other.
    if (attr == Attr::PathLink && command == Cmd::Symlink) return PathRole::SymlinkTarget;
    if (attr == Attr::Path && info.may_target_top) return PathRole::InsideOrTop;
    return PathRole::Inside;
}

// btrfs-progs cuts a value at its first NUL, so a NUL would make it apply something other than
// what was validated.
bool has_nul(std::string_view text) { return text.find('\0') != std::string_view::npos; }

std::optional<std::string_view> component_problem(std::string_view component) {
    if (component.empty()) return "empty component not allowed";
    if (component == ".") return "'.' component not allowed";
    if (component == "..") return "'..' component not allowed";
    if (component.size() > name_max) return "component longer than 255 bytes";
    return std::nullopt;
}

// A path btrfs-progs joins to the receive directory must stay below it, however it is joined.
std::optional<std::string_view> inside_path_problem(std::string_view path) {
    if (path.empty()) return "empty path not allowed";
    if (has_nul(path)) return "NUL byte not allowed";
    if (path.size() >= path_max) return "longer than 4095 bytes";
    if (path.front() == '/') return "absolute path not allowed";
    if (path.back() == '/') return "trailing '/' not allowed";
    for (size_t start = 0;;) {
        const size_t slash = path.find('/', start);
        if (auto problem = component_problem(path.substr(start, slash - start))) return problem;
        if (slash == std::string_view::npos) return std::nullopt;
        start = slash + 1;
    }
}

std::optional<std::string_view> path_problem(std::string_view path, PathRole role) {
    switch (role) {
    case PathRole::Inside: return inside_path_problem(path);
    case PathRole::InsideOrTop: return path.empty() ? std::nullopt : inside_path_problem(path);
    case PathRole::SubvolumeName:
        if (has_nul(path)) return "NUL byte not allowed";
        if (path.find('/') != std::string_view::npos) return "'/' not allowed in a subvolume name";
        return component_problem(path);
    case PathRole::SymlinkTarget:
        if (path.empty()) return "empty symlink target not allowed";
        if (has_nul(path)) return "NUL byte not allowed";
        if (path.size() >= path_max) return "longer than 4095 bytes";
        return std::nullopt;
    }
    return std::nullopt;
}

std::optional<std::string_view> xattr_name_problem(std::string_view name) {
    if (name.empty()) return "empty name not allowed";
    if (has_nul(name)) return "NUL byte not allowed";
    if (name.size() > name_max) return "longer than 255 bytes";
    return std::nullopt;
}

// ---- Attributes ----------------------------------------------------------------------------

class Attributes {
public:
    bool has(Attr attr) const { return (present_ & bit(attr)) != 0; }
    std::span<const std::byte> get(Attr attr) const { return values_[static_cast<size_t>(attr)]; }
    uint64_t get_u64(Attr attr) const { return load_le(get(attr), 0, 8); }
    AttrSet present() const { return present_; }

    void add(uint16_t type, std::span<const std::byte> value) {
        present_ |= AttrSet{1} << type;
        values_[type] = value;
    }

private:
    std::array<std::span<const std::byte>, attribute_table.size()> values_{};
    AttrSet present_ = 0;
};

// Splits a payload into its attributes, checking that each is known to this version, appears
// once and fits the command.
Attributes split_attributes(std::span<const std::byte> payload, uint32_t version) {
    Attributes attributes;
    size_t pos = 0;
    while (pos < payload.size()) {
        if (payload.size() - pos < 2) reject("attribute header cut off at the end of the command");
        const uint16_t type = load_le16(payload, pos);
        pos += 2;
        const AttributeInfo* info = find_attribute(type);
        if (!info) reject("unknown attribute type " + std::to_string(type));
        if (info->since_version > version) {
            reject("attribute '" + std::string(info->name) + "' not allowed in a version " +
                   std::to_string(version) + " stream");
        }
        size_t length = payload.size() - pos;  // v2 data: no length field, runs to the end
        if (version == 1 || type != static_cast<uint16_t>(Attr::Data)) {
            if (payload.size() - pos < 2) reject("attribute header cut off at the end of the command");
            length = load_le16(payload, pos);
            pos += 2;
        }
        if (length > payload.size() - pos) {
            reject("attribute '" + std::string(info->name) + "' runs past the end of the command");
        }
        if (attributes.present() & (AttrSet{1} << type)) {
            reject("attribute '" + std::string(info->name) + "' repeated");
        }
        attributes.add(type, payload.subspan(pos, length));
        pos += length;
    }
    return attributes;
}

size_t fixed_size(ValueKind kind) {
    switch (kind) {
    case ValueKind::U8: return 1;
    case ValueKind::U32: return 4;
    case ValueKind::U64: return 8;
    case ValueKind::Uuid: return 16;
    case ValueKind::Timespec: return 12;  // struct btrfs_timespec: le64 sec, le32 nsec
    case ValueKind::Path:
    case ValueKind::Name:
    case ValueKind::Bytes: return 0;
    }
    return 0;
}

void check_value(Cmd command, const CommandInfo& info, Attr attr, std::span<const std::byte> value) {
    const AttributeInfo& attribute = attribute_table[static_cast<size_t>(attr)];
    const size_t size = fixed_size(attribute.kind);
    if (size != 0 && value.size() != size) {
        reject_value(attribute.name, "",
                     "length " + std::to_string(value.size()) + ", expected " + std::to_string(size));
    }
    const std::string_view text = as_text(value);
    std::optional<std::string_view> problem;
    if (attribute.kind == ValueKind::Path) {
        problem = path_problem(text, path_role(command, attr, info));
    } else if (attribute.kind == ValueKind::Name) {
        problem = xattr_name_problem(text);
    }
    if (problem) reject_value(attribute.name, text, *problem);
}

void check_attributes(Cmd command, const CommandInfo& info, const Attributes& attributes) {
    for (size_t type = 1; type < attribute_table.size(); ++type) {
        const auto attr = static_cast<Attr>(type);
        if (attributes.has(attr)) check_value(command, info, attr, attributes.get(attr));
    }
    for (size_t type = 1; type < attribute_table.size(); ++type) {
        const auto attr = static_cast<Attr>(type);
        if ((info.required & bit(attr)) && !attributes.has(attr)) {
            reject("missing attribute '" + std::string(attribute_name(attr)) + "'");
        }
    }
}

// ---- Commands ------------------------------------------------------------------------------

void check_command_type(uint16_t type, uint32_t version) {
    const CommandInfo* info = find_command(type);
    if (!info) reject("unknown command type " + std::to_string(type));
    if (info->since_version > version) {
        reject("not allowed in a version " + std::to_string(version) + " stream");
    }
}

void check_payload_length(uint32_t length) {
    if (length > max_command_payload) {
        reject("length " + std::to_string(length) + " exceeds the limit of " +
               std::to_string(max_command_payload) + " bytes");
    }
}

bool starts_subvolume(Cmd command) { return command == Cmd::Subvol || command == Cmd::Snapshot; }

// One stream, one subvolume: strata receives each subvolume on its own and names it itself.
void check_position(Cmd command, uint64_t index) {
    if (index == 1 && !starts_subvolume(command)) reject("the first command must be subvol or snapshot");
    if (index > 1 && starts_subvolume(command)) {
        reject("a second subvol or snapshot command; one subvolume per stream is accepted");
    }
}

void check_crc(std::span<const std::byte> header, std::span<const std::byte> payload) {
    if (command_crc(header, payload) != load_le32(header, command_crc_offset)) reject("CRC32C mismatch");
}

void record(StreamSummary& summary, Cmd command, const Attributes& attributes) {
    if (starts_subvolume(command)) {
        summary.subvolume_name = as_text(attributes.get(Attr::Path));
        summary.subvolume = {as_uuid(attributes.get(Attr::Uuid)), attributes.get_u64(Attr::Ctransid)};
    }
    if (command == Cmd::Snapshot) {
        summary.parent = SubvolumeRef{as_uuid(attributes.get(Attr::CloneUuid)),
                                      attributes.get_u64(Attr::CloneCtransid)};
    }
    if (command == Cmd::Clone) {
        summary.clone_sources.insert(as_uuid(attributes.get(Attr::CloneUuid)));
        if (summary.clone_sources.size() > max_clone_sources) {
            reject("more than " + std::to_string(max_clone_sources) + " different clone sources");
        }
    }
}

std::optional<uint64_t> regular_file_size(int fd) {
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    return static_cast<uint64_t>(st.st_size);
}

}  // namespace

std::string format_uuid(const Uuid& uuid) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string text;
    text.reserve(36);
    for (size_t i = 0; i < uuid.size(); ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
        text += hex[uuid[i] >> 4];
        text += hex[uuid[i] & 0x0F];
    }
    return text;
}

StreamValidator::StreamValidator() { partial_.reserve(stream_header_size); }

void StreamValidator::feed(std::span<const std::byte> data) {
    if (phase_ == Phase::Failed) rethrow_failure();
    try {
        feed_unchecked(data);
    } catch (const Error& e) {
        phase_ = Phase::Failed;
        failure_ = e.what();
        throw;
    }
}

StreamSummary StreamValidator::finish() {
    if (phase_ == Phase::Failed) rethrow_failure();
    if (phase_ != Phase::Ended) {
        try {
            fail_truncated();
        } catch (const Error& e) {
            phase_ = Phase::Failed;
            failure_ = e.what();
            throw;
        }
    }
    return summary_;
}

// Cuts the input into units (the stream header, a command header, a command payload) and hands
// each over whole: straight from data when it holds the unit, through partial_ otherwise.
void StreamValidator::feed_unchecked(std::span<const std::byte> data) {
    while (!data.empty()) {
        if (phase_ == Phase::Ended) {
            reject("trailing data after command " + std::to_string(summary_.command_count) + " (end)");
        }
        if (partial_.empty() && data.size() >= unit_size_) {
            const auto unit = data.first(unit_size_);
            data = data.subspan(unit_size_);
            summary_.total_bytes += unit.size();
            on_unit(unit);
            continue;
        }
        const size_t take = std::min(unit_size_ - partial_.size(), data.size());
        partial_.insert(partial_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(take));
        data = data.subspan(take);
        summary_.total_bytes += take;
        if (partial_.size() == unit_size_) {
            on_unit(partial_);
            partial_.clear();
        }
    }
}

void StreamValidator::on_unit(std::span<const std::byte> unit) {
    switch (phase_) {
    case Phase::StreamHeader: on_stream_header(unit); break;
    case Phase::CommandHeader: on_command_header(unit); break;
    case Phase::CommandPayload: on_command_payload(unit); break;
    case Phase::Ended:
    case Phase::Failed: break;  // feed_unchecked never gets here with these
    }
}

void StreamValidator::on_stream_header(std::span<const std::byte> header) {
    if (as_text(header.first(stream_magic.size())) != stream_magic) reject("header: bad magic");
    const uint32_t version = load_le32(header, stream_magic.size());
    if (version < min_version || version > max_version) {
        reject("header: unsupported version " + std::to_string(version));
    }
    summary_.version = version;
    expect(Phase::CommandHeader, command_header_size);
}

// Checks what the header alone decides, before any of the payload is buffered.
void StreamValidator::on_command_header(std::span<const std::byte> header) {
    std::copy(header.begin(), header.end(), command_header_.begin());
    const uint32_t payload_length = load_le32(header, 0);
    command_type_ = load_le16(header, 4);
    const uint64_t index = summary_.command_count + 1;
    within_command(index, command_type_, [&] {
        check_command_type(command_type_, summary_.version);
        check_payload_length(payload_length);
        check_position(static_cast<Cmd>(command_type_), index);
    });
    expect(Phase::CommandPayload, payload_length);
    // An empty payload (END has one) is complete now; no further byte may be needed for it.
    if (payload_length == 0) on_command_payload({});
}

void StreamValidator::on_command_payload(std::span<const std::byte> payload) {
    const auto command = static_cast<Cmd>(command_type_);
    const CommandInfo& info = command_table[command_type_];
    within_command(summary_.command_count + 1, command_type_, [&] {
        check_crc(command_header_, payload);
        const Attributes attributes = split_attributes(payload, summary_.version);
        check_attributes(command, info, attributes);
        record(summary_, command, attributes);
    });
    ++summary_.command_count;
    if (command == Cmd::End) {
        expect(Phase::Ended, 0);
    } else {
        expect(Phase::CommandHeader, command_header_size);
    }
}

void StreamValidator::expect(Phase phase, size_t unit_size) {
    phase_ = phase;
    unit_size_ = unit_size;
}

void StreamValidator::fail_truncated() const {
    if (phase_ == Phase::StreamHeader) {
        reject("header: truncated stream (" + std::to_string(partial_.size()) + " of " +
               std::to_string(stream_header_size) + " bytes)");
    }
    std::string message = "truncated stream after command " + std::to_string(summary_.command_count);
    if (phase_ == Phase::CommandHeader && partial_.empty()) message += " (missing end command)";
    reject(message);
}

void StreamValidator::rethrow_failure() const { reject(failure_); }

StreamSummary validate_stream(int fd, const ProgressFn& progress) {
    const std::optional<uint64_t> total = regular_file_size(fd);
    StreamValidator validator;
    std::vector<std::byte> buffer(256 * 1024);
    for (;;) {
        const ssize_t n = read(fd, buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw Error("read send stream", "", errno);
        if (n == 0) break;
        validator.feed(std::span(buffer).first(static_cast<size_t>(n)));
        if (progress) progress(Progress{"validate", validator.bytes_fed(), total});
    }
    return validator.finish();
}

}  // namespace strata::stream
