#include "pool/setup.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/error.hpp"
#include "base/process.hpp"
#include "mount/loop.hpp"
#include "mount/mount.hpp"
#include "pool/pool.hpp"

namespace strata::pool {
namespace {

void require_free_mountpoint(const std::filesystem::path& mountpoint) {
    std::filesystem::create_directories(mountpoint);
    if (auto m = mount::find_mount(mountpoint))
        throw Error("use mount point", mountpoint.string(), "'" + m->source + "' is mounted there already",
                    Fault::Exists);
}

void make_btrfs(const std::filesystem::path& target, bool force) {
    std::vector<std::string> argv = {"mkfs.btrfs", "-q", "-L", "strata"};
    if (force) argv.push_back("-f");
    argv.push_back(target.string());
    run_checked(argv);
}

// Attaches image and mounts it; the loop device detaches itself when the pool is unmounted.
void attach_and_mount(const std::filesystem::path& image, const std::filesystem::path& mountpoint) {
    auto loop = mount::LoopDevice::attach(image, {.auto_clear = true});
    mount::mount(loop.device(), mountpoint, "btrfs");
    mount::MountGuard guard(mountpoint);
    Pool::open(mountpoint);  // proves the result is a usable pool
    guard.release();
    loop.release();
}

}  // namespace

void create_image_pool(const std::filesystem::path& image, uint64_t size, const std::filesystem::path& mountpoint) {
    with_context("create pool image", image.string(), [&] {
        if (size < min_pool_size)
            throw Error("", "", "size must be at least 128M for a btrfs filesystem", Fault::InvalidInput);
        require_free_mountpoint(mountpoint);
        if (image.has_parent_path()) std::filesystem::create_directories(image.parent_path());
        {
            Fd fd(::open(image.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
            if (!fd) throw_errno("create", image.string());
            if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0) {
                const int saved = errno;
                ::unlink(image.c_str());
                throw Error("resize", image.string(), saved);
            }
        }
        try {
            make_btrfs(image, /*force=*/false);
            attach_and_mount(image, mountpoint);
        } catch (...) {
            ::unlink(image.c_str());
            throw;
        }
    });
}

void create_device_pool(const std::filesystem::path& device, const std::filesystem::path& mountpoint) {
    with_context("create pool on device", device.string(), [&] {
        struct stat st {};
        check_errno(::stat(device.c_str(), &st), "stat", device.string());
        if (!S_ISBLK(st.st_mode)) throw Error("", "", "not a block device", Fault::InvalidInput);
        require_free_mountpoint(mountpoint);
        make_btrfs(device, /*force=*/true);
        mount::mount(device, mountpoint, "btrfs");
        mount::MountGuard guard(mountpoint);
        Pool::open(mountpoint);
        guard.release();
    });
}

void mount_image_pool(const std::filesystem::path& image, const std::filesystem::path& mountpoint) {
    with_context("mount pool image", image.string(), [&] {
        if (!std::filesystem::exists(image)) throw Error("", "", "no such image; create it with 'strata pool init'", Fault::NotFound);
        require_free_mountpoint(mountpoint);
        attach_and_mount(image, mountpoint);
    });
}

void unmount_pool(const std::filesystem::path& mountpoint) {
    with_context("unmount pool", mountpoint.string(), [&] {
        Pool::open(mountpoint);  // refuse to unmount something that is not a pool
        const auto mounted = mount::find_mount(mountpoint);
        mount::umount(mountpoint);
        // Done means detached too: whoever runs next (pool mount, a test's leak check) must not
        // find the image still attached.
        const auto still_mounted = [&] {
            const auto all = mount::list_mounts();
            return std::any_of(all.begin(), all.end(), [&](const auto& m) { return m.source == mounted->source; });
        };
        if (mounted && !still_mounted() && !mount::wait_detached(mounted->source, std::chrono::seconds(10)))
            throw Error("", "", "unmounted, but '" + mounted->source + "' is still attached (in use elsewhere?)",
                        Fault::Failed);
    });
}

}  // namespace strata::pool
