#include "vendor/export.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "base/error.hpp"
#include "base/process.hpp"
#include "stream/zstd.hpp"

namespace strata::vendor {
namespace {

constexpr size_t chunk_size = size_t{1} << 20;

pool::Subvolume find_read_only(const pool::Pool& pool, std::string_view name) {
    auto s = pool.find(name);
    if (!s) {
        naming::Name::parse(name);  // a typo gets the parser's explanation
        throw Error("find", name, "no such subvolume in the pool", Fault::NotFound);
    }
    if (!s->info.read_only())
        throw Error("", "", "'" + s->name + "' is not read-only: only vendor trees can be sent", Fault::InvalidInput);
    return *s;
}

// An incremental stream applies only where the receiver holds the parent, and is small only when
// the tree shares extents with it: both hold for the tree's own snapshot ancestry.
void require_ancestor(const pool::Pool& pool, const pool::Subvolume& tree, const pool::Subvolume& parent) {
    const auto all = pool.list();
    btrfs::Uuid next = tree.info.parent_uuid;
    for (size_t hops = 0; hops <= all.size() && !btrfs::is_null(next); ++hops) {
        if (next == parent.info.uuid) return;
        const auto it = std::find_if(all.begin(), all.end(), [&](const auto& s) { return s.info.uuid == next; });
        if (it == all.end()) break;
        next = it->info.parent_uuid;
    }
    throw Error("", "",
                "'" + parent.name + "' is not an ancestor of '" + tree.name +
                    "' in this pool (it was not built on it); export without --parent",
                Fault::InvalidInput);
}

}  // namespace

ExportResult export_stream(const pool::Pool& pool, std::string_view name, const ExportOptions& options, int out_fd) {
    return with_context("export", name, [&] {
        const auto tree = find_read_only(pool, name);
        std::vector<std::string> argv = {"btrfs", "send", "-q"};
        std::optional<pool::Subvolume> parent;
        if (options.parent) {
            parent = with_context("parent", *options.parent, [&] { return find_read_only(pool, *options.parent); });
            require_ancestor(pool, tree, *parent);
            argv.insert(argv.end(), {"-p", pool.top().path_of(parent->name).string()});
        }
        argv.push_back(pool.top().path_of(tree.name).string());

        int fds[2];
        check_errno(::pipe2(fds, O_CLOEXEC), "create pipe", "");
        Fd from_send(fds[0]);
        Fd to_us(fds[1]);
        auto child = ChildProcess::spawn(argv, -1, to_us.get());
        to_us = Fd();

        ExportResult result{tree.name, parent ? std::optional(parent->name) : std::nullopt, 0};
        auto write_out = [&](std::string_view data) {
            write_all(out_fd, data, "stream output");
            if (options.observe_output) options.observe_output(data);
            result.bytes += data.size();
        };
        std::optional<stream::ZstdEncoder> encoder;
        if (options.compression == Compression::Zstd) encoder.emplace();
        std::string buffer(chunk_size, '\0');
        uint64_t sent = 0;
        while (const size_t n = read_full(from_send.get(), buffer.data(), buffer.size(), "btrfs send")) {
            const std::string_view data(buffer.data(), n);
            if (encoder) encoder->feed(data, write_out);
            else write_out(data);
            sent += n;
            if (options.progress) options.progress({"send", sent, std::nullopt});
        }
        child.wait_checked();
        if (encoder) encoder->finish(write_out);
        result.stream_bytes = sent;
        return result;
    });
}

ExportResult export_stream_to_file(const pool::Pool& pool, std::string_view name, const ExportOptions& options,
                                   const std::filesystem::path& file) {
    const auto parent = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
    const Dir dir = Dir::open(parent);
    AtomicFile out(dir, file.filename().string());
    auto result = export_stream(pool, name, options, out.fd());
    out.commit();
    return result;
}

}  // namespace strata::vendor
