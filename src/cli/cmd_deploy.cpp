// strata deploy: tie a root instance to a usr version and make it the default boot entry.
#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"

namespace strata::cli {

namespace {

struct DeployOptions {
    std::string root;
    std::optional<std::string> version;
    std::optional<std::vector<std::string>> kernel_args;
    bool json = false;
};

void run_deploy(const Context& ctx, const DeployOptions& opts) {
    const auto root = naming::Name::parse(opts.root);
    const auto pool = ctx.open_pool();
    const auto lock = ctx.lock(pool);
    const auto target = ctx.boot_target();
    const auto d = deploy::deploy(pool, lock, target, root, opts.version, opts.kernel_args);
    if (opts.json) {
        auto j = deployment_json(d);
        j["etc"] = d.etc ? etc_report_json(*d.etc, false) : nlohmann::json(nullptr);
        print_json(j);
        return;
    }
    if (!ctx.quiet)
        std::printf("Deployed '%s' with '%s' as the default entry '%s'.\n", d.root.c_str(), d.usr.c_str(),
                    d.entry_file.c_str());
    if (!d.etc || d.etc->skipped) return;
    const auto& s = d.etc->summary;
    if (!ctx.quiet)
        std::printf("Merged /etc from '%s': %zu vendor-changed, %zu added, %zu removed, %zu admin-changed, %zu conflicts.\n",
                    d.etc->from.c_str(), s.vendor_changed, s.added, s.removed, s.admin_changed, s.conflicts);
    // Conflicts need the admin's eye, so they are shown even with --quiet.
    print_etc_conflicts(*d.etc);
}

}  // namespace

void register_deploy(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<DeployOptions>();
    auto* cmd = app.add_subcommand("deploy", "Make ROOT boot the newest (or a given) usr version of its vendor by default");
    cmd->add_option("ROOT", opts->root, "The root instance, e.g. root:web:org.example.Demo:x86_64")->required();
    cmd->add_option("--version", opts->version, "Deploy this usr version instead of the newest")->type_name("V");
    cmd->add_option("--kernel-arg", opts->kernel_args, "Extra kernel argument for this root (repeatable; replaces earlier ones)")
        ->type_name("ARG");
    cmd->add_flag("--json", opts->json, "Print the deployment as JSON");
    cmd->callback([&ctx, opts] { run_deploy(ctx, *opts); });
}

}  // namespace strata::cli
