#include <sys/stat.h>

#include "btrfs/subvolume.hpp"
#include "e2e/e2e.hpp"

using namespace strata;

namespace {
const std::filesystem::path example = std::filesystem::path(STRATA_SOURCE_DIR) / "examples/usr-demo";
}

TEST_CASE("import --from-dir makes a read-only vendor tree with the example's content") {
    test::ScratchPool scratch;
    const auto mnt = scratch.mountpoint();
    auto r = test::strata_on(mnt, {"import", "usr:org.example.Demo:x86_64:1.0", "--from-dir", example.string()});
    REQUIRE_MESSAGE(r.exit_status == 0, r.err);
    CHECK(r.out == "Imported 'usr:org.example.Demo:x86_64:1.0'.\n");

    const Dir tree = Dir::open(mnt / "usr:org.example.Demo:x86_64:1.0");
    CHECK(btrfs::read_only(tree));
    CHECK(read_file(tree, "lib/os-release") == read_file(Dir::open(example), "lib/os-release"));
    CHECK((tree.stat("bin/hello")->st_mode & 0777) == 0755);
    CHECK(test::listed_names(mnt) == std::vector<std::string>{"usr:org.example.Demo:x86_64:1.0"});
    CHECK(Dir::open(mnt / ".strata/staging").entries().empty());
}

TEST_CASE("import refuses bad names, sources and duplicates, and changes nothing") {
    test::ScratchPool scratch;
    const auto mnt = scratch.mountpoint();
    REQUIRE(test::strata_on(mnt, {"import", "usr:org.example.Demo:x86_64:1.0", "--from-dir", example.string()})
                .exit_status == 0);
    const auto before = test::list_json(mnt);

    test::check_one_line_error(
        test::strata_on(mnt, {"import", "usr:org.example.Demo:x86_64:1.0", "--from-dir", example.string()}), 4,
        "import 'usr:org.example.Demo:x86_64:1.0': it exists already");
    test::check_one_line_error(
        test::strata_on(mnt, {"import", "usr:org.example.Demo:x86_64", "--from-dir", example.string()}), 2,
        "invalid name 'usr:org.example.Demo:x86_64': expected 4 fields (usr:<vendor-id>:<arch>:<version>), got 3");
    test::check_one_line_error(
        test::strata_on(mnt, {"import", "root:a:org.example.Demo:x86_64", "--from-dir", example.string()}), 2,
        "import 'root:a:org.example.Demo:x86_64': not a vendor tree name (usr:, runtime:, framework:, app:)");
    test::check_one_line_error(
        test::strata_on(mnt, {"import", "usr:org.example.Demo:x86_64:2", "--from-dir", (mnt / "nope").string()}), 3,
        "import 'usr:org.example.Demo:x86_64:2': read source directory '" + (mnt / "nope").string() +
            "': No such file or directory");
    test::check_one_line_error(
        test::strata_on(mnt, {"import", "usr:org.example.Demo:x86_64:2", "--from-dir",
                              (example / "lib/os-release").string()}),
        2,
        "import 'usr:org.example.Demo:x86_64:2': read source directory '" + (example / "lib/os-release").string() +
            "': not a directory");
    for (const char* bad : {"usr:../..:x86_64:1", "usr:org.example.Demo:x86_64:1/2", "usr:org.example.Demo:x86_64:1,2",
                            "usr:org.example.Demo:x86_64:1 2", "usr:org.example.Demo:x86_64:1:extra"}) {
        auto r = test::strata_on(mnt, {"import", bad, "--from-dir", example.string()});
        CHECK_MESSAGE(r.exit_status == 2, bad);
        CHECK(r.err.rfind("strata: invalid name '", 0) == 0);
    }
    CHECK(test::list_json(mnt) == before);
    CHECK(Dir::open(mnt / ".strata/staging").entries().empty());
}

TEST_CASE("import into a full pool fails cleanly and leaves no half-made tree") {
    test::ScratchPool scratch(200ull << 20);
    const auto mnt = scratch.mountpoint();
    test::TempDir big;
    // Incompressible data larger than the pool.
    REQUIRE(run_process({"dd", "if=/dev/urandom", "of=" + (big.path() / "blob").string(), "bs=1M", "count=260",
                         "status=none"})
                .exit_status == 0);
    auto r = test::strata_on(mnt, {"import", "usr:org.example.Big:x86_64:1", "--from-dir", big.path().string()});
    CHECK(r.exit_status == 1);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find("No space left on device") != std::string::npos);
    CHECK(test::listed_names(mnt).empty());
    CHECK(Dir::open(mnt / ".strata/staging").entries().empty());
}
