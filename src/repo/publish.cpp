#include "repo/publish.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <ctime>
#include <exception>
#include <mutex>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "base/error.hpp"
#include "base/escape.hpp"
#include "base/lock.hpp"
#include "delta/payload.hpp"
#include "naming/version.hpp"
#include "sign/sha256.hpp"
#include "stream/zstd.hpp"
#include "vendor/export.hpp"

namespace strata::repo {
namespace {

constexpr std::string_view lock_file = ".strata-publish.lock";
constexpr std::string_view pending_index = "index.json.new";
constexpr std::string_view pending_signature = "index.json.minisig.new";
// AtomicFile's temporaries (".#<name>.<random>"), left behind only by a killed publisher.
constexpr std::string_view temp_prefix = ".#";
// Delta payloads: the digest of every 8 MiB part is in the index (a client resumes and checks
// part by part); the body is compressed as one solid zstd stream with a 32 MiB window (what
// clients decode, delta/payload.hpp's bounds) at options.delta_level; the encoder's own reading
// of the tree is cheap next to it, so two workers compress, in jobs of 40 MiB that start with 4
// MiB of history: zstd's default (128 MiB jobs with 16 MiB) left one worker alone with most of a
// 170 MB body, indexed much history again, and its frames came out larger (bench/delta.sh's
// bodies through zstd's command line, 2 threads: v1 -> v2 28.81 MB in 22.8 s at the default,
// 28.20 MB in 20.6 s so; v2 -> v3 20.25 MB in 10.2 s, 20.20 MB in 8.6 s with 40 MiB jobs).
constexpr uint64_t delta_part_bytes = 8u << 20;
constexpr int delta_zstd_window_log = 25;
constexpr int delta_zstd_workers = 2;
constexpr stream::ZstdJobs delta_zstd_jobs{40u << 20, 6};
// At the default level (16, zstd's first optimal parser: 2^5 candidates per position, matches
// from 5 bytes), a search of 2^3 candidates for matches from 3 bytes is both faster and smaller
// on delta bodies, whose diff blocks are short runs between long matches: bench/delta.sh's v1 ->
// v2 body 28.17 -> 28.01 MB with 40.0 -> 31.5 s of CPU, v2 -> v3 20.20 -> 20.35 MB with 16.2 ->
// 12.5 s (zstd's command line, 2 threads, these jobs). Other levels are zstd's own.
constexpr stream::ZstdSearch default_level_search{3, 3};

std::string in_quotes(std::string_view s) { return "'" + escape(s) + "'"; }

std::string now_rfc3339() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string uuid_text(const btrfs::Uuid& uuid) { return btrfs::is_null(uuid) ? "" : btrfs::format_uuid(uuid); }

// Payload file names: the tree name with ':' as '_' (':' would read as a URL scheme in a relative
// reference and is refused by some object stores). Not injective in theory (ids and versions may
// hold '_'), so publish refuses a name another entry owns instead of trusting the mapping.
std::string file_stem(const naming::Name& name) {
    std::string s = name.str();
    std::replace(s.begin(), s.end(), ':', '_');
    return s;
}

std::string payload_file(const naming::Name& tree, const std::optional<pool::Subvolume>& parent, std::string_view kind) {
    std::string base = file_stem(tree);
    if (!parent) return base + ".full.zst";
    const auto& p = *parent->typed;
    return base + ".from-" + (naming::same_series(p, tree) ? std::string(p.version()) : file_stem(p)) +
           (kind == delta_kind ? ".sdelta.zst" : ".zst");
}

std::string relative(std::string_view file) { return std::string(payload_dir) + "/" + std::string(file); }
std::string_view base_name(std::string_view relative_file) { return relative_file.substr(payload_dir.size() + 1); }

// ---- the pool side: everything is checked before the repository is touched ----

pool::Subvolume find_vendor_tree(const pool::Pool& pool, std::string_view text) {
    const auto name = naming::Name::parse(text);  // a typo gets the parser's explanation
    auto s = pool.find(text);
    if (!s) throw Error("find", text, "no such subvolume in the pool", Fault::NotFound);
    if (!name.is_vendor_tree())
        throw Error("", "",
                    in_quotes(text) + " is not a vendor tree: only usr, runtime, framework and app trees are published",
                    Fault::InvalidInput);
    if (!s->info.read_only())
        throw Error("", "", in_quotes(text) + " is not read-only: only vendor trees can be published", Fault::InvalidInput);
    return *s;
}

// The same rule as export --parent: only the tree's own snapshot ancestry makes a delta that is
// small and applies where the receiver has the parent.
bool is_ancestor(const std::vector<pool::Subvolume>& all, const pool::Subvolume& tree, const pool::Subvolume& parent) {
    btrfs::Uuid next = tree.info.parent_uuid;
    for (size_t hops = 0; hops <= all.size() && !btrfs::is_null(next); ++hops) {
        if (next == parent.info.uuid) return true;
        const auto it = std::find_if(all.begin(), all.end(), [&](const auto& s) { return s.info.uuid == next; });
        if (it == all.end()) break;
        next = it->info.parent_uuid;
    }
    return false;
}

std::vector<pool::Subvolume> resolve_parents(const pool::Pool& pool, const pool::Subvolume& tree,
                                             const PublishOptions& options) {
    const auto all = pool.list();
    std::vector<pool::Subvolume> parents;
    auto add = [&](const pool::Subvolume& p) {
        if (std::none_of(parents.begin(), parents.end(), [&](const auto& q) { return q.info.uuid == p.info.uuid; }))
            parents.push_back(p);
    };
    for (const auto& name : options.parents) {
        const auto p = with_context("parent", name, [&] { return find_vendor_tree(pool, name); });
        if (!is_ancestor(all, tree, p))
            throw Error("", "",
                        in_quotes(p.name) + " is not an ancestor of " + in_quotes(tree.name) +
                            " in this pool (it was not built on it), so a delta from it would not apply; "
                            "publish without it",
                        Fault::InvalidInput);
        add(p);
    }
    if (options.deltas_from > 0) {
        // list() is in list order: the newest older versions of the series come last.
        std::vector<pool::Subvolume> older;
        for (const auto& s : all)
            if (s.typed && s.typed->is_vendor_tree() && s.info.read_only() && naming::same_series(*s.typed, *tree.typed) &&
                naming::compare_versions(s.typed->version(), tree.typed->version()) < 0 && is_ancestor(all, tree, s))
                older.push_back(s);
        const size_t n = std::min<size_t>(options.deltas_from, older.size());
        for (size_t i = 0; i < n; ++i) add(older[older.size() - 1 - i]);
    }
    return parents;
}

// ---- the repository side ----

Dir open_repository(const std::filesystem::path& repo_dir) {
    std::error_code ec;
    std::filesystem::create_directory(repo_dir, ec);
    if (ec) throw Error("create directory", repo_dir.string(), ec.value());
    return Dir::open(repo_dir);
}

std::string verify_failure_hint(std::span<const sign::PublicKey> keys) {
    std::string ids;
    for (const auto& k : keys) ids += (ids.empty() ? "" : ", ") + sign::format_key_id(k.id);
    return "it must verify with key " + ids + " (a repository signed by another key is not overwritten)";
}

// index.json after checking index.json.minisig against keys and that the signed serial is the
// index's own. nullopt when the directory has neither file.
std::optional<Index> read_signed_index(const Dir& repo, std::span<const sign::PublicKey> keys) {
    const bool has_index = repo.stat(index_file).has_value();
    const bool has_signature = repo.stat(signature_file).has_value();
    if (!has_index && !has_signature) return std::nullopt;
    if (!has_index)
        throw Error("read index", repo.path_of(index_file).string(), "missing, but index.json.minisig is there",
                    Fault::InvalidInput);
    if (!has_signature)
        throw Error("read index", repo.path_of(index_file).string(),
                    "not signed: index.json.minisig is missing", Fault::InvalidInput);
    const auto text = read_file(repo, index_file);
    const auto signature = read_file(repo, signature_file);
    sign::Verified verified;
    try {
        verified = sign::verify(keys, text, signature);
    } catch (const Error& e) {
        throw Error("verify index", repo.path_of(index_file).string(),
                    std::string(e.what()) + "; " + verify_failure_hint(keys), Fault::InvalidInput);
    }
    auto index = with_context("read index", repo.path_of(index_file).string(), [&] { return parse_index(text); });
    const auto serial = serial_of_trusted_comment(verified.trusted_comment);
    if (serial != index.serial)
        throw Error("verify index", repo.path_of(index_file).string(),
                    "the signed serial (" + (serial ? std::to_string(*serial) : std::string("none")) +
                        ") is not the index's serial " + std::to_string(index.serial),
                    Fault::InvalidInput);
    return index;
}

// A publisher killed between renaming the signature and the index into place left
// index.json.new, which verifies with the signature in place: finish its publication. Anything
// else pending is left for discard_leftovers(), once the repository is known to be ours.
void finish_pending(const Dir& repo, std::span<const sign::PublicKey> keys) {
    if (!repo.stat(pending_index) || !repo.stat(signature_file)) return;
    try {
        sign::verify(keys, read_file(repo, pending_index), read_file(repo, signature_file));
    } catch (const Error&) {
        return;  // the signature in place is the old one: the pending index was never published
    }
    repo.rename(pending_index, repo, index_file, /*no_replace=*/false);
    repo.sync();
}

// Pending files that never got published and AtomicFile temporaries of a killed publisher. Runs
// under the repository lock, so nobody else is writing them.
void discard_leftovers(const Dir& repo) {
    for (const auto name : {pending_index, pending_signature})
        if (repo.stat(name)) repo.unlink(name);
    auto drop_temps = [](const Dir& dir) {
        for (const auto& e : dir.entries())
            if (e.starts_with(temp_prefix)) dir.unlink(e);
    };
    drop_temps(repo);
    if (auto payloads = repo.try_open_dir(payload_dir)) drop_temps(*payloads);
}

// Payload files created by this publish, removed again unless the index that names them is
// committed: a failed publish leaves no new files behind.
class NewFiles {
public:
    explicit NewFiles(const Dir& dir) : dir_(dir) {}
    NewFiles(const NewFiles&) = delete;
    NewFiles& operator=(const NewFiles&) = delete;
    ~NewFiles() {
        if (committed_) return;
        for (const auto& f : files_) ::unlinkat(dir_.fd(), f.c_str(), 0);
    }
    void add(std::string file) {
        const std::lock_guard lock(mutex_);
        files_.push_back(std::move(file));
    }
    void commit() { committed_ = true; }

private:
    const Dir& dir_;
    std::mutex mutex_;  // payloads are written by two threads
    std::vector<std::string> files_;
    bool committed_ = false;
};

std::string sha256_of(const Dir& dir, std::string_view file) {
    const Fd fd = dir.open_file(file, O_RDONLY | O_NOFOLLOW);
    return sign::sha256_of_fd(fd.get(), dir.path_of(file).string());
}

// A payload that is there as the index records it: a regular file of the recorded size and digest.
bool still_valid(const Dir& payloads, const Payload& p) {
    const auto st = payloads.stat(base_name(p.file));
    if (!st || !S_ISREG(st->st_mode) || static_cast<uint64_t>(st->st_size) != p.compressed_size) return false;
    return sha256_of(payloads, base_name(p.file)) == p.sha256;
}

struct Wanted {
    std::optional<pool::Subvolume> parent;  // nullopt: the full stream
    std::string file;                       // relative to the repository
    std::string_view kind;
};

bool matches(const Payload& p, const Wanted& w) {
    if (p.kind != w.kind) return false;
    if (!w.parent) return !p.parent;
    return p.parent && p.parent->uuid == uuid_text(w.parent->info.uuid);
}

// Digests of consecutive parts of what is written.
class PartDigests {
public:
    explicit PartDigests(uint64_t part_bytes) : part_bytes_(part_bytes) {}
    void update(std::string_view data) {
        while (!data.empty()) {
            const auto n = std::min<uint64_t>(data.size(), part_bytes_ - in_part_);
            sha_.update(data.substr(0, n));
            in_part_ += n;
            data.remove_prefix(n);
            if (in_part_ == part_bytes_) close_part();
        }
    }
    std::vector<Part> finish() {
        if (in_part_ > 0) close_part();
        return std::move(parts_);
    }

private:
    void close_part() {
        parts_.push_back({in_part_, sha_.hex_digest()});
        sha_ = sign::Sha256();
        in_part_ = 0;
    }
    uint64_t part_bytes_, in_part_ = 0;
    sign::Sha256 sha_;
    std::vector<Part> parts_;
};

// The incremental streams from the parents, each exported once (`btrfs send -p` took 1.4 s of
// kernel time per parent on a 700 MiB tree here): the plain payload compresses a stream and the
// strata delta encodes it. A thread exports them in order while the full stream is written, so
// the kernel's work overlaps zstd's (publishing with 3 deltas took 13.5 s on 2 cores, one step
// after the other). Each stream is kept unnamed beside the payloads until a later one is asked for.
class IncrementalStreams {
public:
    IncrementalStreams(const pool::Pool& pool, const Dir& payloads, const pool::Subvolume& tree,
                       const std::vector<pool::Subvolume>& parents)
        : slots_(parents.size()) {
        for (size_t i = 0; i < parents.size(); ++i) slots_[i].parent = parents[i].name;
        if (!parents.empty()) worker_ = std::thread([&pool, &payloads, &tree, this] { export_all(pool, payloads, tree); });
    }
    IncrementalStreams(const IncrementalStreams&) = delete;
    ~IncrementalStreams() {
        stop_ = true;
        if (worker_.joinable()) worker_.join();
    }

    // The stream from parent, at offset 0: waits for its export and rethrows its failure.
    int from(const pool::Subvolume& parent) {
        std::unique_lock lock(mutex_);
        const auto it = std::find_if(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.parent == parent.name; });
        if (it == slots_.end()) throw Error("export", parent.name, "no stream was prepared from this parent");
        for (auto earlier = slots_.begin(); earlier != it; ++earlier)
            if (earlier->done) earlier->stream = Fd();  // done with
        done_.wait(lock, [&] { return it->done; });
        if (it->error) std::rethrow_exception(it->error);
        if (::lseek(it->stream.get(), 0, SEEK_SET) < 0) throw_errno("seek temporary stream of", parent.name);
        return it->stream.get();
    }

private:
    struct Slot {
        std::string parent;
        Fd stream;
        std::exception_ptr error;
        bool done = false;
    };

    void export_all(const pool::Pool& pool, const Dir& payloads, const pool::Subvolume& tree) {
        for (auto& slot : slots_) {
            Fd stream;
            std::exception_ptr error;
            try {
                if (stop_) throw Error("export", tree.name, "publish stopped");
                stream = Fd(::openat(payloads.fd(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
                if (!stream) throw_errno("create temporary stream file in", payloads.path().string());
                vendor::ExportOptions export_options;
                export_options.parent = slot.parent;
                vendor::export_stream(pool, tree.name, export_options, stream.get());
            } catch (...) {
                error = std::current_exception();
            }
            const std::lock_guard lock(mutex_);
            slot.stream = std::move(stream);
            slot.error = error;
            slot.done = true;
            done_.notify_all();
        }
    }

    std::vector<Slot> slots_;
    std::mutex mutex_;
    std::condition_variable done_;
    std::atomic<bool> stop_ = false;
    std::thread worker_;
};

// The incremental stream from the parent, encoded against the parent's tree (delta/payload.hpp),
// compressed through sink; fills in the sizes, parts and the rebuilt stream's digest.
void write_delta_body(const pool::Pool& pool, int stream, const Wanted& w, int level, const stream::Sink& write,
                      Payload& p) {
    stream::ZstdEncoder zstd(level, delta_zstd_window_log, delta_zstd_workers, delta_zstd_jobs,
                             level == default_delta_level ? default_level_search : stream::ZstdSearch{});
    PartDigests parts(delta_part_bytes);
    const stream::Sink sink = [&](std::string_view data) {
        write(data);
        parts.update(data);
    };
    const auto stats = delta::encode_payload(stream, pool.top().open_dir(w.parent->name),
                                             [&](std::string_view body) { zstd.feed(body, sink); });
    zstd.finish(sink);
    spdlog::debug("delta body from {}: {} bytes in {} groups; write data: {} literal, {} diffed, {} recompressed, "
                  "{} copied, {} repeated",
                  w.parent->name, stats.body_bytes, stats.groups, stats.literal_bytes, stats.diffed_bytes,
                  stats.recompressed_bytes, stats.copied_bytes, stats.repeated_bytes);
    p.size = stats.stream_bytes;
    p.parts = parts.finish();
    p.stream_sha256 = stats.stream_sha256;
}

// The plain stream as zstd with export's settings.
void write_plain_body(int stream, const stream::Sink& write, Payload& p) {
    stream::ZstdEncoder zstd;
    std::vector<char> buffer(1 << 20);
    while (const size_t n = read_full(stream, buffer.data(), buffer.size(), "temporary stream file")) {
        zstd.feed(std::string_view(buffer.data(), n), write);
        p.size += n;
    }
    zstd.finish(write);
}

Payload write_payload(const pool::Pool& pool, const Dir& payloads, const pool::Subvolume& tree, const Wanted& w,
                      const PublishOptions& options, IncrementalStreams& streams, NewFiles& created) {
    const auto base = std::string(base_name(w.file));
    const bool existed = payloads.stat(base).has_value();
    AtomicFile out(payloads, base);
    Payload p;
    p.kind = std::string(w.kind);
    p.compression = "zstd";
    p.file = w.file;
    if (w.parent)
        p.parent = ParentRef{w.parent->name, uuid_text(w.parent->info.uuid), uuid_text(w.parent->info.received_uuid)};
    sign::Sha256 digest;
    const stream::Sink write = [&](std::string_view data) {
        write_all(out.fd(), data, out.temp_path());
        digest.update(data);
        p.compressed_size += data.size();
    };
    if (!w.parent) {
        // The full stream goes straight from btrfs send through zstd: no copy of the whole tree.
        vendor::ExportOptions export_options;
        export_options.compression = vendor::Compression::Zstd;
        export_options.progress = options.progress;
        export_options.observe_output = [&](std::string_view data) { digest.update(data); };
        const auto result = vendor::export_stream(pool, tree.name, export_options, out.fd());
        p.size = result.stream_bytes;
        p.compressed_size = result.bytes;
    } else if (w.kind == delta_kind) {
        write_delta_body(pool, streams.from(*w.parent), w, options.delta_level, write, p);
    } else {
        write_plain_body(streams.from(*w.parent), write, p);
    }
    p.sha256 = digest.hex_digest();
    out.commit();
    if (!existed) created.add(base);
    return p;
}

std::set<std::string> files_of(const Index& index) {
    std::set<std::string> files;
    for (const auto& t : index.trees)
        for (const auto& p : t.payloads) files.insert(p.file);
    return files;
}

}  // namespace

PublishReport publish(const pool::Pool& pool, const std::filesystem::path& repo_dir, const std::string& name,
                      const sign::SecretKey& key, const PublishOptions& options) {
    return with_context("publish", name, [&] {
        // 1. The input, against the pool only.
        const auto tree = find_vendor_tree(pool, name);
        const auto parents = resolve_parents(pool, tree, options);
        if (options.keep && *options.keep == 0)
            throw Error("", "", "--keep must be at least 1 (the tree being published stays)", Fault::InvalidInput);
        if (options.delta_level < 1 || options.delta_level > 19)
            throw Error("", "", "the delta level must be from 1 to 19, not " + std::to_string(options.delta_level),
                        Fault::InvalidInput);
        if (!is_valid_utf8(options.changelog))
            throw Error("", "", "the changelog is not valid UTF-8", Fault::InvalidInput);

        // 2. The repository as it is, under its lock.
        const Dir repo = open_repository(repo_dir);
        const auto lock = FileLock::acquire(repo, lock_file, options.lock_timeout,
                                            "repository is busy: another strata publish is writing it");
        std::vector<sign::PublicKey> accepted{sign::public_key_of(key)};
        accepted.insert(accepted.end(), options.previous_keys.begin(), options.previous_keys.end());
        finish_pending(repo, accepted);
        const auto before = read_signed_index(repo, accepted).value_or(Index{});
        discard_leftovers(repo);
        Index index = before;

        const auto now = now_rfc3339();
        const auto* existing = find_tree(index, tree.name);
        if (existing && existing->uuid != uuid_text(tree.info.uuid))
            throw Error("", "",
                        in_quotes(tree.name) + " is published already as another subvolume (uuid " + existing->uuid +
                            ", the pool has " + uuid_text(tree.info.uuid) + "); publish it as a new version",
                        Fault::Exists);
        Tree entry = existing ? *existing
                              : Tree{tree.name, uuid_text(tree.info.uuid), uuid_text(tree.info.received_uuid), now, "", {}};
        if (!options.changelog.empty()) entry.changelog = options.changelog;

        std::vector<Wanted> wanted{{std::nullopt, relative(payload_file(*tree.typed, std::nullopt, send_stream_kind)), send_stream_kind}};
        for (const auto& p : parents)
            for (const auto kind : {send_stream_kind, delta_kind})
                wanted.push_back({p, relative(payload_file(*tree.typed, p, kind)), kind});
        for (const auto& w : wanted)
            for (const auto& t : index.trees)
                for (const auto& p : t.payloads)
                    if (t.name != tree.name && p.file == w.file)
                        throw Error("", "", "payload file " + in_quotes(w.file) + " belongs to " + in_quotes(t.name) + " already",
                                    Fault::Exists);

        // Pruning is decided before any work, so a --keep that would drop this very tree is refused.
        std::vector<std::string> pruned;
        if (options.keep) {
            std::vector<naming::Name> series{*tree.typed};
            for (const auto& t : index.trees)
                if (const auto n = naming::Name::try_parse(t.name); n && t.name != tree.name && naming::same_series(*n, *tree.typed))
                    series.push_back(*n);
            std::sort(series.begin(), series.end(), naming::list_order);
            const size_t drop = series.size() > *options.keep ? series.size() - *options.keep : 0;
            for (size_t i = 0; i < drop; ++i) {
                if (series[i] == *tree.typed)
                    throw Error("", "",
                                "--keep " + std::to_string(*options.keep) + " would prune " + in_quotes(tree.name) +
                                    " itself: newer versions of the series are published",
                                Fault::InvalidInput);
                pruned.push_back(series[i].str());
            }
        }

        // 3. Payloads: reuse what is there intact, write the rest.
        PublishReport report;
        const Dir payloads = repo.make_dir(payload_dir);
        NewFiles created(payloads);
        std::vector<const Wanted*> to_write;
        std::vector<pool::Subvolume> stream_parents;  // whose incremental stream a payload to write needs
        for (const auto& w : wanted) {
            const auto it = std::find_if(entry.payloads.begin(), entry.payloads.end(), [&](const Payload& p) { return matches(p, w); });
            if (it != entry.payloads.end() && still_valid(payloads, *it)) {
                report.reused.push_back(it->file);
                continue;
            }
            to_write.push_back(&w);
            if (w.parent && std::none_of(stream_parents.begin(), stream_parents.end(),
                                         [&](const pool::Subvolume& p) { return p.name == w.parent->name; }))
                stream_parents.push_back(*w.parent);
        }
        // The full stream (btrfs send into zstd, about a core's work) is written on a thread of
        // its own while this one encodes the incremental payloads, which used to wait for it:
        // alone it was 4.8 s of a 15 s publish with 3 deltas (bench/update.sh).
        std::vector<Payload> written(to_write.size());
        {
            IncrementalStreams streams(pool, payloads, tree, stream_parents);
            const auto write_one = [&](size_t i) {
                written[i] = write_payload(pool, payloads, tree, *to_write[i], options, streams, created);
            };
            std::exception_ptr full_failure, failure;
            std::thread full_writer;
            try {
                for (size_t i = 0; i < to_write.size(); ++i)
                    if (!to_write[i]->parent)
                        full_writer = std::thread([&, i] {
                            try {
                                write_one(i);
                            } catch (...) {
                                full_failure = std::current_exception();
                            }
                        });
                for (size_t i = 0; i < to_write.size(); ++i)
                    if (to_write[i]->parent) write_one(i);
            } catch (...) {
                failure = std::current_exception();
            }
            if (full_writer.joinable()) full_writer.join();
            if (failure) std::rethrow_exception(failure);
            if (full_failure) std::rethrow_exception(full_failure);
        }
        for (size_t i = 0; i < to_write.size(); ++i) {
            const auto& w = *to_write[i];
            // An entry of this tree for the same payload, or under the same file name from another
            // parent (say, the parent was re-imported), is stale: the new payload takes its place.
            std::erase_if(entry.payloads, [&](const Payload& p) { return matches(p, w) || p.file == w.file; });
            entry.payloads.push_back(std::move(written[i]));
            report.written.push_back(w.file);
        }
        // The tree must still be what the index says: a replaced subvolume would make the
        // recorded uuid lie about the streams.
        const auto after = pool.find(tree.name);
        if (!after || after->info.uuid != tree.info.uuid)
            throw Error("", "", in_quotes(tree.name) + " changed in the pool while it was being published", Fault::Failed);

        // 4. The new index.
        std::erase_if(index.trees, [&](const Tree& t) {
            return t.name == tree.name || std::find(pruned.begin(), pruned.end(), t.name) != pruned.end();
        });
        index.trees.push_back(entry);
        index.serial = before.serial + 1;
        index.generated = now;
        if (options.announce) {
            const auto line = sign::public_key_base64(*options.announce);
            if (std::none_of(index.keys.begin(), index.keys.end(), [&](const auto& k) { return k.public_key == line; }))
                index.keys.push_back(
                    {line, sign::sign(key, line, "strata key announcement " + sign::format_key_id(options.announce->id))});
        }
        const auto text = render_index(index);
        // Signed before SHA256SUMS and the index are written, so what remains are plain file
        // operations: a signing failure leaves the repository as it was.
        const auto signature = sign::sign(key, text, index_trusted_comment(index.serial));

        // 5. SHA256SUMS, then the signature, then the index (see publish.hpp for why this order).
        write_file_atomic(repo, sums_file, render_sums(index));
        created.commit();  // SHA256SUMS names them now
        write_file_atomic(repo, pending_index, text);
        write_file_atomic(repo, pending_signature, signature);
        repo.rename(pending_signature, repo, signature_file, /*no_replace=*/false);
        repo.rename(pending_index, repo, index_file, /*no_replace=*/false);
        repo.sync();

        // 6. Payloads no entry names any more (pruned trees, superseded files). Clients holding
        // the previous index may still be fetching them, which is why this comes last.
        const auto keep_files = files_of(index);
        for (const auto& f : files_of(before))
            if (!keep_files.contains(f) && payloads.stat(base_name(f))) payloads.unlink(base_name(f));
        payloads.sync();

        report.tree = entry;
        report.pruned = pruned;
        report.serial = index.serial;
        return report;
    });
}

Index read_local_index(const std::filesystem::path& repo_dir, std::span<const sign::PublicKey> trusted) {
    const Dir repo = Dir::open(repo_dir);
    auto index = read_signed_index(repo, trusted);
    if (!index)
        throw Error("read index", repo.path_of(index_file).string(), "no such file: not a repository", Fault::NotFound);
    return *index;
}

}  // namespace strata::repo
