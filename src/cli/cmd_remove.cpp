// strata remove: delete vendor trees.
#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"
#include "deploy/remove.hpp"

namespace strata::cli {
namespace {

struct RemoveOptions {
    std::vector<std::string> names;
    bool force = false;
    bool dry_run = false;
    bool json = false;
};

void run_remove(const Context& ctx, const RemoveOptions& opts) {
    const auto pool = ctx.open_pool();
    const auto lock = ctx.lock(pool);
    const auto target = ctx.boot_target_if_any();
    const auto removed =
        deploy::remove_vendor_trees(pool, lock, target ? &*target : nullptr, opts.names, opts.force, opts.dry_run);
    if (opts.json) {
        auto list = nlohmann::json::array();
        for (const auto& r : removed) list.push_back({{"name", r.name}, {"in_use", r.in_use}});
        print_json({{"dry_run", opts.dry_run}, {"removed", list}});
        return;
    }
    if (ctx.quiet) return;
    for (const auto& r : removed) {
        std::string why;
        for (const auto& use : r.in_use) why += (why.empty() ? " (in use: " : "; ") + use;
        if (!why.empty()) why += ")";
        std::printf("%s '%s'%s.\n", opts.dry_run ? "Would remove" : "Removed", r.name.c_str(), why.c_str());
    }
}

}  // namespace

void register_remove(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<RemoveOptions>();
    auto* cmd = app.add_subcommand("remove", "Delete vendor trees (all named ones, or none if one is refused)");
    cmd->add_option("NAME", opts->names, "Vendor trees to delete")->required();
    cmd->add_flag("--force", opts->force, "Delete trees that are mounted, booted or deployed too (their boot entries go first)");
    cmd->add_flag("--dry-run", opts->dry_run, "Check and show what would be deleted, delete nothing");
    cmd->add_flag("--json", opts->json, "Print JSON");
    cmd->callback([&ctx, opts] { run_remove(ctx, *opts); });
}

}  // namespace strata::cli
