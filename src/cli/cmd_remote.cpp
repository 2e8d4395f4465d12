// strata remote: the repositories `strata update` fetches from ([remote.NAME] in the configuration).
#include <cstdio>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"

namespace strata::cli {
namespace {

struct RemoteAddOptions {
    std::string name, url;
    std::vector<std::string> keys;
    bool insecure = false, force = false;
};

void run_add(const Context& ctx, const RemoteAddOptions& opts) {
    config::RemoteSettings remote{.url = opts.url, .keys = {}, .insecure = opts.insecure};
    for (const auto& k : opts.keys) remote.keys.emplace_back(k);
    const auto text = with_context("add remote", opts.name, [&] { return config::render_remote(opts.name, remote); });
    if (ctx.config.remotes.contains(opts.name) && !opts.force)
        throw Error("add remote", opts.name, "exists already (--force replaces it)", Fault::Exists);
    const auto file = config::remote_dropin(ctx.config_dropin_dir(), opts.name);
    std::filesystem::create_directories(file.parent_path());
    write_file_atomic(Dir::open(file.parent_path()), file.filename().string(), text);
    if (!ctx.quiet) std::printf("Added remote '%s' (%s) in %s.\n", opts.name.c_str(), opts.url.c_str(), file.c_str());
}

void run_remove(const Context& ctx, const std::string& name) {
    const auto file = with_context("remove remote", name, [&] { return config::remote_dropin(ctx.config_dropin_dir(), name); });
    if (!ctx.config.remotes.contains(name)) throw Error("remove remote", name, "no such remote", Fault::NotFound);
    std::error_code ec;
    if (!std::filesystem::remove(file, ec))
        throw Error("remove remote", name,
                    ec ? ec.message() : "it is configured in another file, not by `strata remote add`: edit that file",
                    Fault::Failed);
    if (!ctx.quiet) std::printf("Removed remote '%s'.\n", name.c_str());
}

void run_list(const Context& ctx, bool json) {
    if (json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& [name, r] : ctx.config.remotes) {
            std::vector<std::string> keys;
            for (const auto& k : r.keys) keys.push_back(k.string());
            out.push_back({{"name", name}, {"url", r.url}, {"keys", keys}, {"insecure", r.insecure}});
        }
        print_json(out);
        return;
    }
    Table table{{"NAME", "URL", "KEYS", "SIGNATURES"}, {}};
    for (const auto& [name, r] : ctx.config.remotes) {
        std::string keys;
        for (const auto& k : r.keys) keys += (keys.empty() ? "" : ",") + k.string();
        table.rows.push_back({name, r.url, keys.empty() ? "system" : keys, r.insecure ? "NOT CHECKED" : "required"});
    }
    print_table(table, ctx.quiet);
}

}  // namespace

void register_remote(CLI::App& app, Context& ctx) {
    auto* remote = app.add_subcommand("remote", "Manage the repositories updates come from");
    remote->require_subcommand(1);

    auto add_opts = std::make_shared<RemoteAddOptions>();
    auto* add = remote->add_subcommand("add", "Add a repository (a drop-in in the configuration's .d directory)");
    add->add_option("NAME", add_opts->name, "A name for it, e.g. vendor")->required();
    add->add_option("URL", add_opts->url, "file:///..., http://... or https://...")->required();
    add->add_option("--key", add_opts->keys, "A trusted .pub file or key directory for it (default: the system's keys)");
    add->add_flag("--insecure", add_opts->insecure, "Accept an unsigned or badly signed index (not recommended)");
    add->add_flag("--force", add_opts->force, "Replace a remote of that name");
    add->callback([&ctx, add_opts] { run_add(ctx, *add_opts); });

    auto remove_name = std::make_shared<std::string>();
    auto* remove = remote->add_subcommand("remove", "Remove a repository added with `remote add`");
    remove->add_option("NAME", *remove_name, "The remote")->required();
    remove->callback([&ctx, remove_name] { run_remove(ctx, *remove_name); });

    auto json = std::make_shared<bool>(false);
    auto* list = remote->add_subcommand("list", "List the configured repositories");
    list->add_flag("--json", *json, "Print JSON");
    list->callback([&ctx, json] { run_list(ctx, *json); });
}

}  // namespace strata::cli
