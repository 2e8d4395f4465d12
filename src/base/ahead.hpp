#pragma once
// Work on a stream of bytes moved to a thread of its own, so that it shares the cores with the
// work beside it instead of taking turns: Ahead produces pieces before the caller takes them (an
// old initrd inflated while the delta decoder patches and replays the new one), Behind consumes
// what the caller feeds (a stream checked and handed to btrfs receive, or hashed, while the
// decoder rebuilds the next records). Both wait in bounded queues.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

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

class Behind {
public:
    // Runs on the thread with the fed bytes, in order, in batches of about batch_bytes. An
    // exception it throws ends the consuming and is thrown to the caller at its next batch.
    using Consumer = std::function<void(std::string_view)>;

    // The caller waits while max_waiting_bytes or more are fed and not consumed.
    Behind(Consumer consume, size_t batch_bytes, size_t max_waiting_bytes);
    // Without finish() (the caller failed): what is still waiting is dropped.
    ~Behind();
    Behind(const Behind&) = delete;
    Behind& operator=(const Behind&) = delete;

    void feed(std::string_view data);
    // Everything fed has been consumed when this returns; rethrows the consumer's exception.
    void finish();

private:
    void push();
    void run();
    void stop();

    Consumer consume_;
    const size_t batch_bytes_, max_waiting_bytes_;
    std::string batch_;  // the caller's, until pushed
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::string> queue_;
    std::vector<std::string> spare_;  // consumed batches, their memory kept for the next ones
    size_t waiting_bytes_ = 0;
    bool closed_ = false, failed_ = false;
    std::exception_ptr error_;  // set by the consumer before failed_
    std::thread thread_;        // last: started once the rest is in place
};

}  // namespace strata
