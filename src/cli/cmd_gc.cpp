// strata gc: remove old usr versions and what only they needed.
#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"
#include "cli/progress.hpp"
#include "deploy/gc.hpp"

namespace strata::cli {
namespace {

struct GcOptions {
    bool dry_run = false;
    bool wait = false;
    unsigned reset_undo_days = 7;
    bool json = false;
    std::optional<unsigned> keep;
};

void run_gc(const Context& ctx, const GcOptions& opts) {
    const auto pool = ctx.open_pool();
    const auto lock = ctx.lock(pool);
    const auto r = deploy::gc(pool, lock, ctx.boot_target(),
                              {.keep = opts.keep.value_or(ctx.config.gc.keep), .dry_run = opts.dry_run, .reset_undo_days = opts.reset_undo_days, .wait_for_cleaner = opts.wait});
    if (opts.json) {
        print_json({{"dry_run", opts.dry_run}, {"usr", r.usr}, {"entries", r.entries}, {"states", r.states},
                    {"kernels", r.kernels}, {"resets", r.resets}, {"freed_bytes", r.freed_bytes ? nlohmann::json(*r.freed_bytes) : nlohmann::json()}});
        return;
    }
    if (ctx.quiet) return;
    const char* verb = opts.dry_run ? "Would remove" : "Removed";
    for (const auto& n : r.usr) std::printf("%s usr '%s'.\n", verb, n.c_str());
    for (const auto& n : r.entries) std::printf("%s entry '%s'.\n", verb, n.c_str());
    for (const auto& n : r.states) std::printf("%s state snapshot '%s'.\n", verb, n.c_str());
    for (const auto& n : r.kernels) std::printf("%s kernel '%s'.\n", verb, n.c_str());
    for (const auto& n : r.resets) std::printf("%s old state of a factory reset '%s'.\n", verb, n.c_str());
    if (r.usr.empty() && r.entries.empty() && r.states.empty() && r.kernels.empty() && r.resets.empty()) std::printf("Nothing to remove.\n");
    else if (r.freed_bytes) std::printf("Freed %s.\n", human_bytes(static_cast<double>(*r.freed_bytes)).c_str());
}

}  // namespace

void register_gc(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<GcOptions>();
    auto* cmd = app.add_subcommand("gc", "Remove old usr versions, their entries and kernels, and unlinked state snapshots");
    cmd->add_flag("--dry-run", opts->dry_run, "Show what would be removed");
    cmd->add_option("--keep", opts->keep, "usr versions to keep per vendor and arch (default: gc.keep)")
        ->check(CLI::Range(1u, 1000u));
    cmd->add_option("--reset-undo-days", opts->reset_undo_days,
                    "Days the old state of a factory reset is kept for --undo (default 7; 0: remove now)");
    cmd->add_flag("--wait", opts->wait, "Wait until btrfs has given the space back and report it");
    cmd->add_flag("--json", opts->json, "Print JSON");
    cmd->callback([&ctx, opts] { run_gc(ctx, *opts); });
}

}  // namespace strata::cli
