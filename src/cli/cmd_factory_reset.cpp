// strata factory-reset: a root instance's state back to its vendor's factory defaults.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"
#include "deploy/reset.hpp"

namespace strata::cli {
namespace {

struct ResetCliOptions {
    std::optional<std::string> root;
    std::string level = "state";
    std::vector<std::string> keep;
    bool homes = false, dry_run = false, yes = false, on_next_boot = false, undo = false, apply_scheduled = false,
         json = false, at_boot = false;
};

nlohmann::json report_json(const deploy::ResetReport& r) {
    nlohmann::json j = {{"root", r.root},       {"level", std::string(deploy::to_string(r.level))},
                        {"cleared", r.cleared}, {"kept", r.kept},
                        {"homes", r.homes},     {"undo", r.undo},
                        {"dry_run", r.dry_run}, {"scheduled", r.scheduled}};
    j["populated_from"] = r.populated_from ? nlohmann::json(*r.populated_from) : nlohmann::json();
    j["in_use"] = r.in_use.empty() ? nlohmann::json() : nlohmann::json(r.in_use);
    return j;
}

std::string joined(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
    return out;
}

void print_reset(const deploy::ResetReport& r) {
    const std::string level(deploy::to_string(r.level));
    if (r.scheduled) {
        std::printf("Scheduled a factory reset (level %s) of '%s' for its next boot%s.\n", level.c_str(), r.root.c_str(),
                    r.in_use.empty() ? "" : (": it is in use now (" + r.in_use + ")").c_str());
        std::printf("Cancel with: strata factory-reset --undo %s\n", r.root.c_str());
        return;
    }
    std::printf("%s '%s' (level %s): %s back to factory.\n", r.dry_run ? "Would reset" : "Reset", r.root.c_str(),
                level.c_str(), joined(r.cleared).c_str());
    if (r.populated_from) std::printf("Populated from the factory of '%s'.\n", r.populated_from->c_str());
    else std::printf("No factory to populate from: the next boot fills /etc and /var.\n");
    if (!r.kept.empty()) std::printf("Kept: %s\n", joined(r.kept).c_str());
    if (!r.homes.empty()) std::printf("Homes set aside: %s\n", joined(r.homes).c_str());
    if (!r.dry_run)
        std::printf("The old state is kept in %s until gc removes it: strata factory-reset --undo %s\n", r.undo.c_str(),
                    r.root.c_str());
}

// Destroying state asks first: on a terminal by a question, elsewhere by --yes.
void confirm(const ResetCliOptions& opts, const std::string& root) {
    if (opts.yes || opts.dry_run) return;
    if (::isatty(STDIN_FILENO) != 1)
        throw Error("factory reset", root, "refusing without --yes when not on a terminal (--dry-run shows what goes)",
                    Fault::InvalidInput);
    std::fprintf(stderr, "Reset '%s' to factory (level %s)? [y/N] ", root.c_str(), opts.level.c_str());
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes")
        throw Error("factory reset", root, "not confirmed", Fault::InvalidInput);
}

void run_reset(const Context& ctx, const ResetCliOptions& opts) {
    if (opts.apply_scheduled) {
        std::vector<deploy::ResetReport> done;
        if (opts.at_boot) {
            done = deploy::apply_scheduled_resets_at_boot("/proc/cmdline", "/run/strata", ctx.config.pool.lock_timeout);
        } else {
            const auto pool = ctx.open_pool();
            done = deploy::apply_scheduled_resets(pool, ctx.lock(pool));
        }
        if (opts.json) {
            nlohmann::json out = nlohmann::json::array();
            for (const auto& r : done) out.push_back(report_json(r));
            print_json(out);
        } else if (!ctx.quiet) {
            for (const auto& r : done) print_reset(r);
        }
        return;
    }
    const auto pool = ctx.open_pool();
    const auto target = opts.root ? std::nullopt : ctx.boot_target_if_any();
    const auto root = with_context("factory reset", opts.root.value_or(pool.path().string()), [&] {
        return deploy::choose_root(pool, target ? &*target : nullptr, opts.root);
    });
    if (opts.undo) {
        const auto lock = ctx.lock(pool);
        const auto r = deploy::undo_factory_reset(pool, lock, root);
        if (opts.json) print_json(report_json(r));
        else if (!ctx.quiet)
            std::printf(r.scheduled ? "Cancelled the factory reset scheduled for '%s'.\n"
                                    : "Restored the state of '%s' from before its factory reset.\n",
                        root.str().c_str());
        return;
    }
    const auto level = deploy::parse_reset_level(opts.level);
    if (!level)
        throw Error("factory reset", root.str(), "unknown level '" + opts.level + "' (etc, state or all)",
                    Fault::InvalidInput);
    deploy::ResetOptions options{.level = *level, .keep = opts.keep, .homes = opts.homes, .dry_run = opts.dry_run,
                                 .on_next_boot = opts.on_next_boot};
    const auto lock = ctx.lock(pool);
    // Validation runs first (a dry run), so bad input fails before the question is asked.
    auto preview = options;
    preview.dry_run = true;
    const auto planned = deploy::factory_reset(pool, lock, root, preview);
    if (!opts.dry_run && !planned.scheduled) confirm(opts, root.str());
    const auto r = opts.dry_run ? planned : deploy::factory_reset(pool, lock, root, options);
    if (opts.json) print_json(report_json(r));
    else if (!ctx.quiet) print_reset(r);
}

}  // namespace

void register_factory_reset(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<ResetCliOptions>();
    auto* cmd = app.add_subcommand("factory-reset", "Put a root instance's state back to its vendor's factory defaults");
    cmd->add_option("ROOT", opts->root, "The root instance (name or full name; default: the booted or only one)");
    cmd->add_option("--level", opts->level, "What goes back to factory: etc, state (/etc and /var) or all")
        ->check(CLI::IsMember({"etc", "state", "all"}));
    cmd->add_option("--keep", opts->keep, "A path or glob under /etc or /var that survives (repeatable)");
    cmd->add_flag("--homes", opts->homes, "With --level all: also set aside the homes of the root's users");
    cmd->add_flag("--dry-run", opts->dry_run, "Show what would happen, change nothing");
    cmd->add_flag("--yes,-y", opts->yes, "Do not ask for confirmation");
    cmd->add_flag("--on-next-boot", opts->on_next_boot, "Schedule the reset for the root's next boot");
    cmd->add_flag("--undo", opts->undo, "Restore the state from before the last reset, or cancel a scheduled one");
    cmd->add_flag("--apply-scheduled", opts->apply_scheduled,
                  "Carry out scheduled resets of roots that are not mounted (run at boot by strata-factory-reset.service)");
    cmd->add_flag("--at-boot", opts->at_boot,
                  "With --apply-scheduled: find the pool by root=UUID= on the kernel command line and mount it (initrd)");
    cmd->add_flag("--json", opts->json, "Print JSON");
    cmd->callback([&ctx, opts] { run_reset(ctx, *opts); });
}

}  // namespace strata::cli
