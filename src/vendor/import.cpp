#include "vendor/import.hpp"

#include <sys/stat.h>

#include "base/error.hpp"
#include "base/process.hpp"
#include "naming/version.hpp"
#include "pool/staging.hpp"
#include "vendor/publish.hpp"
#include "vendor/tar.hpp"

namespace strata::vendor {
namespace {

void require_directory(const std::filesystem::path& source) {
    struct stat st {};
    check_errno(::stat(source.c_str(), &st), "read source directory", source.string());
    if (!S_ISDIR(st.st_mode)) throw Error("read source directory", source.string(), "not a directory", Fault::InvalidInput);
}

// GNU cp -a is the reference for a faithful copy (hardlinks, xattrs, ACLs, holes, device nodes);
// --reflink=auto shares extents when source and pool are one filesystem.
void copy_tree(const std::filesystem::path& source, const Dir& target) {
    run_checked({"cp", "-a", "--reflink=auto", "--no-target-directory", "--", source.string() + "/.",
                 target.path().string()});
}

// Makes target (a snapshot of the base) equal to source, touching only what differs, so
// unchanged files keep the base's extents. --checksum because image builders clamp mtimes
// (SOURCE_DATE_EPOCH): equal size and mtime do not mean equal content. No --inplace: writing
// into one name of a hardlink group would change the others behind rsync's back.
// --modify-window=-1: times count to the nanosecond, not to the second.
void sync_tree(const std::filesystem::path& source, const Dir& target) {
    run_checked({"rsync", "--archive", "--hard-links", "--acls", "--xattrs", "--numeric-ids", "--modify-window=-1",
                 "--sparse", "--delete", "--checksum", "--", source.string() + "/", target.path().string() + "/"});
}

}  // namespace

std::optional<pool::Subvolume> resolve_base(const pool::Pool& pool, const naming::Name& name, const BaseChoice& choice) {
    if (choice.none) return std::nullopt;
    if (choice.name) {
        return with_context("base", *choice.name, [&] {
            auto base = pool.find(*choice.name);
            if (!base) throw Error("", "", "no such subvolume in the pool", Fault::NotFound);
            if (!base->typed || !base->typed->is_vendor_tree() || base->typed->kind() != name.kind())
                throw Error("", "", std::string("not a ") + std::string(naming::kind_to_string(name.kind())) +
                                        " vendor tree", Fault::InvalidInput);
            if (!base->info.read_only()) throw Error("", "", "not read-only", Fault::InvalidInput);
            return *base;
        });
    }
    std::optional<pool::Subvolume> newest;
    for (auto& s : pool.list()) {
        if (!s.typed || !naming::same_series(*s.typed, name) || !s.info.read_only()) continue;
        if (naming::compare_versions(s.typed->version(), name.version()) >= 0) continue;
        if (!newest || naming::compare_versions(newest->typed->version(), s.typed->version()) < 0) newest = s;
    }
    return newest;
}

ImportResult import_directory(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name,
                              const std::filesystem::path& source, const ImportOptions& options) {
    return with_context("import", name.str(), [&] {
        require_vendor_tree(name);
        require_directory(source);
        const auto base = resolve_base(pool, name, options.base);
        if (options.progress) options.progress({"copy", 0, std::nullopt});
        if (base) {
            auto staged = pool.stage_snapshot(lock, name, base->name, options.on_conflict);
            sync_tree(source, staged.dir());
            return publish_vendor_tree(pool, staged, base, "directory");
        }
        auto staged = pool.stage(lock, name, options.on_conflict);
        copy_tree(source, staged.dir());
        return publish_vendor_tree(pool, staged, base, "directory");
    });
}

ImportResult import_tar(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name,
                        const std::filesystem::path& source, const ImportOptions& options) {
    return with_context("import", name.str(), [&] {
        require_vendor_tree(name);
        const auto base = resolve_base(pool, name, options.base);
        auto on_bytes = [&](uint64_t bytes, std::optional<uint64_t> total) {
            if (options.progress) options.progress({"unpack", bytes, total});
        };
        if (base) {
            auto staged = pool.stage_snapshot(lock, name, base->name, options.on_conflict);
            auto unpacked = pool.scratch(lock);
            extract_tar(source, unpacked.dir(), on_bytes);
            sync_tree(unpacked.dir().path(), staged.dir());
            return publish_vendor_tree(pool, staged, base, "tar");
        }
        auto staged = pool.stage(lock, name, options.on_conflict);
        extract_tar(source, staged.dir(), on_bytes);
        return publish_vendor_tree(pool, staged, base, "tar");
    });
}

}  // namespace strata::vendor
