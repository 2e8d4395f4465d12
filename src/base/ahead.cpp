#include "base/ahead.hpp"

#include <utility>

namespace strata {

Ahead::Ahead(Producer produce, size_t max_bytes)
    : produce_(std::move(produce)), max_bytes_(max_bytes), thread_([this] { run(); }) {}

Ahead::~Ahead() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    changed_.notify_all();
    thread_.join();
}

void Ahead::run() {
    while (true) {
        {
            std::unique_lock lock(mutex_);
            changed_.wait(lock, [&] { return stopping_ || queued_bytes_ < max_bytes_; });
            if (stopping_) return;
        }
        std::optional<std::string> piece;
        std::exception_ptr error;
        try {
            piece = produce_();
        } catch (...) {
            error = std::current_exception();
        }
        {
            const std::lock_guard lock(mutex_);
            if (piece) {
                queued_bytes_ += piece->size();
                queue_.push_back(std::move(*piece));
            } else {
                ended_ = true;
                error_ = error;
            }
        }
        changed_.notify_all();
        if (!piece) return;
    }
}

std::optional<std::string> Ahead::take() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !queue_.empty() || ended_; });
    if (queue_.empty()) {
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
        return std::nullopt;
    }
    auto piece = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= piece.size();
    lock.unlock();
    changed_.notify_all();
    return piece;
}

Behind::Behind(Consumer consume, size_t batch_bytes, size_t max_waiting_bytes)
    : consume_(std::move(consume)), batch_bytes_(batch_bytes), max_waiting_bytes_(max_waiting_bytes),
      thread_([this] { run(); }) {}

Behind::~Behind() {
    if (!thread_.joinable()) return;
    {
        const std::lock_guard lock(mutex_);
        queue_.clear();
    }
    stop();
}

void Behind::feed(std::string_view data) {
    batch_.append(data);
    if (batch_.size() >= batch_bytes_) push();
}

void Behind::finish() {
    if (!batch_.empty()) push();
    stop();
    if (error_) std::rethrow_exception(error_);
}

void Behind::stop() {
    {
        const std::lock_guard lock(mutex_);
        closed_ = true;
    }
    changed_.notify_all();
    thread_.join();
}

void Behind::push() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return waiting_bytes_ < max_waiting_bytes_ || failed_; });
    if (failed_) std::rethrow_exception(error_);
    waiting_bytes_ += batch_.size();
    queue_.push_back(std::move(batch_));
    // A consumed batch is used again: freeing it on the thread and allocating anew here made the
    // two wait for each other's malloc arena lock (a fifth of a second of a kernel update).
    batch_.clear();
    if (!spare_.empty()) {
        batch_ = std::move(spare_.back());
        spare_.pop_back();
    }
    lock.unlock();
    changed_.notify_all();
    // Room for a batch and the piece that completes it, so that appending does not reallocate.
    batch_.reserve(batch_bytes_ + batch_bytes_ / 4);
}

void Behind::run() {
    while (true) {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return !queue_.empty() || closed_; });
        if (queue_.empty()) return;
        std::string batch = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        try {
            consume_(batch);
        } catch (...) {
            lock.lock();
            error_ = std::current_exception();
            failed_ = true;
            lock.unlock();
            changed_.notify_all();
            return;
        }
        lock.lock();
        waiting_bytes_ -= batch.size();
        batch.clear();
        spare_.push_back(std::move(batch));
        lock.unlock();
        changed_.notify_all();
    }
}

}  // namespace strata
