// strata status: the booted deployment and every deployment of the pool.
#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"
#include "deploy/reset.hpp"
#include "update/update.hpp"

namespace strata::cli {
namespace {

void run_status(const Context& ctx, bool json) {
    const auto pool = ctx.open_pool();
    const auto st = deploy::status(pool, ctx.boot_target());
    const auto resets = deploy::scheduled_resets(pool);
    const auto unfinished = update::unfinished_update(pool);
    if (json) {
        nlohmann::json j;
        j["booted"] = st.booted ? nlohmann::json{{"root", st.booted->root}, {"usr", st.booted->usr}} : nlohmann::json(nullptr);
        j["loader_default"] = st.loader_default ? nlohmann::json(*st.loader_default) : nlohmann::json(nullptr);
        j["next_boot"] = st.next_boot ? nlohmann::json(*st.next_boot) : nlohmann::json(nullptr);
        j["deployments"] = nlohmann::json::array();
        for (const auto& d : st.deployments) j["deployments"].push_back(deployment_json(d));
        j["scheduled_factory_resets"] = nlohmann::json::array();
        for (const auto& r : resets)
            j["scheduled_factory_resets"].push_back({{"root", r.root}, {"level", std::string(deploy::to_string(r.level))}});
        j["unfinished_update"] = unfinished ? nlohmann::json(*unfinished) : nlohmann::json();
        print_json(j);
        return;
    }
    if (st.booted)
        std::printf("Booted: '%s' with '%s'\n", st.booted->root.c_str(), st.booted->usr.c_str());
    else
        std::printf("Booted: not booted from a strata pool\n");
    std::printf("Loader default: %s\n", st.loader_default ? st.loader_default->c_str() : "-");
    std::printf("Next boot: %s\n", st.next_boot ? st.next_boot->c_str() : "-");
    if (unfinished)
        std::printf("Unfinished update: stopped at %s; `strata update` continues it\n", unfinished->c_str());
    for (const auto& r : resets)
        std::printf("Factory reset scheduled: '%s' (level %s) on its next boot\n", r.root.c_str(),
                    std::string(deploy::to_string(r.level)).c_str());
    Table table{{"ROOT", "VERSION", "ENTRY", "BOOT", "DEFAULT", "BOOTED", "PINNED", "STATE-SNAPSHOT"}, {}};
    for (const auto& d : st.deployments) {
        std::string state(boot::to_string(d.state));
        if (d.tries_left) state += " (" + std::to_string(*d.tries_left) + " tries left)";
        table.rows.push_back({d.root, d.version, d.entry_file, state, d.is_default ? "yes" : "-",
                              d.booted ? "yes" : "-", d.pinned ? "yes" : "-", d.state_snapshot.value_or("-")});
    }
    std::printf("\n");
    print_table(table, ctx.quiet);
}

}  // namespace

void register_status(CLI::App& app, Context& ctx) {
    auto json = std::make_shared<bool>(false);
    auto* cmd = app.add_subcommand("status", "Show the booted deployment and every deployment with its boot entry");
    cmd->add_flag("--json", *json, "Print JSON");
    cmd->callback([&ctx, json] { run_status(ctx, *json); });
}

}  // namespace strata::cli
