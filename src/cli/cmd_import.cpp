// strata import: bring a vendor tree into the pool from a directory, a tar archive or a stream.
#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"
#include "cli/progress.hpp"
#include "vendor/import.hpp"

namespace strata::cli {
namespace {

struct ImportOptions {
    std::string name;
    std::filesystem::path from_dir, from_tar, from_stream;
    std::optional<std::string> base;
    bool no_base = false;
    bool replace = false;
    bool json = false;
};

void run_import(const Context& ctx, const ImportOptions& opts) {
    const auto name = naming::Name::parse(opts.name);
    const auto pool = ctx.open_pool();
    const auto lock = ctx.lock(pool);
    ProgressLine progress(!ctx.quiet && !opts.json);
    vendor::ImportOptions options;
    options.base = {opts.base, opts.no_base};
    options.on_conflict = opts.replace ? pool::OnConflict::Replace : pool::OnConflict::Fail;
    options.progress = progress.callback();
    const auto result = !opts.from_dir.empty()   ? vendor::import_directory(pool, lock, name, opts.from_dir, options)
                        : !opts.from_tar.empty() ? vendor::import_tar(pool, lock, name, opts.from_tar, options)
                                                 : vendor::import_stream(pool, lock, name, opts.from_stream, options);
    if (opts.json) {
        auto j = subvolume_json(result.subvolume);
        j["base"] = result.base ? nlohmann::json(*result.base) : nlohmann::json(nullptr);
        j["source"] = result.source_kind;
        print_json(j);
    } else if (!ctx.quiet) {
        if (result.base)
            std::printf("Imported '%s' (based on '%s').\n", name.str().c_str(), result.base->c_str());
        else
            std::printf("Imported '%s'.\n", name.str().c_str());
    }
}

}  // namespace

void register_import(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<ImportOptions>();
    auto* cmd = app.add_subcommand("import", "Import a vendor tree (usr, runtime, framework, app) read-only");
    cmd->add_option("NAME", opts->name, "The new subvolume, e.g. usr:org.example.Demo:x86_64:1.0")->required();
    auto* dir = cmd->add_option("--from-dir", opts->from_dir, "Copy this directory tree (reflinked on the same filesystem)")
                    ->type_name("DIR");
    auto* tar = cmd->add_option("--from-tar", opts->from_tar, "Unpack this tar archive (.tar, .gz, .xz, .zst; - for stdin)")
                    ->type_name("FILE");
    auto* stream = cmd->add_option("--from-stream", opts->from_stream,
                                   "Receive this btrfs send stream, full or incremental, plain or zstd (- for stdin)")
                       ->type_name("FILE");
    dir->excludes(tar, stream);
    tar->excludes(stream);
    auto* base = cmd->add_option("--base", opts->base,
                                 "Build on this older version so unchanged files share extents "
                                 "(default: the newest older version of the same series)")
                     ->type_name("NAME");
    auto* no_base = cmd->add_flag("--no-base", opts->no_base, "Copy everything, build on no older version");
    base->excludes(no_base);
    base->excludes(stream);
    no_base->excludes(stream);
    cmd->add_flag("--replace", opts->replace, "Swap out an existing subvolume of that name atomically");
    cmd->add_flag("--json", opts->json, "Print the imported subvolume as JSON (docs/json.md)");
    cmd->callback([&ctx, opts, cmd] {
        if (cmd->count("--from-dir") + cmd->count("--from-tar") + cmd->count("--from-stream") != 1)
            throw CLI::ValidationError("import", "exactly one of --from-dir, --from-tar, --from-stream is required");
        run_import(ctx, *opts);
    });
}

}  // namespace strata::cli
