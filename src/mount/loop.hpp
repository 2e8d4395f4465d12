#pragma once
// Loop devices through /dev/loop-control and LOOP_CONFIGURE. A LoopDevice detaches what it
// attached when destroyed; with auto_clear the kernel detaches it instead once nothing holds
// it (the mount it backs is gone), which is how a pool image stays attached only while mounted.
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

}  // namespace strata::mount
