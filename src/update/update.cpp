#include "update/update.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/crash.hpp"
#include "base/error.hpp"
#include "base/size.hpp"
#include "boot/kernel.hpp"
#include "btrfs/subvolume.hpp"
#include "deploy/database.hpp"
#include "deploy/gc.hpp"
#include "delta/payload.hpp"
#include "naming/version.hpp"
#include "repo/fetch.hpp"
#include "repo/index.hpp"
#include "sign/sha256.hpp"
#include "sign/trust.hpp"
#include "stream/zstd.hpp"
#include "vendor/import.hpp"

namespace strata::update {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view journal_file = "update.json";
constexpr std::string_view downloads_dir = "downloads";
constexpr std::string_view remotes_dir = "remotes";
constexpr std::string_view learned_keys_dir = "keys.d";  // keys learned by rotation
constexpr size_t max_index_bytes = 64u << 20;
constexpr size_t max_signature_bytes = 64u << 10;

uint64_t free_bytes(const Dir& dir) {
    struct statvfs st {};
    check_errno(::fstatvfs(dir.fd(), &st), "read free space of", dir.path().string());
    return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

uint64_t tree_bytes(const fs::path& dir) {
    uint64_t total = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_regular_file(ec)) total += it->file_size(ec);
    return total;
}


std::pair<std::string, config::RemoteSettings> choose_remote(const config::Config& config,
                                                             const std::optional<std::string>& given) {
    const std::string name = given ? *given : config.update.remote;
    if (!name.empty()) {
        const auto it = config.remotes.find(name);
        if (it == config.remotes.end()) throw Error("update", name, "no such remote (see strata remote list)", Fault::NotFound);
        return *it;
    }
    if (config.remotes.size() != 1)
        throw Error("update", "", config.remotes.empty() ? "no remote configured (strata remote add NAME URL)"
                                                         : "several remotes configured: name one with --remote",
                    Fault::InvalidInput);
    return *config.remotes.begin();
}

// The keys a remote's index may be signed with: its own list, else the system's directories,
// plus what rotation taught this pool before.
sign::TrustStore trust_for(const pool::Pool& pool, const config::RemoteSettings& remote, const UpdateOptions& options) {
    std::vector<fs::path> dirs, files;
    for (const auto& p : remote.keys.empty() ? options.default_key_dirs : remote.keys) {
        std::error_code ec;
        (fs::is_regular_file(p, ec) ? files : dirs).push_back(p);
    }
    dirs.push_back(pool.hidden().path_of(learned_keys_dir));
    auto store = sign::load_trust_store(dirs);
    for (const auto& f : files)
        store.trusted.push_back(with_context("read key", f.string(), [&] {
            return sign::parse_public_key(read_file(Dir::open(f.parent_path()), f.filename().string()));
        }));
    return store;
}

struct VerifiedIndex {
    repo::Index index;
    uint64_t serial = 0;
    bool is_signed = true;
};

VerifiedIndex fetch_index(const pool::Pool& pool, const std::string& remote_name, const config::RemoteSettings& remote,
                          const UpdateOptions& options, const repo::FetchOptions& fetch) {
    const std::string text = repo::fetch_text(repo::join_url(remote.url, repo::index_file), max_index_bytes, fetch);
    std::string signature;
    try {
        signature = repo::fetch_text(repo::join_url(remote.url, repo::signature_file), max_signature_bytes, fetch);
    } catch (const Error&) {
        if (!remote.insecure) throw;
    }
    auto store = trust_for(pool, remote, options);

    VerifiedIndex out;
    try {
        sign::Verified verified;
        try {
            verified = sign::verify(store, text, signature);
        } catch (const Error&) {
            // Signed by a key announced in the index itself? Accept it only when a key trusted now
            // signed the announcement; then the whole index must verify with it.
            std::vector<sign::PublicKey> learned;
            for (const auto& a : repo::parse_index(text).keys) {
                try {
                    const auto key = sign::accept_announced_key(store, a.public_key, a.signature);
                    if (std::find(store.trusted.begin(), store.trusted.end(), key) == store.trusted.end())
                        learned.push_back(key);
                } catch (const Error&) {
                }
            }
            if (learned.empty()) throw;
            store.trusted.insert(store.trusted.end(), learned.begin(), learned.end());
            verified = sign::verify(store, text, signature);
            const Dir keys = pool.hidden().make_dir(learned_keys_dir, 0755);
            for (const auto& key : learned)
                write_file_atomic(keys, sign::format_key_id(key.id) + ".pub",
                                  sign::public_key_file(key, "learned from remote " + remote_name));
        }
        out.index = repo::parse_index(text);
        const auto serial = repo::serial_of_trusted_comment(verified.trusted_comment);
        if (!serial || *serial != out.index.serial)
            throw Error("verify index of", remote_name, "the signed serial does not match the index", Fault::InvalidInput);
        out.serial = *serial;
    } catch (const Error& e) {
        if (!remote.insecure) throw Error(e).within("update from", remote_name);
        out.index = repo::parse_index(text);
        out.serial = out.index.serial;
        out.is_signed = false;
    }
    return out;
}

// Rollback protection: the highest serial seen from a remote, kept in the pool.
void check_serial(const pool::Pool& pool, const std::string& remote, uint64_t serial, bool allow_downgrade) {
    const Dir dir = pool.hidden().make_dir(remotes_dir, 0755);
    const std::string file = remote + ".json";
    uint64_t seen = 0;
    if (dir.stat(file)) {
        try {
            seen = nlohmann::json::parse(read_file(dir, file)).value("serial", uint64_t{0});
        } catch (const nlohmann::json::exception& e) {
            throw Error("read", dir.path_of(file).string(), std::string("corrupt: ") + e.what(), Fault::Failed);
        }
    }
    if (serial < seen && !allow_downgrade)
        throw Error("update from", remote,
                    "the index (serial " + std::to_string(serial) + ") is older than one seen before (serial " +
                        std::to_string(seen) + "): a replayed or rolled-back repository (--allow-downgrade accepts it)",
                    Fault::InvalidInput);
    if (serial > seen) write_file_atomic(dir, file, nlohmann::json{{"serial", serial}}.dump() + "\n");
}

// A local read-only vendor tree that is the payload's parent, as btrfs receive will look it up.
std::optional<std::string> local_parent(const pool::Pool& pool, const repo::ParentRef& parent) {
    for (const auto& s : pool.list()) {
        if (!s.typed || s.typed->kind() == naming::Kind::Root || s.typed->kind() == naming::Kind::Home) continue;
        if (!s.info.read_only()) continue;
        const auto uuid = btrfs::format_uuid(s.info.uuid);
        const auto received = btrfs::is_null(s.info.received_uuid) ? std::string() : btrfs::format_uuid(s.info.received_uuid);
        if (received == parent.uuid || uuid == parent.uuid ||
            (!parent.received_uuid.empty() && (received == parent.received_uuid || uuid == parent.received_uuid)))
            return s.name;
    }
    return std::nullopt;
}

void write_journal(const pool::Pool& pool, const Plan& plan, std::string_view step) {
    write_file_atomic(pool.hidden(), journal_file,
                      nlohmann::json{{"step", step}, {"root", plan.root}, {"target", plan.target.value_or("")},
                                     {"remote", plan.remote}, {"sha256", plan.payload_sha256}}
                              .dump(2) +
                          "\n");
}

std::optional<nlohmann::json> read_journal(const pool::Pool& pool) {
    const Dir hidden = pool.hidden();
    if (!hidden.stat(journal_file)) return std::nullopt;
    try {
        return nlohmann::json::parse(read_file(hidden, journal_file));
    } catch (const nlohmann::json::exception& e) {
        throw Error("read", hidden.path_of(journal_file).string(), std::string("corrupt: ") + e.what(), Fault::Failed);
    }
}

// Bytes at the start of fd that are whole parts with their signed digests.
uint64_t verified_parts(int fd, const std::vector<repo::Part>& parts, uint64_t have, std::string_view label) {
    uint64_t offset = 0;
    std::string buffer(1u << 20, '\0');
    for (const auto& part : parts) {
        if (part.size > have - offset) break;
        sign::Sha256 sha;
        for (uint64_t done = 0; done < part.size;) {
            const auto want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), part.size - done));
            const ssize_t n = ::pread(fd, buffer.data(), want, static_cast<off_t>(offset + done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) throw_errno("read", label);
            sha.update(buffer.data(), static_cast<size_t>(n));
            done += static_cast<uint64_t>(n);
        }
        if (sha.hex_digest() != part.sha256) break;
        offset += part.size;
    }
    return offset;
}

// Downloads the payload into .strata/downloads/<sha256>.part, resuming, then checks size and
// digest. With parts, a resumed download keeps only the whole parts whose digests match, and a
// bad download keeps the good parts before the first bad one, so the next run fetches from there.
// A download kept for later (keep) is made durable and renamed to <sha256>.stream: only a
// verified file has that name, which a later run trusts. One applied right away stays the
// .part it was checked as: a crash before its removal leaves a file the next run checks again,
// so it needs neither the fsync nor the rename (a 20 MB delta's fsync alone is ~8 ms).
fs::path download(const pool::Pool& pool, const Plan& plan, const repo::FetchOptions& fetch, bool keep) {
    const Dir dir = pool.hidden().make_dir(downloads_dir, 0700);
    const std::string done = plan.payload_sha256 + ".stream", part = plan.payload_sha256 + ".part";
    if (dir.stat(done)) return dir.path_of(done);
    const auto label = dir.path_of(part).string();
    Fd fd = dir.open_file(part, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st {};
    check_errno(::fstat(fd.get(), &st), "read size of", label);
    auto have = static_cast<uint64_t>(st.st_size);
    if (have > plan.download_bytes) have = 0;
    if (!plan.parts.empty() && have > 0) have = verified_parts(fd.get(), plan.parts, have, label);
    if (have != static_cast<uint64_t>(st.st_size)) check_errno(::ftruncate(fd.get(), static_cast<off_t>(have)), "truncate", label);
    repo::fetch_to_file(plan.payload_url, fd.get(), plan.download_bytes, fetch);
    crash_point("update:downloaded");
    check_errno(static_cast<int>(::lseek(fd.get(), 0, SEEK_SET)), "rewind", label);
    const std::string digest = sign::sha256_of_fd(fd.get(), label);
    if (digest != plan.payload_sha256) {
        const uint64_t good = plan.parts.empty() ? 0 : verified_parts(fd.get(), plan.parts, plan.download_bytes, label);
        std::string kept = "removed";
        if (good > 0) {
            check_errno(::ftruncate(fd.get(), static_cast<off_t>(good)), "truncate", label);
            kept = "kept the " + std::to_string(good) + " bytes of parts that verify (the next run fetches the rest)";
        } else {
            dir.unlink(part);
        }
        throw Error("verify", plan.payload_url,
                    "sha256 " + digest + " is not the signed " + plan.payload_sha256 + ": corrupt or tampered, " + kept +
                        "; nothing was applied",
                    Fault::InvalidInput);
    }
    if (!keep) return dir.path_of(part);
    check_errno(::fsync(fd.get()), "sync", label);
    dir.rename(part, dir, done, false);
    dir.sync();
    return dir.path_of(done);
}

// Downloads that no plan will use again go: one of an older target (--download-only before the
// remote moved on), a payload the tree was already imported from (a crash before its removal).
// Only the payload of the current plan may stay, to be resumed or applied.
void remove_stale_downloads(const pool::Pool& pool, const Plan& plan) {
    const auto dir = pool.hidden().try_open_dir(downloads_dir);
    if (!dir) return;
    for (const auto& name : dir->entries()) {
        if (!plan.payload_sha256.empty() && (name == plan.payload_sha256 + ".part" || name == plan.payload_sha256 + ".stream"))
            continue;
        spdlog::debug("removing the stale download '{}'", dir->path_of(name).string());
        dir->unlink(name);
    }
}

// The parent as btrfs receive would find it as a clone source, when the new tree may take its
// blocks from it: a parent this pool received (receive finds clone sources by received_uuid
// only) and the only subvolume received from that uuid (receive takes the first it finds), so
// that it is sure to be the one whose bytes the decoder checked.
std::optional<stream::SubvolumeRef> clone_source(const pool::Pool& pool, const std::string& parent_name) {
    const auto parent = pool.find(parent_name);
    if (!parent || btrfs::is_null(parent->info.received_uuid) ||
        btrfs::count_received_from(pool.top(), parent->info.received_uuid) != 1)
        return std::nullopt;
    return stream::SubvolumeRef{parent->info.received_uuid, parent->info.stransid};
}

// Rebuilds the send stream of a downloaded delta payload against the local parent, for import:
// the parent is opened once, read-only as every vendor tree, and the stream's digest must be the
// signed one before the import may name the tree. decoder_failed is set when the rebuilding
// itself failed (not the receive it feeds).
vendor::StreamProducer delta_producer(const pool::Pool& pool, const Plan& plan, const fs::path& file, const ProgressFn& progress,
                                      std::optional<stream::SubvolumeRef> clone_from, bool& decoder_failed) {
    return [&pool, &plan, file, &progress, clone_from, &decoder_failed](const stream::Sink& sink) {
        try {
            const Fd in(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
            if (!in) throw_errno("open", file.string());
            delta::PayloadDecoder decoder(pool.top().open_dir(*plan.parent), sink, delta::default_lookahead_bytes, clone_from);
            stream::ZstdDecoder zstd;
            const stream::Sink feed = [&](std::string_view body) { decoder.feed(body); };
            std::string buffer(1u << 20, '\0');
            uint64_t consumed = 0;
            while (const size_t n = read_full(in.get(), buffer.data(), buffer.size(), file.string())) {
                zstd.feed(std::string_view(buffer.data(), n), feed);
                consumed += n;
                if (progress) progress({"receive", consumed, plan.download_bytes});
            }
            zstd.finish();
            const auto rebuilt = decoder.finish();
            if (rebuilt.stream_sha256 != plan.stream_sha256)
                throw Error("verify", plan.payload_url,
                            "the rebuilt stream's sha256 " + rebuilt.stream_sha256 + " is not the signed " + plan.stream_sha256,
                            Fault::InvalidInput);
        } catch (const Error&) {
            decoder_failed = true;
            throw;
        }
    };
}

// allow_delta false: plain send streams only (the fallback after a delta failed).
Plan make_plan(const pool::Pool& pool, const deploy::BootTarget& target, const naming::Name& root,
               const std::string& remote_name, const config::RemoteSettings& remote, const VerifiedIndex& vi,
               const UpdateOptions& options, bool allow_delta = true) {
    Plan plan;
    plan.remote = remote_name;
    plan.root = root.str();
    plan.serial = vi.serial;
    plan.signed_index = vi.is_signed;
    const auto db = deploy::load_database(pool);
    if (const auto it = db.roots.find(root.str()); it != db.roots.end()) plan.current = it->second.usr;

    const repo::Tree* newest = nullptr;
    std::optional<naming::Name> newest_name;
    for (const auto& tree : vi.index.trees) {
        const auto name = naming::Name::parse(tree.name);
        if (name.kind() != naming::Kind::Usr || name.vendor_id() != root.vendor_id() || name.arch() != root.arch()) continue;
        if (!newest_name || naming::compare_versions(name.version(), newest_name->version()) > 0) {
            newest = &tree;
            newest_name = name;
        }
    }
    if (!newest)
        throw Error("update from", remote_name,
                    "it publishes no usr for " + std::string(root.vendor_id()) + " on " + std::string(root.arch()),
                    Fault::NotFound);
    if (!plan.current.empty()) {
        const auto current = naming::Name::parse(plan.current);
        const int order = naming::compare_versions(newest_name->version(), current.version());
        if (order == 0 || (order < 0 && !options.allow_downgrade)) return plan;  // up to date
    }
    plan.target = newest->name;
    if (pool.find(newest->name)) return plan;  // received by an earlier run: nothing to fetch

    const repo::Payload* best = nullptr;
    for (const auto& p : newest->payloads) {
        const bool delta = p.kind == repo::delta_kind;
        if (p.kind != repo::send_stream_kind && !(delta && allow_delta)) continue;  // kinds this client does not know
        std::optional<std::string> parent;
        if (p.parent) {
            parent = local_parent(pool, *p.parent);
            if (!parent) continue;
        }
        if (!best || p.compressed_size < best->compressed_size) {
            best = &p;
            plan.parent = parent;
        }
    }
    if (!best)
        throw Error("update from", remote_name, "no payload of '" + newest->name + "' applies to this pool", Fault::NotFound);
    plan.payload_kind = best->kind;
    plan.payload_url = repo::join_url(remote.url, best->file);
    plan.payload_sha256 = best->sha256;
    plan.parts = best->parts;
    plan.stream_sha256 = best->stream_sha256;
    plan.download_bytes = best->compressed_size;
    plan.stream_bytes = best->size;
    if (const auto downloads = pool.hidden().try_open_dir(downloads_dir)) {
        if (downloads->stat(best->sha256 + ".stream")) plan.already_downloaded = best->compressed_size;
        else if (const auto st = downloads->stat(best->sha256 + ".part"))
            plan.already_downloaded = std::min<uint64_t>(static_cast<uint64_t>(st->st_size), best->compressed_size);
    }
    // The new kernel is not known before the receive; the current one's copy is the estimate.
    if (!plan.current.empty()) {
        const auto current = naming::Name::parse(plan.current);
        plan.boot_bytes = tree_bytes(target.boot.path() / std::string(current.vendor_id()) / std::string(current.version()));
    }
    plan.pool_free = free_bytes(pool.top());
    plan.boot_free = free_bytes(target.boot);
    return plan;
}

// Fault::Failed with the numbers when the plan does not fit.
void check_space(const Plan& plan) {
    const uint64_t pool_need = (plan.download_bytes - plan.already_downloaded) + plan.stream_bytes;
    if (pool_need > plan.pool_free)
        throw Error("update to", plan.target.value_or(""),
                    "not enough space in the pool: needs " + format_size(pool_need) + " (download " +
                        format_size(plan.download_bytes - plan.already_downloaded) + ", receive up to " + format_size(plan.stream_bytes) +
                        "), has " + format_size(plan.pool_free) + "; `strata gc` or --prune frees old versions",
                    Fault::Failed);
    if (plan.boot_bytes > plan.boot_free)
        throw Error("update to", plan.target.value_or(""),
                    "not enough space on $BOOT: needs about " + format_size(plan.boot_bytes) + ", has " + format_size(plan.boot_free),
                    Fault::Failed);
}

}  // namespace

UpdateReport update(const pool::Pool& pool, const pool::Lock& lock, const deploy::BootTarget& target,
                    const config::Config& config, const UpdateOptions& options) {
    const auto root = with_context("update", options.root.value_or(pool.path().string()), [&] {
        const auto r = deploy::choose_root(pool, &target, options.root);
        if (r.kind() != naming::Kind::Root || !pool.find(r.str()))
            throw Error("", "", "no such root instance in the pool", Fault::NotFound);
        return r;
    });
    return with_context("update", root.str(), [&] {
        UpdateReport report;
        if (const auto journal = read_journal(pool); journal && journal->value("step", "") != "done")
            report.interrupted = journal->value("step", "") + " " + journal->value("target", "");
        const auto [remote_name, remote] = choose_remote(config, options.remote);
        repo::FetchOptions fetch;
        fetch.progress = options.progress;
        const auto vi = fetch_index(pool, remote_name, remote, options, fetch);
        check_serial(pool, remote_name, vi.serial, options.allow_downgrade);
        report.plan = make_plan(pool, target, root, remote_name, remote, vi, options);
        Plan& plan = report.plan;
        if (options.check_only) return report;
        remove_stale_downloads(pool, plan);
        if (!plan.target) return report;

        const bool have_tree = pool.find(*plan.target).has_value();
        if (!have_tree) {
            // Plans the space, downloads and imports; false when stopping after the download.
            const auto fetch_and_import = [&]() {
                try {
                    check_space(plan);
                } catch (const Error&) {
                    if (!options.prune) throw;
                    deploy::gc(pool, lock, target,
                               {.keep = config.gc.keep, .dry_run = false, .reset_undo_days = 7, .wait_for_cleaner = true});
                    plan.pool_free = free_bytes(pool.top());
                    plan.boot_free = free_bytes(target.boot);
                    check_space(plan);
                }
                write_journal(pool, plan, "download");
                const auto file = download(pool, plan, fetch, /*keep=*/options.download_only);
                report.downloaded = true;
                if (options.download_only) {
                    write_journal(pool, plan, "downloaded");
                    return false;
                }
                write_journal(pool, plan, "import");
                const auto name = naming::Name::parse(*plan.target);
                // The predecessor's kernel goes to $BOOT while the new version is received.
                std::optional<boot::KernelAhead> kernel_ahead;
                if (plan.parent)
                    kernel_ahead.emplace(target.boot, std::string(name.vendor_id()), std::string(name.version()),
                                         pool.top().open_dir(*plan.parent));
                const vendor::ImportOptions import{.base = {}, .on_conflict = pool::OnConflict::Fail, .progress = options.progress};
                if (plan.payload_kind == repo::delta_kind) {
                    try {
                        const auto clone_from = clone_source(pool, *plan.parent);
                        bool decoder_failed = false;
                        try {
                            vendor::import_stream(pool, lock, name, plan.payload_url,
                                                  delta_producer(pool, plan, file, options.progress, clone_from, decoder_failed),
                                                  import);
                        } catch (const Error& e) {
                            // Receive failed on a stream the decoder rebuilt and checked: the
                            // kernel refuses some clones (between files with and without data
                            // checksums, when the parent was received under other nodatasum or
                            // nodatacow settings than the pool has now). The same payload
                            // applies written out, without a second download.
                            if (!clone_from || decoder_failed || e.fault() == Fault::Busy) throw;
                            spdlog::debug("'{}' did not apply with blocks cloned from '{}' ({}); applying it written out",
                                         *plan.target, *plan.parent, e.what());
                            vendor::import_stream(pool, lock, name, plan.payload_url,
                                                  delta_producer(pool, plan, file, options.progress, std::nullopt, decoder_failed),
                                                  import);
                        }
                    } catch (...) {
                        std::error_code ec;
                        fs::remove(file, ec);  // useless once it failed to apply here
                        throw;
                    }
                } else {
                    vendor::import_stream(pool, lock, name, file, import);
                }
                report.imported = true;
                if (kernel_ahead) kernel_ahead->take(pool.top().open_dir(name.str()));
                crash_point("update:imported");
                std::error_code ec;
                fs::remove(file, ec);
                return true;
            };
            bool imported = false;
            try {
                imported = fetch_and_import();
            } catch (const Error& e) {
                // A delta that did not apply (a modified parent, a payload that does not rebuild
                // the signed stream) falls back to the plain payloads; anything else is final.
                if (plan.payload_kind != repo::delta_kind || !report.downloaded || e.fault() == Fault::Busy) throw;
                auto fallback = make_plan(pool, target, root, remote_name, remote, vi, options, /*allow_delta=*/false);
                fallback.fallback = e.what();
                plan = std::move(fallback);
                report.downloaded = false;
                imported = fetch_and_import();
            }
            if (!imported) return report;
        }
        write_journal(pool, plan, "deploy");
        const auto target_name = naming::Name::parse(*plan.target);
        report.deployment = deploy::deploy(pool, lock, target, root, std::string(target_name.version()));
        write_journal(pool, plan, "done");
        return report;
    });
}

std::optional<std::string> unfinished_update(const pool::Pool& pool) {
    const auto journal = read_journal(pool);
    if (!journal || journal->value("step", "") == "done") return std::nullopt;
    return journal->value("step", "") + " " + journal->value("target", "");
}

}  // namespace strata::update
