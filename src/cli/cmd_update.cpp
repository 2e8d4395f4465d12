// strata update: the newest usr from the root's remote, verified, downloaded with resume, deployed.
#include <chrono>
#include <cstdio>

#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/exit_codes.hpp"
#include "cli/output.hpp"
#include "cli/progress.hpp"
#include "repo/index.hpp"
#include "update/update.hpp"

namespace strata::cli {
namespace {

struct UpdateCliOptions {
    std::optional<std::string> root, remote;
    bool check = false, download_only = false, allow_downgrade = false, prune = false, json = false, automatic = false;
};

// "full", "incremental" (a plain btrfs send stream) or "delta" (strata's delta payload).
const char* payload_description(const update::Plan& p) {
    if (p.payload_kind == repo::delta_kind) return "delta";
    return p.parent ? "incremental" : "full";
}

nlohmann::json plan_json(const update::Plan& p) {
    auto opt = [](const std::optional<std::string>& s) { return s ? nlohmann::json(*s) : nlohmann::json(); };
    return {{"remote", p.remote},
            {"root", p.root},
            {"current", p.current.empty() ? nlohmann::json() : nlohmann::json(p.current)},
            {"target", opt(p.target)},
            {"kind", p.target && !p.payload_url.empty() ? payload_description(p) : nlohmann::json()},
            {"payload_kind", p.payload_kind.empty() ? nlohmann::json() : nlohmann::json(p.payload_kind)},
            {"fallback", opt(p.fallback)},
            {"parent", opt(p.parent)},
            {"download_bytes", p.download_bytes},
            {"already_downloaded", p.already_downloaded},
            {"stream_bytes", p.stream_bytes},
            {"boot_bytes", p.boot_bytes},
            {"serial", p.serial},
            {"signed", p.signed_index}};
}

void print_plan(const update::Plan& p) {
    if (!p.signed_index)
        std::printf("WARNING: remote '%s' is configured insecure: its index was NOT verified.\n", p.remote.c_str());
    if (!p.target) {
        std::printf("Up to date: '%s' runs '%s' (remote '%s', serial %llu).\n", p.root.c_str(), p.current.c_str(),
                    p.remote.c_str(), static_cast<unsigned long long>(p.serial));
        return;
    }
    if (p.payload_url.empty()) {
        std::printf("Update available: '%s' (already in the pool), for '%s'.\n", p.target->c_str(), p.root.c_str());
        return;
    }
    if (p.fallback) std::printf("The delta did not apply (%s); using the plain stream instead.\n", p.fallback->c_str());
    std::printf("Update available: '%s' for '%s': %s %s%s, %s to download", p.target->c_str(), p.root.c_str(),
                payload_description(p), p.payload_kind == repo::delta_kind ? "payload" : "stream",
                p.parent ? (" from '" + *p.parent + "'").c_str() : "",
                human_bytes(static_cast<double>(p.download_bytes - p.already_downloaded)).c_str());
    if (p.already_downloaded > 0)
        std::printf(" (%s already downloaded)", human_bytes(static_cast<double>(p.already_downloaded)).c_str());
    std::printf(".\n");
}

void run_update(const Context& ctx, UpdateCliOptions opts) {
    // --auto: what the timer runs; update.policy says how far it goes.
    if (opts.automatic) {
        if (ctx.config.update.policy == "none") {
            if (!ctx.quiet) std::printf("update.policy is none: nothing to do.\n");
            return;
        }
        opts.check = ctx.config.update.policy == "check";
    }
    const auto pool = ctx.open_pool();
    const auto lock = ctx.lock(pool);
    ProgressLine progress(!ctx.quiet && !opts.json);
    // With --json, progress goes to stderr as JSON lines (one per phase change, else at most one
    // a second), for programs that drive strata; stdout keeps the one result object.
    std::string last_phase;
    auto last_line = std::chrono::steady_clock::time_point{};
    ProgressFn json_progress = [&](const Progress& p) {
        const auto now = std::chrono::steady_clock::now();
        if (p.phase == last_phase && now - last_line < std::chrono::seconds(1)) return;
        last_phase = std::string(p.phase);
        last_line = now;
        nlohmann::json line{{"phase", p.phase}, {"bytes", p.bytes}};
        line["total"] = p.total ? nlohmann::json(*p.total) : nlohmann::json();
        std::fprintf(stderr, "%s\n", line.dump().c_str());
    };
    const auto r = update::update(pool, lock, ctx.boot_target(), ctx.config,
                                  {.root = opts.root,
                                   .remote = opts.remote,
                                   .check_only = opts.check,
                                   .download_only = opts.download_only,
                                   .allow_downgrade = opts.allow_downgrade,
                                   .prune = opts.prune,
                                   .default_key_dirs = {"/usr/lib/strata/keys.d", "/etc/strata/keys.d"},
                                   .progress = opts.json && !ctx.quiet ? json_progress : progress.callback()});
    if (opts.json) {
        nlohmann::json j = plan_json(r.plan);
        j["downloaded"] = r.downloaded;
        j["imported"] = r.imported;
        j["deployment"] = r.deployment ? deployment_json(*r.deployment) : nlohmann::json();
        j["interrupted"] = r.interrupted ? nlohmann::json(*r.interrupted) : nlohmann::json();
        print_json(j);
    } else if (!ctx.quiet) {
        if (r.interrupted) std::printf("Continuing an unfinished update (it had reached: %s).\n", r.interrupted->c_str());
        print_plan(r.plan);
        if (r.downloaded && r.plan.already_downloaded > 0 && r.plan.already_downloaded < r.plan.download_bytes)
            std::printf("Resumed the download at %s.\n", human_bytes(static_cast<double>(r.plan.already_downloaded)).c_str());
        if (r.downloaded && opts.download_only) std::printf("Downloaded and verified; `strata update` applies it.\n");
        if (r.deployment)
            std::printf("Deployed '%s' as '%s'; it boots next (boot counting decides whether it stays).\n",
                        r.deployment->usr.c_str(), r.deployment->id.c_str());
    }
    if (opts.check && r.plan.target) throw ExitStatus{exit_update_available};
}

}  // namespace

void register_update(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<UpdateCliOptions>();
    auto* cmd = app.add_subcommand("update", "Update a root instance to the newest usr its remote publishes");
    cmd->add_option("ROOT", opts->root, "The root instance (default: the booted or only one)");
    cmd->add_option("--remote", opts->remote, "The remote (default: update.remote, else the only one)");
    cmd->add_flag("--check", opts->check, "Only say what would be fetched; exit 100 when an update is available");
    cmd->add_flag("--download-only", opts->download_only, "Download and verify, do not apply");
    cmd->add_flag("--allow-downgrade", opts->allow_downgrade, "Accept an older index or an older version");
    cmd->add_flag("--prune", opts->prune, "When space is short, remove old versions (gc) first");
    cmd->add_flag("--auto", opts->automatic,
                  "Go as far as update.policy says: none, check (like --check) or stage (update; it boots next)");
    cmd->add_flag("--json", opts->json, "Print JSON");
    cmd->callback([&ctx, opts] { run_update(ctx, *opts); });
}

}  // namespace strata::cli
