#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <future>

#include "base/fd.hpp"
#include "e2e/e2e.hpp"

using namespace strata;

namespace {
const std::filesystem::path example = std::filesystem::path(STRATA_SOURCE_DIR) / "examples/usr-demo";
}

TEST_CASE("a second mutating command fails with 'pool is busy' while the lock is held, changing nothing") {
    test::ScratchPool scratch;
    const auto mnt = scratch.mountpoint();
    REQUIRE(test::strata_on(mnt, {"list"}).exit_status == 0);
    std::filesystem::create_directories(mnt / ".strata");
    const auto config = scratch.dir() / "strata.toml";
    std::ofstream(config) << "[pool]\nlock-timeout-sec = 0.3\n";

    // Hold the lock the way another strata command would.
    const int fd = ::open((mnt / ".strata/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX) == 0);
    auto r = test::run_strata({"--pool", mnt.string(), "--config", config.string(), "import",
                               "usr:org.example.Demo:x86_64:1", "--from-dir", example.string()});
    ::close(fd);
    test::check_one_line_error(r, 5,
                               "lock '" + (mnt / ".strata/lock").string() +
                                   "': pool is busy: another strata command is changing it");
    CHECK(test::listed_names(mnt).empty());

    // Readers never wait for the lock.
    CHECK(test::strata_on(mnt, {"list"}).exit_status == 0);
}

TEST_CASE("two mutating commands at once are serialized: both imports land, a duplicate is refused") {
    test::ScratchPool scratch;
    const auto mnt = scratch.mountpoint();
    auto import = [&](const std::string& name) {
        return std::async(std::launch::async,
                          [=] { return test::strata_on(mnt, {"import", name, "--from-dir", example.string()}); });
    };
    auto a = import("usr:org.example.Demo:x86_64:1");
    auto b = import("usr:org.example.Demo:x86_64:2");
    auto c = import("usr:org.example.Demo:x86_64:2");
    const auto ra = a.get(), rb = b.get(), rc = c.get();
    CHECK(ra.exit_status == 0);
    // Exactly one of the two imports of version 2 wins; the other is told it exists.
    CHECK(((rb.exit_status == 0 && rc.exit_status == 4) || (rb.exit_status == 4 && rc.exit_status == 0)));
    CHECK(test::listed_names(mnt) ==
          std::vector<std::string>{"usr:org.example.Demo:x86_64:1", "usr:org.example.Demo:x86_64:2"});
    CHECK(Dir::open(mnt / ".strata/staging").entries().empty());
}
