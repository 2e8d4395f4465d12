// strata inspect: every field of one subvolume.
#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"

#include "base/escape.hpp"

namespace strata::cli {
namespace {

struct InspectOptions {
    std::string name;
    bool json = false;
};

void run_inspect(const Context& ctx, const InspectOptions& opts) {
    const auto pool = ctx.open_pool();
    // An existing subvolume is shown even when its name is not in the scheme; anything else must
    // be a valid name, so a typo gets the parser's explanation rather than just "not found".
    auto found = pool.find(opts.name);
    if (!found) {
        naming::Name::parse(opts.name);
        throw Error("inspect", opts.name, "no such subvolume in pool '" + pool.path().string() + "'",
                    Fault::NotFound);
    }
    const auto& s = *found;
    // The base: the pool object this one was snapshotted from (import --base, or the parent an
    // incremental stream was received against), while it is still in the pool.
    const auto base = pool.find_by_uuid(s.info.parent_uuid);
    if (opts.json) {
        auto j = subvolume_json(s);
        j["base"] = base ? nlohmann::json(base->name) : nlohmann::json(nullptr);
        print_json(j);
        return;
    }
    const auto c = summary_columns(s);
    auto uuid = [](const btrfs::Uuid& u) { return btrfs::is_null(u) ? std::string("-") : btrfs::format_uuid(u); };
    std::vector<std::pair<std::string, std::string>> fields = {{"Name", escape(s.name)}, {"Kind", c.kind}};
    for (const auto& [key, value] : c.details) fields.emplace_back(key, value);
    fields.insert(fields.end(), {
        {"Read-only", s.info.read_only() ? "yes" : "no"},
        {"Created", format_time(s.info.otime)},
        {"Subvolume ID", std::to_string(s.info.id)},
        {"Generation", std::to_string(s.info.generation)},
        {"UUID", uuid(s.info.uuid)},
        {"Base", base ? escape(base->name) : std::string("-")},
        {"Parent UUID", uuid(s.info.parent_uuid)},
        {"Received UUID", uuid(s.info.received_uuid)},
    });
    print_report(fields);
}

}  // namespace

void register_inspect(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<InspectOptions>();
    auto* cmd = app.add_subcommand("inspect", "Show all fields of one subvolume, including its uuids");
    cmd->add_option("NAME", opts->name, "The subvolume's name, e.g. usr:org.example.Demo:x86_64:1.0")->required();
    cmd->add_flag("--json", opts->json, "Print JSON (docs/json.md)");
    cmd->callback([&ctx, opts] { run_inspect(ctx, *opts); });
}

}  // namespace strata::cli
