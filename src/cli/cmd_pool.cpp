// strata pool: create, mount and unmount the pool itself.
#include "base/size.hpp"
#include "base/error.hpp"
#include "cli/context.hpp"
#include "pool/setup.hpp"

namespace strata::cli {
namespace {

struct PoolOptions {
    std::optional<std::filesystem::path> image;
    std::optional<std::string> size;
    std::optional<std::filesystem::path> device;
    bool force = false;
};

void run_init(const Context& ctx, const PoolOptions& opts) {
    const auto mountpoint = ctx.effective_pool_path();
    if (opts.device) {
        if (opts.image || opts.size)
            throw Error("pool init", "", "--device cannot be combined with --image or --size", Fault::InvalidInput);
        if (!opts.force)
            throw Error("pool init", opts.device->string(),
                        "this destroys all data on the device; add --force to confirm", Fault::InvalidInput);
        pool::create_device_pool(*opts.device, mountpoint);
    } else {
        const uint64_t size = opts.size ? parse_size(*opts.size) : ctx.config.pool.image_size;
        pool::create_image_pool(opts.image.value_or(ctx.config.pool.image), size, mountpoint);
    }
    if (!ctx.quiet) std::printf("Created pool at %s.\n", mountpoint.c_str());
}

}  // namespace

void register_pool(CLI::App& app, Context& ctx) {
    auto* pool = app.add_subcommand("pool", "Create, mount or unmount the pool");
    pool->require_subcommand(1);

    auto init_opts = std::make_shared<PoolOptions>();
    auto* init = pool->add_subcommand(
        "init", "Create a pool: a loop-backed image file (the default) or a whole device, mounted at --pool");
    init->add_option("--image", init_opts->image, "Image file to create (default: pool.image from the configuration)")
        ->type_name("FILE");
    init->add_option("--size", init_opts->size, "Image size, e.g. 4G (default: pool.image-size)")->type_name("SIZE");
    init->add_option("--device", init_opts->device, "Block device to format instead of an image")->type_name("DEV");
    init->add_flag("--force", init_opts->force, "Confirm that --device may be overwritten");
    init->callback([&ctx, init_opts] { run_init(ctx, *init_opts); });

    auto mount_image = std::make_shared<std::optional<std::filesystem::path>>();
    auto* mount = pool->add_subcommand("mount", "Mount an existing pool image at --pool (e.g. after a reboot)");
    mount->add_option("--image", *mount_image, "Image file (default: pool.image)")->type_name("FILE");
    mount->callback([&ctx, mount_image] {
        pool::mount_image_pool(mount_image->value_or(ctx.config.pool.image), ctx.effective_pool_path());
    });

    auto* umount = pool->add_subcommand("umount", "Unmount the pool (its loop device detaches with it)");
    umount->callback([&ctx] { pool::unmount_pool(ctx.effective_pool_path()); });
}

}  // namespace strata::cli
