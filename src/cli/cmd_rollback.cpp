// strata rollback, set-default, boot-once: choose what boots next.
#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"

namespace strata::cli {
namespace {

struct Choice {
    std::string id;
    std::optional<std::string> root;
    bool with_state = false;
    bool json = false;
};

void report(const Context& ctx, const Choice& opts, const deploy::Deployment& d, const char* what) {
    if (opts.json) print_json(deployment_json(d));
    else if (!ctx.quiet) std::printf("%s '%s': '%s' with '%s'.\n", what, d.id.c_str(), d.root.c_str(), d.usr.c_str());
}

}  // namespace

void register_rollback(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<Choice>();
    auto* rollback = app.add_subcommand("rollback", "Make the root's previous deployment the default again");
    rollback->add_option("ROOT", opts->root, "The root instance (default: the booted one, or the only one)");
    rollback->add_flag("--with-state", opts->with_state,
                       "Also restore /etc, /var and the rest of the root from the snapshot kept for that deployment "
                       "(the current state is kept, so this can be undone)");
    rollback->add_flag("--json", opts->json, "Print the new default deployment as JSON");
    rollback->callback([&ctx, opts] {
        const auto pool = ctx.open_pool();
        const auto lock = ctx.lock(pool);
        report(ctx, *opts, deploy::rollback(pool, lock, ctx.boot_target(), opts->root, opts->with_state), "Default is now");
    });

    auto* set_default = app.add_subcommand("set-default", "Make a deployment (an entry id from 'strata status') the default");
    set_default->add_option("DEPLOYMENT", opts->id, "Entry id, e.g. org.example.Demo+web+1.0+x86_64")->required();
    set_default->add_flag("--json", opts->json, "Print the deployment as JSON");
    set_default->callback([&ctx, opts] {
        const auto pool = ctx.open_pool();
        const auto lock = ctx.lock(pool);
        report(ctx, *opts, deploy::set_default(pool, lock, ctx.boot_target(), opts->id), "Default is now");
    });

    auto* once = app.add_subcommand("boot-once", "Boot a deployment on the next boot only (EFI LoaderEntryOneShot)");
    once->add_option("DEPLOYMENT", opts->id, "Entry id, e.g. org.example.Demo+web+1.0+x86_64")->required();
    once->callback([&ctx, opts] {
        const auto pool = ctx.open_pool();
        deploy::boot_once(pool, ctx.boot_target(), opts->id);
        if (!ctx.quiet) std::printf("The next boot starts '%s' once.\n", opts->id.c_str());
    });
}

void register_pin(CLI::App& app, Context& ctx) {
    auto id = std::make_shared<std::string>();
    for (const bool pinned : {true, false}) {
        auto* cmd = app.add_subcommand(pinned ? "pin" : "unpin",
                                       pinned ? "Keep a deployment from garbage collection" : "Let gc remove a deployment again");
        cmd->add_option("DEPLOYMENT", *id, "Entry id from 'strata status'")->required();
        cmd->callback([&ctx, id, pinned] {
            const auto pool = ctx.open_pool();
            const auto lock = ctx.lock(pool);
            deploy::set_pinned(pool, lock, ctx.boot_target(), *id, pinned);
            if (!ctx.quiet) std::printf("%s '%s'.\n", pinned ? "Pinned" : "Unpinned", id->c_str());
        });
    }
}

}  // namespace strata::cli
