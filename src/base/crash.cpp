#include "base/crash.hpp"

#include <csignal>
#include <cstdlib>

namespace strata {

void crash_point(std::string_view step) {
    const char* at = std::getenv("STRATA_TEST_CRASH_AT");
    if (at && step == at) std::raise(SIGKILL);
}

}  // namespace strata
