#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "support/scratch_pool.hpp"

using namespace strata;

// Scratch dirs all start with test::scratch_prefix under the temp dir; whatever loop device or
// mount still refers to one after the suite is a leak.
TEST_CASE("no test leaves a loop device or a mount behind") {
    const std::string prefix = (std::filesystem::temp_directory_path() / test::scratch_prefix).string();
    std::vector<std::string> leaks;
    for (const auto& entry : std::filesystem::directory_iterator("/sys/block")) {
        const auto dev = entry.path().filename().string();
        if (dev.rfind("loop", 0) != 0) continue;
        const auto backing = test::loop_backing_file("/dev/" + dev);
        if (backing.rfind(prefix, 0) == 0) leaks.push_back("/dev/" + dev + " -> " + backing);
    }
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string id, parent, devno, root, target;
        fields >> id >> parent >> devno >> root >> target;
        if (target.rfind(prefix, 0) == 0) leaks.push_back("mount " + target);
    }
    for (const auto& l : leaks) MESSAGE("leaked: " << l);
    CHECK(leaks.empty());
}
