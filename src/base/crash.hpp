#pragma once
// Test hook for crash safety: when the environment variable STRATA_TEST_CRASH_AT names a step,
// the process kills itself with SIGKILL there, as a power cut would stop it. Tests use it to
// prove that every step of a multi-step change leaves a bootable, consistent state.
#include <string_view>

namespace strata {

void crash_point(std::string_view step);

}  // namespace strata
