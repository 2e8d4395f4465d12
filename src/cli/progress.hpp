#pragma once
// The one status line long operations show on a terminal: phase, bytes, rate, ETA when the size
// is known. Nothing at all when stderr is not a terminal or with --quiet.
#include <chrono>
#include <string>

#include "base/progress.hpp"

namespace strata::cli {

class ProgressLine {
public:
    explicit ProgressLine(bool enabled);
    ~ProgressLine();  // clears the line
    ProgressLine(const ProgressLine&) = delete;
    ProgressLine& operator=(const ProgressLine&) = delete;

    // A callback for the library; empty when disabled, so the library skips the work.
    ProgressFn callback();

private:
    void show(const Progress& p);
    bool enabled_;
    bool shown_ = false;
    std::string phase_;
    std::chrono::steady_clock::time_point phase_start_, last_draw_;
};

// "1.4 GiB", "312 KiB": for people, not exact (format_size is exact).
std::string human_bytes(double bytes);

}  // namespace strata::cli
