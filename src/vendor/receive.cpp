// import_stream: one pass over a send stream, each command checked before `btrfs receive` in
// staging gets it.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <set>
#include <span>
#include <string>

#include "base/ahead.hpp"
#include "base/error.hpp"
#include "base/process.hpp"
#include "pool/staging.hpp"
#include "stream/send_stream.hpp"
#include "stream/zstd.hpp"
#include "vendor/import.hpp"
#include "vendor/publish.hpp"

namespace strata::vendor {
namespace {

constexpr size_t chunk_size = size_t{1} << 20;

std::span<const std::byte> bytes(std::string_view data) { return std::as_bytes(std::span(data.data(), data.size())); }

struct Input {
    Fd fd;
    std::string label;
    std::optional<uint64_t> size;  // a regular file's, for progress
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
    if (S_ISREG(st.st_mode)) in.size = static_cast<uint64_t>(st.st_size);
    return in;
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

// What a stream may refer to, checked as the commands that name it arrive: its parent (named by
// the first command) must be in the pool, its clone sources must be itself, that parent, or
// read-only vendor trees of the pool.
class References {
public:
    explicit References(const pool::Pool& pool) : pool_(pool) {}

    void check(const stream::StreamSummary& seen) {
        if (seen.command_count == 0) return;
        if (!first_checked_) {
            first_checked_ = true;
            if (seen.parent) {
                parent_ = find_sent(pool_, seen.parent->uuid);
                if (!parent_)
                    throw Error("", "",
                                "incremental stream needs parent subvolume " + btrfs::format_uuid(seen.parent->uuid) +
                                    ", which is not in the pool: import that version first",
                                Fault::NotFound);
            }
        }
        for (const auto& source : seen.clone_sources) {
            if (!checked_sources_.insert(source).second) continue;
            const bool own = source == seen.subvolume.uuid || (seen.parent && source == seen.parent->uuid);
            if (!own && !find_sent(pool_, source))
                throw Error("", "",
                            "stream clones data from subvolume " + btrfs::format_uuid(source) +
                                ", which is not in the pool",
                            Fault::NotFound);
        }
    }

    const std::optional<pool::Subvolume>& parent() const { return parent_; }

private:
    const pool::Pool& pool_;
    bool first_checked_ = false;
    std::optional<pool::Subvolume> parent_;
    std::set<stream::Uuid> checked_sources_;
};

// One pass over the input: it is decompressed if need be, every piece goes through the
// validator, the references it revealed are checked, and only then is the piece sent to
// `btrfs receive` (confined by --chroot to a private directory in staging). So receive never gets
// a command strata has not checked whole, and nothing is spooled. A stream found invalid later
// leaves what receive made in staging, which is deleted; it never gets a name.
struct Received {
    stream::StreamSummary summary;
    std::optional<pool::Subvolume> parent;
};

// Thrown by the sink when btrfs receive stopped reading: production ends, and receive's own
// message is what the caller gets.
struct ReceiverGone {};

Received receive_checked(const pool::Pool& pool, std::string_view label, const StreamProducer& produce, const Dir& into) {
    int sockets[2];
    // A socket, not a pipe: send(MSG_NOSIGNAL) reports a dead receiver as EPIPE instead of
    // killing this process with SIGPIPE, so its error message can be read.
    check_errno(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), "create socket pair", "");
    Fd ours(sockets[0]);
    Fd theirs(sockets[1]);
    // Room for a few MiB in flight, so that producing (decompressing, rebuilding a delta's data
    // from the parent) and receiving overlap instead of taking turns at the default ~200 KiB.
    // Root may exceed net.core.wmem_max; otherwise the kernel caps the size, which only costs speed.
    const int send_buffer = 8 << 20;
    if (::setsockopt(ours.get(), SOL_SOCKET, SO_SNDBUFFORCE, &send_buffer, sizeof send_buffer) != 0)
        check_errno(::setsockopt(ours.get(), SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer),
                    "size socket buffer for", "btrfs receive");
    auto child = ChildProcess::spawn({"btrfs", "receive", "--chroot", "-e", into.path().string()}, theirs.get(), -1);
    theirs = Fd();

    stream::StreamValidator validator;
    References references(pool);
    bool receiver_gone = false;
    Received received;
    {
        // Checking the stream and handing it to btrfs receive run on a thread of their own, so
        // that producing it (decompressing, rebuilding a delta from the parent) and checking it
        // share the cores instead of taking turns; a few MiB wait at most. Declared after
        // `ours`: its thread writes to it until joined.
        const auto check_and_send = [&](std::string_view data) {
            with_context("validate stream", label, [&] { validator.feed(bytes(data)); });
            references.check(validator.seen());
            while (!data.empty()) {
                const ssize_t sent = ::send(ours.get(), data.data(), data.size(), MSG_NOSIGNAL);
                if (sent < 0 && errno == EINTR) continue;
                if (sent < 0 && errno == EPIPE) throw ReceiverGone{};
                if (sent < 0) throw_errno("write to", "btrfs receive");
                data.remove_prefix(static_cast<size_t>(sent));
            }
        };
        Behind forwarder(check_and_send, 256u << 10, 8u << 20);
        try {
            produce([&](std::string_view data) { forwarder.feed(data); });
            forwarder.finish();
            received.summary = with_context("validate stream", label, [&] { return validator.finish(); });
        } catch (const ReceiverGone&) {
            receiver_gone = true;
        }
    }
    ours = Fd();  // end of input for receive
    child.wait_checked();
    if (receiver_gone) throw Error("run", "btrfs", "receive stopped reading the stream");
    received.parent = references.parent();
    return received;
}

// A file or standard input, decompressed when it is zstd.
StreamProducer file_producer(Input& in, const ProgressFn& progress) {
    return [&in, &progress](const stream::Sink& sink) {
        std::string buffer(chunk_size, '\0');
        size_t n = read_full(in.fd.get(), buffer.data(), buffer.size(), in.label);
        const bool compressed = stream::looks_like_zstd(std::string_view(buffer.data(), n));
        stream::ZstdDecoder decoder;
        uint64_t consumed = 0;
        while (n > 0) {
            const std::string_view data(buffer.data(), n);
            if (compressed) decoder.feed(data, sink);
            else sink(data);
            consumed += n;
            if (progress) progress({"receive", consumed, in.size});
            n = read_full(in.fd.get(), buffer.data(), buffer.size(), in.label);
        }
        if (compressed) with_context("validate stream", in.label, [&] { decoder.finish(); });
    };
}

void check_received(const Dir& subvolume, const stream::StreamSummary& summary) {
    const auto info = btrfs::info(subvolume);
    if (!info.read_only() || info.received_uuid != summary.subvolume.uuid)
        throw Error("check", "received subvolume",
                    "btrfs receive did not finish it (not read-only or received_uuid not " +
                        btrfs::format_uuid(summary.subvolume.uuid) + ")");
}

ImportResult receive_and_publish(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name,
                                 std::string_view label, const StreamProducer& produce, const ImportOptions& options) {
    Received received;
    auto staged = pool.stage_created(lock, name, options.on_conflict, [&](const Dir& into) {
        received = receive_checked(pool, label, produce, into);
    });
    check_received(staged.dir(), received.summary);
    return publish_vendor_tree(pool, staged, received.parent, "stream");
}

}  // namespace

ImportResult import_stream(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name,
                           const std::filesystem::path& source, const ImportOptions& options) {
    return with_context("import", name.str(), [&] {
        require_vendor_tree(name);
        pool.require_absent(name, options.on_conflict);
        Input in = open_input(source);
        return receive_and_publish(pool, lock, name, in.label, file_producer(in, options.progress), options);
    });
}

ImportResult import_stream(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name, std::string_view label,
                           const StreamProducer& produce, const ImportOptions& options) {
    return with_context("import", name.str(), [&] {
        require_vendor_tree(name);
        pool.require_absent(name, options.on_conflict);
        return receive_and_publish(pool, lock, name, label, produce, options);
    });
}

}  // namespace strata::vendor
