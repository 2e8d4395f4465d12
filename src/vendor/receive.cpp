// import_stream: validate the whole send stream, then let `btrfs receive` apply it in staging.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/process.hpp"
#include "pool/staging.hpp"
#include "stream/send_stream.hpp"
#include "vendor/import.hpp"
#include "vendor/publish.hpp"
#include "vendor/zstd.hpp"

namespace strata::vendor {
namespace {

constexpr size_t chunk_size = size_t{1} << 20;

std::span<const std::byte> bytes(std::string_view data) { return std::as_bytes(std::span(data.data(), data.size())); }

struct Input {
    Fd fd;
    std::string label;
    bool seekable = false;          // a regular file: it can be read a second time
    bool root_only = false;         // ... which nobody but root can change
    std::optional<uint64_t> size;
};

Input open_input(const std::filesystem::path& source) {
    Input in;
    if (source == "-") {
        in.fd = Fd(::fcntl(0, F_DUPFD_CLOEXEC, 3));
        in.label = "standard input";
    } else {
        in.fd = Fd(::open(source.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
        in.label = source.string();
    }
    if (!in.fd) throw Error("open", in.label, errno, errno == ENOENT ? Fault::NotFound : Fault::Failed);
    struct stat st {};
    check_errno(::fstat(in.fd.get(), &st), "stat", in.label);
    if (S_ISDIR(st.st_mode)) throw Error("read", in.label, "is a directory", Fault::InvalidInput);
    in.seekable = S_ISREG(st.st_mode);
    in.root_only = in.seekable && st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
    if (in.seekable) in.size = static_cast<uint64_t>(st.st_size);
    return in;
}

// The stream as validated, ready to be read again from offset 0 of `data`.
struct Validated {
    Fd spool;                 // set when the input had to be copied (pipe, compressed)
    int data = -1;            // the input itself or the spool
    bool unchangeable = false;  // nobody else can change data: our spool or a root-only file
    stream::StreamSummary summary;
};

// First pass: every byte goes through the validator; nothing reaches btrfs receive yet.
Validated validate_input(const pool::Pool& pool, const pool::Lock& lock, Input& in, const ProgressFn& progress) {
    std::string buffer(chunk_size, '\0');
    size_t n = read_full(in.fd.get(), buffer.data(), buffer.size(), in.label);
    const bool compressed = looks_like_zstd(std::string_view(buffer.data(), n));
    Validated v;
    if (!in.seekable || compressed) v.spool = pool.spool_file(lock);
    v.data = v.spool ? v.spool.get() : in.fd.get();
    v.unchangeable = v.spool || in.root_only;

    stream::StreamValidator validator;
    ZstdDecoder decoder;
    auto accept = [&](std::string_view data) {
        validator.feed(bytes(data));
        if (v.spool) write_all(v.spool.get(), data, "spool file in staging");
    };
    uint64_t consumed = 0;
    while (n > 0) {
        const std::string_view data(buffer.data(), n);
        if (compressed) decoder.feed(data, accept);
        else accept(data);
        consumed += n;
        if (progress) progress({"validate", consumed, in.size});
        n = read_full(in.fd.get(), buffer.data(), buffer.size(), in.label);
    }
    if (compressed) decoder.finish();
    v.summary = validator.finish();
    return v;
}

// As btrfs receive looks them up: a subvolume received from the one the stream names, else that
// subvolume itself (a stream made on this very pool). Only read-only vendor trees qualify: a
// stream may not take data from writable state such as a home.
std::optional<pool::Subvolume> find_sent(const pool::Pool& pool, const btrfs::Uuid& uuid) {
    auto found = pool.find_by_received_uuid(uuid);
    if (!found) found = pool.find_by_uuid(uuid);
    if (found && (!found->info.read_only() || !found->typed || !found->typed->is_vendor_tree()))
        throw Error("", "",
                    "the stream refers to '" + found->name + "', which is not a read-only vendor tree",
                    Fault::InvalidInput);
    return found;
}

std::optional<pool::Subvolume> find_parent(const pool::Pool& pool, const stream::StreamSummary& summary) {
    for (const auto& source : summary.clone_sources) {
        const bool own = source == summary.subvolume.uuid || (summary.parent && source == summary.parent->uuid);
        if (!own && !find_sent(pool, source))
            throw Error("", "",
                        "stream clones data from subvolume " + btrfs::format_uuid(source) + ", which is not in the pool",
                        Fault::NotFound);
    }
    if (!summary.parent) return std::nullopt;
    auto parent = find_sent(pool, summary.parent->uuid);
    if (!parent)
        throw Error("", "",
                    "incremental stream needs parent subvolume " + btrfs::format_uuid(summary.parent->uuid) +
                        ", which is not in the pool: import that version first",
                    Fault::NotFound);
    return parent;
}

// Where btrfs receive is in the stream: the offset of its standard input.
std::optional<uint64_t> input_position(pid_t pid) {
    std::ifstream info("/proc/" + std::to_string(pid) + "/fdinfo/0");
    std::string key;
    uint64_t value = 0;
    while (info >> key >> value)
        if (key == "pos:") return value;
    return std::nullopt;
}

// Second pass, for data nobody else can change: btrfs receive reads the validated file itself
// (no copy through strata), confined by --chroot to a private directory in staging.
void apply_unchangeable(const Validated& v, const Dir& into, const ProgressFn& progress) {
    check_errno(static_cast<int>(::lseek(v.data, 0, SEEK_SET)), "rewind", "validated stream");
    auto child = ChildProcess::spawn({"btrfs", "receive", "--chroot", "-e", into.path().string()}, v.data, -1);
    while (!child.try_wait(std::chrono::milliseconds(200)))
        if (progress)
            if (const auto pos = input_position(child.pid())) progress({"receive", *pos, v.summary.total_bytes});
    child.wait_checked();
}

// Second pass, for a file others could write to meanwhile: the bytes are fed to btrfs receive
// through a validator again, so a change between the passes is caught; what was received then
// stays in staging and is deleted.
void apply_revalidated(const Validated& v, const Dir& into, const ProgressFn& progress) {
    int sockets[2];
    // A socket, not a pipe: send(MSG_NOSIGNAL) reports a dead receiver as EPIPE instead of
    // killing this process with SIGPIPE, so its error message can be read.
    check_errno(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), "create socket pair", "");
    Fd ours(sockets[0]);
    Fd theirs(sockets[1]);
    auto child = ChildProcess::spawn({"btrfs", "receive", "--chroot", "-e", into.path().string()}, theirs.get(), -1);
    theirs = Fd();

    stream::StreamValidator validator;
    std::string buffer(chunk_size, '\0');
    uint64_t offset = 0;
    bool receiver_gone = false;
    for (;;) {
        const ssize_t n = ::pread(v.data, buffer.data(), buffer.size(), static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("read", "validated stream");
        }
        if (n == 0) break;
        std::string_view data(buffer.data(), static_cast<size_t>(n));
        validator.feed(bytes(data));
        while (!data.empty() && !receiver_gone) {
            const ssize_t sent = ::send(ours.get(), data.data(), data.size(), MSG_NOSIGNAL);
            if (sent < 0 && errno == EINTR) continue;
            if (sent < 0 && errno == EPIPE) receiver_gone = true;
            else if (sent < 0) throw_errno("write to", "btrfs receive");
            else data.remove_prefix(static_cast<size_t>(sent));
        }
        if (receiver_gone) break;
        offset += static_cast<uint64_t>(n);
        if (progress) progress({"receive", offset, v.summary.total_bytes});
    }
    ours = Fd();
    child.wait_checked();
    if (receiver_gone) throw Error("run", "btrfs", "receive stopped reading the stream");
    const auto again = validator.finish();
    if (again.total_bytes != v.summary.total_bytes || again.command_count != v.summary.command_count ||
        again.subvolume.uuid != v.summary.subvolume.uuid)
        throw Error("read", "stream", "the input changed while it was being imported", Fault::InvalidInput);
}

void check_received(const Dir& subvolume, const stream::StreamSummary& summary) {
    const auto info = btrfs::info(subvolume);
    if (!info.read_only() || info.received_uuid != summary.subvolume.uuid)
        throw Error("check", "received subvolume",
                    "btrfs receive did not finish it (not read-only or received_uuid not " +
                        btrfs::format_uuid(summary.subvolume.uuid) + ")");
}

}  // namespace

ImportResult import_stream(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name,
                           const std::filesystem::path& source, const ImportOptions& options) {
    return with_context("import", name.str(), [&] {
        require_vendor_tree(name);
        pool.require_absent(name, options.on_conflict);
        Input in = open_input(source);
        const Validated v = with_context("validate stream", in.label, [&] {
            return validate_input(pool, lock, in, options.progress);
        });
        const auto parent = find_parent(pool, v.summary);
        auto staged = pool.stage_created(lock, name, options.on_conflict, [&](const Dir& into) {
            if (v.unchangeable) apply_unchangeable(v, into, options.progress);
            else apply_revalidated(v, into, options.progress);
        });
        check_received(staged.dir(), v.summary);
        return publish_vendor_tree(pool, staged, parent, "stream");
    });
}

}  // namespace strata::vendor
