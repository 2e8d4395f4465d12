#pragma once
// Exclusive advisory locks (flock) on a lock file. Held for the lifetime of the object; released
// by the kernel when the process dies, so a crash never leaves a stale lock behind.
#include <chrono>
#include <string_view>

#include "base/fd.hpp"

namespace strata {

class FileLock {
public:
    // Waits up to timeout for the lock; then throws Error(Fault::Busy) with busy_reason.
    static FileLock acquire(const Dir& dir, std::string_view name, std::chrono::milliseconds timeout,
                            std::string_view busy_reason);

private:
    explicit FileLock(Fd fd) : fd_(std::move(fd)) {}
    Fd fd_;
};

}  // namespace strata
