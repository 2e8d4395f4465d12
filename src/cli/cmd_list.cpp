// strata list: the pool's subvolumes as a table or JSON.
#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"

#include "base/escape.hpp"

namespace strata::cli {
namespace {

struct ListOptions {
    std::optional<std::string> kind;
    bool json = false;
};

void run_list(const Context& ctx, const ListOptions& opts) {
    std::optional<naming::Kind> kind;
    if (opts.kind) {
        kind = naming::kind_from_string(*opts.kind);
        if (!kind && *opts.kind != "untyped")
            throw Error("list", "", "unknown kind '" + *opts.kind +
                                        "' (expected usr, runtime, framework, app, root, home or untyped)",
                        Fault::InvalidInput);
    }
    const auto pool = ctx.open_pool();
    std::vector<pool::Subvolume> shown;
    for (auto& s : pool.list()) {
        if (opts.kind && (s.typed ? std::optional(s.typed->kind()) : std::nullopt) != kind) continue;
        shown.push_back(std::move(s));
    }

    if (opts.json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& s : shown) out.push_back(subvolume_json(s));
        print_json(out);
        return;
    }
    Table table{{"NAME", "KIND", "ID", "ARCH", "VERSION", "RO", "CREATED"}, {}};
    for (const auto& s : shown) {
        const auto c = summary_columns(s);
        table.rows.push_back({escape(s.name), c.kind, c.id, c.arch, c.version, s.info.read_only() ? "yes" : "no",
                              format_time(s.info.otime)});
    }
    if (shown.empty() && !ctx.quiet) {
        std::printf("No subvolumes.\n");
        return;
    }
    print_table(table, ctx.quiet);
    if (!ctx.quiet) std::printf("\n%zu subvolume%s listed.\n", shown.size(), shown.size() == 1 ? "" : "s");
}

}  // namespace

void register_list(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<ListOptions>();
    auto* cmd = app.add_subcommand("list", "List the pool's subvolumes, sorted by kind, id, arch and version");
    cmd->add_option("--type", opts->kind, "Only this kind: usr, runtime, framework, app, root, home, untyped")
        ->type_name("KIND");
    cmd->add_flag("--json", opts->json, "Print JSON (docs/json.md)");
    cmd->callback([&ctx, opts] { run_list(ctx, *opts); });
}

}  // namespace strata::cli
