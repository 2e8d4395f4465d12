// strata root: manage root instances (the writable /etc, /var half of an OS).
#include "base/error.hpp"
#include "cli/context.hpp"
#include "deploy/root.hpp"

namespace strata::cli {
namespace {

struct RootCreateOptions {
    std::string name;
    std::string vendor;
    std::string arch;
};

void run_root_create(const Context& ctx, const RootCreateOptions& opts) {
    const auto name = naming::Name::root(opts.name, opts.vendor, opts.arch);
    const auto pool = ctx.open_pool();
    const auto lock = ctx.lock(pool);
    deploy::create_root(pool, lock, name);
    if (!ctx.quiet) std::printf("Created '%s'.\n", name.str().c_str());
}

}  // namespace

void register_root(CLI::App& app, Context& ctx) {
    auto* root = app.add_subcommand("root", "Manage root instances");
    root->require_subcommand(1);
    auto opts = std::make_shared<RootCreateOptions>();
    auto* create = root->add_subcommand("create", "Create an empty root instance root:NAME:VENDOR:ARCH");
    create->add_option("NAME", opts->name, "Instance name, e.g. web")->required();
    create->add_option("--vendor", opts->vendor, "Vendor id of the OS it runs, e.g. org.example.Demo")->required();
    create->add_option("--arch", opts->arch, "Architecture, e.g. x86_64")->required();
    create->callback([&ctx, opts] { run_root_create(ctx, *opts); });
}

}  // namespace strata::cli
