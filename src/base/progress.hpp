#pragma once
// Long operations report how far they are; front ends decide whether and how to show it
// (a status line on a terminal, nothing in a pipe, D-Bus properties later).
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

namespace strata {

struct Progress {
    std::string_view phase;        // "validate", "receive", "copy", "send", ...
    uint64_t bytes = 0;            // processed so far in this phase
    std::optional<uint64_t> total; // known size of the phase, for an ETA
};

// May be empty: callers check before calling. Called often; it must be cheap and not throw.
using ProgressFn = std::function<void(const Progress&)>;

}  // namespace strata
