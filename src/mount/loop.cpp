#include "mount/loop.hpp"

#include <thread>

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>

#include "base/error.hpp"

namespace strata::mount {
namespace {

bool uses_direct_io(const Fd& device) {
    loop_info64 info{};
    return ::ioctl(device.get(), LOOP_GET_STATUS64, &info) == 0 && (info.lo_flags & LO_FLAGS_DIRECT_IO) != 0;
}

}  // namespace

LoopDevice LoopDevice::attach(const std::filesystem::path& backing_file, const LoopOptions& options) {
    const int open_mode = options.read_only ? O_RDONLY : O_RDWR;
    const Fd backing(::open(backing_file.c_str(), open_mode | O_CLOEXEC));
    if (!backing) throw_errno("open loop backing file", backing_file.string());
    const Fd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
    if (!control) throw_errno("open", "/dev/loop-control");

    loop_config config{};
    config.fd = static_cast<uint32_t>(backing.get());
    config.info.lo_offset = options.offset;
    config.info.lo_sizelimit = options.size_limit;
    uint32_t flags = 0;
    if (options.auto_clear) flags |= LO_FLAGS_AUTOCLEAR;
    if (options.read_only) flags |= LO_FLAGS_READ_ONLY;
    if (options.direct_io) flags |= LO_FLAGS_DIRECT_IO;
    config.info.lo_flags = flags;
    const std::string file = backing_file.string();
    std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), file.c_str(), LO_NAME_SIZE - 1);

    // Another process may take the free device between GET_FREE and CONFIGURE: then try the next.
    for (int attempt = 0; attempt < 64; ++attempt) {
        const int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
        if (number < 0) throw_errno("find free loop device", "/dev/loop-control");
        std::filesystem::path device = "/dev/loop" + std::to_string(number);
        Fd fd(::open(device.c_str(), open_mode | O_CLOEXEC));
        if (!fd) {
            if (errno == ENOENT || errno == EBUSY) continue;
            throw_errno("open", device.string());
        }
        if (::ioctl(fd.get(), LOOP_CONFIGURE, &config) < 0) {
            if (errno == EBUSY) continue;
            throw Error("attach '" + file + "' to", device.string(), errno);
        }
        if (spdlog::should_log(spdlog::level::debug))
            spdlog::debug("attached {} to {}{}", file, device.string(),
                          options.direct_io && !uses_direct_io(fd) ? " (buffered: no direct I/O on the backing file)" : "");
        return LoopDevice(std::move(fd), std::move(device), options.auto_clear);
    }
    throw Error("attach loop device for", file, "every free loop device was taken by others");
}

LoopDevice::~LoopDevice() {
    if (fd_ && !auto_clear_) {
        if (::ioctl(fd_.get(), LOOP_CLR_FD) < 0)
            spdlog::debug("detach {}: {}, ignoring", device_.string(), std::strerror(errno));
    }
}

void LoopDevice::release() { fd_ = Fd(); }

bool wait_detached(const std::filesystem::path& device, std::chrono::milliseconds timeout) {
    const std::string name = device.filename().string();
    if (!name.starts_with("loop")) return true;
    const std::filesystem::path backing = "/sys/block/" + name + "/loop/backing_file";
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        std::error_code ec;
        if (!std::filesystem::exists(backing, ec)) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

}  // namespace strata::mount
