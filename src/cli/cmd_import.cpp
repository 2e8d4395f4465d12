// strata import: bring a vendor tree into the pool.
#include "base/error.hpp"
#include "cli/context.hpp"
#include "vendor/import.hpp"

namespace strata::cli {
namespace {

struct ImportOptions {
    std::string name;
    std::filesystem::path from_dir;
};

void run_import(const Context& ctx, const ImportOptions& opts) {
    const auto name = naming::Name::parse(opts.name);
    const auto pool = ctx.open_pool();
    const auto lock = ctx.lock(pool);
    vendor::import_directory(pool, lock, name, opts.from_dir);
    if (!ctx.quiet) std::printf("Imported '%s'.\n", name.str().c_str());
}

}  // namespace

void register_import(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<ImportOptions>();
    auto* cmd = app.add_subcommand("import", "Import a vendor tree (usr, runtime, framework, app) read-only");
    cmd->add_option("NAME", opts->name, "The new subvolume, e.g. usr:org.example.Demo:x86_64:1.0")->required();
    cmd->add_option("--from-dir", opts->from_dir, "Copy this directory tree")->type_name("DIR")->required();
    cmd->callback([&ctx, opts] { run_import(ctx, *opts); });
}

}  // namespace strata::cli
