#include "cli/context.hpp"

#include "base/error.hpp"

#include "boot/boot_dir.hpp"

namespace strata::cli {

deploy::BootTarget Context::boot_target() const {
    auto found = boot::find_boot_dir(boot_dir ? boot_dir : config.boot.dir);
    deploy::BootTarget target(std::move(found.dir), std::move(found.esp));
    target.tries = config.boot.tries;
    target.kernel_args = config.boot.kernel_args;
    return target;
}

std::optional<deploy::BootTarget> Context::boot_target_if_any() const {
    if (boot_dir || config.boot.dir) return boot_target();
    try {
        return boot_target();
    } catch (const Error& e) {
        if (e.fault() == Fault::NotFound) return std::nullopt;
        throw;
    }
}

}  // namespace strata::cli
