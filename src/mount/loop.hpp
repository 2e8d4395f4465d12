#pragma once
// Loop devices through /dev/loop-control and LOOP_CONFIGURE. A LoopDevice detaches what it
// attached when destroyed; with auto_clear the kernel detaches it instead once nothing holds
// it (the mount it backs is gone), which is how a pool image stays attached only while mounted.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "base/fd.hpp"

namespace strata::mount {

struct LoopOptions {
    bool auto_clear = false;
    bool read_only = false;
    uint64_t offset = 0;
    uint64_t size_limit = 0;  // 0: to the end of the file
    // The device reads and writes the backing file with direct I/O, as systemd's loop devices do:
    // the image's blocks are then cached once, by the file system on the device, instead of also
    // in the backing file's page cache (twice the memory, and every write copied once more before
    // it reaches the disk). Where the backing file cannot do direct I/O (an unaligned offset, a
    // file system without it) the kernel keeps buffered I/O.
    bool direct_io = true;
};

class LoopDevice {
public:
    static LoopDevice attach(const std::filesystem::path& backing_file, const LoopOptions& options);
    LoopDevice(LoopDevice&&) noexcept = default;
    LoopDevice& operator=(LoopDevice&&) noexcept = delete;
    ~LoopDevice();

    const std::filesystem::path& device() const { return device_; }
    // Closes our handle without detaching: an auto-clear device then lives as long as its users.
    void release();

private:
    LoopDevice(Fd fd, std::filesystem::path device, bool auto_clear)
        : fd_(std::move(fd)), device_(std::move(device)), auto_clear_(auto_clear) {}
    Fd fd_;
    std::filesystem::path device_;
    bool auto_clear_ = false;
};

// The kernel clears an auto-clear device after its last user is gone, but not necessarily before
// umount returns (the release runs asynchronously). Waits up to timeout for device to have no
// backing file any more; returns whether it is detached. A path that is not a loop device counts
// as detached.
bool wait_detached(const std::filesystem::path& device, std::chrono::milliseconds timeout);

}  // namespace strata::mount
