#include "base/lock.hpp"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <thread>

#include "base/error.hpp"

namespace strata {

FileLock FileLock::acquire(const Dir& dir, std::string_view name, std::chrono::milliseconds timeout,
                           std::string_view busy_reason) {
    Fd fd = dir.open_file(name, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto pause = std::chrono::milliseconds(10);
    for (;;) {
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return FileLock(std::move(fd));
        if (errno != EWOULDBLOCK && errno != EINTR) throw_errno("lock", dir.path_of(name).string());
        if (std::chrono::steady_clock::now() >= deadline)
            throw Error("lock", dir.path_of(name).string(), busy_reason, Fault::Busy);
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(200));
    }
}

}  // namespace strata
