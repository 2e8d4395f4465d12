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

    struct CloneOptions {
        std::string source, clone;
        bool keep_machine_id = false;
    };
    auto clone_opts = std::make_shared<CloneOptions>();
    auto* clone = root->add_subcommand("clone", "Create a root instance as a snapshot of another (same vendor and arch)");
    clone->add_option("SOURCE", clone_opts->source, "The instance to copy, e.g. root:web:org.example.Demo:x86_64")->required();
    clone->add_option("NEW", clone_opts->clone, "The new instance's name (e.g. web2) or full name")->required();
    clone->add_flag("--keep-machine-id", clone_opts->keep_machine_id, "Keep /etc/machine-id (default: removed, so the clone is a new machine)");
    clone->callback([&ctx, clone_opts] {
        const auto source = naming::Name::parse(clone_opts->source);
        const auto target = clone_opts->clone.find(':') == std::string::npos
                                ? naming::Name::root(clone_opts->clone, source.vendor_id(), source.arch())
                                : naming::Name::parse(clone_opts->clone);
        const auto pool = ctx.open_pool();
        const auto lock = ctx.lock(pool);
        deploy::clone_root(pool, lock, source, target, clone_opts->keep_machine_id);
        if (!ctx.quiet) std::printf("Created '%s' from '%s'.\n", target.str().c_str(), source.str().c_str());
    });

    auto remove_name = std::make_shared<std::string>();
    auto* remove = root->add_subcommand("remove", "Delete a root instance, its boot entries and its state snapshots");
    remove->add_option("ROOT", *remove_name, "The instance, e.g. root:web:org.example.Demo:x86_64")->required();
    remove->callback([&ctx, remove_name] {
        const auto name = naming::Name::parse(*remove_name);
        const auto pool = ctx.open_pool();
        const auto lock = ctx.lock(pool);
        // Without a $BOOT there are no entries to remove; the instance still goes.
        std::optional<deploy::BootTarget> target;
        try {
            target.emplace(ctx.boot_target());
        } catch (const Error& e) {
            if (e.fault() != Fault::NotFound) throw;
        }
        deploy::remove_root(pool, lock, name, target ? &target->boot : nullptr);
        if (!ctx.quiet) std::printf("Removed '%s'.\n", name.str().c_str());
    });
}

}  // namespace strata::cli
