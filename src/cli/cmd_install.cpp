// strata install: lay out a disk or image with an ESP and a pool, and deploy a first root onto it.
#include "base/error.hpp"
#include "base/size.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"
#include "install/install.hpp"

namespace strata::cli {
namespace {

struct InstallCliOptions {
    std::string target;
    std::optional<std::string> size;
    std::string esp_size = "512M";
    std::string usr;
    std::optional<std::string> from_stream;
    std::string root;
    std::vector<std::string> kernel_args;
    bool force = false;
    bool json = false;
};

void run_install(const Context& ctx, const InstallCliOptions& opts) {
    install::InstallOptions o;
    o.target = opts.target;
    if (opts.size) o.size = parse_size(*opts.size);
    o.esp_size = parse_size(opts.esp_size);
    o.usr = opts.usr;
    o.root = opts.root;
    o.kernel_args = opts.kernel_args;
    o.global_kernel_args = ctx.config.boot.kernel_args;
    o.tries = ctx.config.boot.tries;
    o.force = opts.force;
    std::optional<pool::Pool> source;
    if (opts.from_stream) {
        o.from_stream = *opts.from_stream;
    } else {
        source.emplace(ctx.open_pool());
        o.from_pool = &*source;
    }
    const auto r = install::install(o);
    if (opts.json) {
        print_json({{"target", opts.target},
                    {"usr", r.usr},
                    {"root", r.root},
                    {"entry", r.entry_id},
                    {"entry_file", r.entry_file},
                    {"pool_uuid", r.pool_uuid},
                    {"esp", {{"offset", r.esp_offset}, {"size", r.esp_size}}},
                    {"pool", {{"offset", r.pool_offset}, {"size", r.pool_size}}}});
        return;
    }
    if (!ctx.quiet)
        std::printf("Installed '%s' with '%s' to '%s': ESP %s, pool %s (UUID %s), default entry '%s'.\n", r.usr.c_str(),
                    r.root.c_str(), opts.target.c_str(), format_size(r.esp_size).c_str(), format_size(r.pool_size).c_str(),
                    r.pool_uuid.c_str(), r.entry_id.c_str());
}

}  // namespace

void register_install(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<InstallCliOptions>();
    auto* cmd = app.add_subcommand(
        "install", "Lay out a disk or image (GPT: ESP with systemd-boot + btrfs pool) and deploy a root onto it");
    cmd->add_option("--target", opts->target, "Image file (created with --size) or block device")->required()->type_name("DISK");
    cmd->add_option("--size", opts->size, "Size of a new image file, e.g. 4G")->type_name("SIZE");
    cmd->add_option("--esp-size", opts->esp_size, "Size of the ESP (default 512M, at least 64M)")->type_name("SIZE");
    cmd->add_option("--usr", opts->usr, "The usr tree to install, e.g. usr:org.example.Demo:x86_64:1.0; from --pool unless --from-stream")
        ->required()
        ->type_name("NAME");
    cmd->add_option("--from-stream", opts->from_stream, "Import the usr tree from this send stream instead of the pool")
        ->type_name("FILE");
    cmd->add_option("--root", opts->root, "Name of the root instance to create, e.g. web (or root:web:VENDOR:ARCH)")
        ->required()
        ->type_name("NAME");
    cmd->add_option("--kernel-arg", opts->kernel_args, "Extra kernel argument for the root (repeatable), e.g. console=ttyS0")
        ->type_name("ARG");
    cmd->add_flag("--force", opts->force, "Overwrite a target that is not empty");
    cmd->add_flag("--json", opts->json, "Print the result as JSON");
    cmd->callback([&ctx, opts] { run_install(ctx, *opts); });
}

}  // namespace strata::cli
