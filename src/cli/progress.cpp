#include "cli/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace strata::cli {
namespace {

std::string human_duration(double seconds) {
    const auto s = static_cast<long>(seconds + 0.5);
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
    return buf;
}

}  // namespace

std::string human_bytes(double bytes) {
    static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    size_t unit = 0;
    while (bytes >= 1024 && unit + 1 < std::size(units)) {
        bytes /= 1024;
        ++unit;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
    return buf;
}

ProgressLine::ProgressLine(bool enabled) : enabled_(enabled && ::isatty(STDERR_FILENO) == 1) {}

ProgressLine::~ProgressLine() {
    if (shown_) std::fprintf(stderr, "\r\033[K");
}

ProgressFn ProgressLine::callback() {
    if (!enabled_) return {};
    return [this](const Progress& p) { show(p); };
}

void ProgressLine::show(const Progress& p) {
    const auto now = std::chrono::steady_clock::now();
    if (p.phase != phase_) {
        phase_ = std::string(p.phase);
        phase_start_ = now;
    } else if (now - last_draw_ < std::chrono::milliseconds(200)) {
        return;  // a terminal needs no more than five updates a second
    }
    last_draw_ = now;
    const double elapsed = std::chrono::duration<double>(now - phase_start_).count();
    const double rate = elapsed > 0.5 ? static_cast<double>(p.bytes) / elapsed : 0;
    std::string line = phase_ + ": " + human_bytes(static_cast<double>(p.bytes));
    if (p.total) line += " of " + human_bytes(static_cast<double>(*p.total));
    if (rate > 0) line += ", " + human_bytes(rate) + "/s";
    if (p.total && rate > 0 && *p.total >= p.bytes)
        line += ", " + human_duration(static_cast<double>(*p.total - p.bytes) / rate) + " left";
    else line += ", " + human_duration(elapsed);
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
    shown_ = true;
}

}  // namespace strata::cli
