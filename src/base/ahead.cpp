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

}  // namespace strata
