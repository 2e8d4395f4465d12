#pragma once
// Work done ahead on a thread of its own: a producer's pieces wait in a bounded queue until the
// consumer takes them, so decoding one stream overlaps the work that uses it (an old initrd
// inflated while the delta decoder patches and replays the new one).
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace strata {

class Ahead {
public:
    // The next piece, or nullopt at the end. Runs on the thread until the end, an exception, or
    // the Ahead's destruction; it waits while max_bytes or more are queued.
    using Producer = std::function<std::optional<std::string>()>;

    Ahead(Producer produce, size_t max_bytes);
    ~Ahead();
    Ahead(const Ahead&) = delete;
    Ahead& operator=(const Ahead&) = delete;

    // The next piece, waiting for it; nullopt at the end. An exception the producer threw is
    // thrown here once the pieces before it are taken.
    std::optional<std::string> take();

private:
    void run();

    Producer produce_;
    size_t max_bytes_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::string> queue_;
    size_t queued_bytes_ = 0;
    bool ended_ = false, stopping_ = false;
    std::exception_ptr error_;
    std::thread thread_;  // last: started once the rest is in place
};

}  // namespace strata
