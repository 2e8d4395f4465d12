#pragma once
// Logging set-up for front ends. The library itself only logs at debug level (spdlog::debug) and
// reports failures by throwing; front ends decide what the user sees.
#include <string_view>

namespace strata::log {

enum class Verbosity { Quiet, Normal, Verbose, Trace };

// Sends log output to the journal when stderr is connected to it (running under systemd),
// to stderr otherwise. level_name comes from configuration; verbosity from -q/-v overrides it.
void setup(Verbosity verbosity, std::string_view level_name = "info");

bool stderr_is_journal();

}  // namespace strata::log
