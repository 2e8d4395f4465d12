// strata etc: preview the /etc merge of a deploy (diff), copy chosen entries between deployments (sync).
#include "base/error.hpp"
#include "base/escape.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"
#include "deploy/etc.hpp"

namespace strata::cli {

namespace {

struct DiffOptions {
    std::string root;
    std::optional<std::string> version;
    bool all = false;
    bool json = false;
};

void run_diff(const Context& ctx, const DiffOptions& opts) {
    const auto pool = ctx.open_pool();
    const auto report = deploy::etc_diff(pool, opts.root, opts.version);
    if (opts.json) {
        print_json(etc_report_json(report, opts.all));
        return;
    }
    if (report.skipped) {
        std::printf("Nothing to merge from '%s' to '%s': %s.\n", report.from.c_str(), report.to.c_str(),
                    report.skipped->c_str());
        return;
    }
    Table table{{"VERDICT", "ACTION", "PATH"}, {}};
    for (const auto& c : report.changes)
        if (opts.all || c.verdict != factory::Verdict::Unchanged)
            table.rows.push_back({std::string(to_string(c.verdict)), std::string(to_string(c.action)),
                                  escape("/etc/" + c.path)});
    print_table(table, ctx.quiet);
}

struct SyncOptions {
    std::string from, to;
    std::vector<std::string> paths;
    bool json = false;
};

void run_sync(const Context& ctx, const SyncOptions& opts) {
    const auto pool = ctx.open_pool();
    const auto lock = ctx.lock(pool);
    const auto r = deploy::etc_sync(pool, lock, ctx.boot_target(), opts.from, opts.to, opts.paths);
    if (opts.json) {
        nlohmann::json paths = nlohmann::json::array();
        for (const auto& p : r.paths) paths.push_back("/etc/" + p);
        print_json({{"from", r.from}, {"to", r.to}, {"target", r.target}, {"paths", paths}});
    } else if (!ctx.quiet) {
        for (const auto& p : r.paths)
            std::printf("Copied '%s' from '%s' into '%s'.\n", escape("/etc/" + p).c_str(), r.from.c_str(),
                        r.target.c_str());
    }
}

}  // namespace

void register_etc(CLI::App& app, Context& ctx) {
    auto* etc = app.add_subcommand(
        "etc", "Preview the /etc merge of a deploy, copy /etc entries between deployments");
    etc->require_subcommand(1);

    auto diff = std::make_shared<DiffOptions>();
    auto* d =
        etc->add_subcommand("diff", "Show per path what a deploy of ROOT to VERSION would do to its /etc");
    d->add_option("ROOT", diff->root, "The root instance, e.g. root:web:org.example.Demo:x86_64")->required();
    d->add_option("--to", diff->version, "Compare with this usr version (default: the newest)")
        ->type_name("VERSION");
    d->add_flag("--all", diff->all, "Include unchanged paths");
    d->add_flag("--json", diff->json, "Print JSON");
    d->callback([&ctx, diff] { run_diff(ctx, *diff); });

    auto sync = std::make_shared<SyncOptions>();
    auto* s =
        etc->add_subcommand("sync", "Copy entries of one deployment's /etc into another deployment's state");
    s->add_option("--from", sync->from, "The deployment to copy from (an id as 'strata status' shows)")
        ->required()
        ->type_name("DEPLOYMENT");
    s->add_option("--to", sync->to, "The deployment to copy into")->required()->type_name("DEPLOYMENT");
    s->add_option("PATH", sync->paths, "Entries under /etc, e.g. /etc/shadow")->required();
    s->add_flag("--json", sync->json, "Print JSON");
    s->callback([&ctx, sync] { run_sync(ctx, *sync); });
}

}  // namespace strata::cli
