#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "support/scratch_pool.hpp"

using namespace strata;

namespace {

// Scratch dirs all start with test::scratch_prefix under the temp dir; a loop device or a mount
// that refers to one is a scratch pool somebody did not clean up.
std::vector<std::string> scratch_leftovers() {
    const std::string prefix = (std::filesystem::temp_directory_path() / test::scratch_prefix).string();
    std::vector<std::string> found;
    for (const auto& entry : std::filesystem::directory_iterator("/sys/block")) {
        const auto dev = entry.path().filename().string();
        if (dev.rfind("loop", 0) != 0) continue;
        const auto backing = test::loop_backing_file("/dev/" + dev);
        if (backing.rfind(prefix, 0) == 0) found.push_back("/dev/" + dev + " -> " + backing);
    }
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string id, parent, devno, root, target;
        fields >> id >> parent >> devno >> root >> target;
        if (target.rfind(prefix, 0) == 0) found.push_back("mount " + target);
    }
    return found;
}

// What was left before this ctest run started (say, by a run killed halfway) is not this run's
// leak; ctest records it first so the final check judges only this run.
std::filesystem::path baseline_file() {
    const char* path = std::getenv("STRATA_LEAK_BASELINE");
    REQUIRE_MESSAGE(path != nullptr, "STRATA_LEAK_BASELINE is not set (run through ctest)");
    return path;
}

}  // namespace

TEST_CASE("record what was left over before the suite started") {
    std::ofstream out(baseline_file(), std::ios::trunc);
    for (const auto& l : scratch_leftovers()) {
        MESSAGE("left over from before this run, not judged: " << l);
        out << l << '\n';
    }
    CHECK(out.good());
}

TEST_CASE("no test leaves a loop device or a mount behind") {
    std::vector<std::string> before;
    std::ifstream in(baseline_file());
    for (std::string line; std::getline(in, line);) before.push_back(line);
    std::vector<std::string> leaks;
    for (const auto& l : scratch_leftovers())
        if (std::find(before.begin(), before.end(), l) == before.end()) leaks.push_back(l);
    for (const auto& l : leaks) MESSAGE("leaked: " << l);
    CHECK(leaks.empty());
}
