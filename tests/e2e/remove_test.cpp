// strata remove: all or nothing, never what is in use or what strata did not make.
#include <sys/mount.h>

#include "btrfs/subvolume.hpp"
#include "e2e/e2e.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {
const fs::path example = fs::path(STRATA_SOURCE_DIR) / "examples/usr-demo";
const std::string v1 = "usr:org.example.Demo:x86_64:1", v2 = "usr:org.example.Demo:x86_64:2";

void import(const fs::path& mnt, const std::string& name) {
    auto r = test::strata_on(mnt, {"import", name, "--from-dir", example.string(), "--no-base"});
    REQUIRE_MESSAGE(r.exit_status == 0, r.err);
}
}  // namespace

TEST_CASE("remove deletes the named trees, --dry-run only says so") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    const auto mnt = scratch.mountpoint();
    import(mnt, v1);
    import(mnt, v2);
    auto r = test::strata_on(mnt, {"remove", v1, v2, "--dry-run"});
    CHECK(r.exit_status == 0);
    CHECK(r.out == "Would remove '" + v1 + "'.\nWould remove '" + v2 + "'.\n");
    CHECK(test::listed_names(mnt) == std::vector<std::string>{v1, v2});
    r = test::strata_on(mnt, {"remove", v1});
    CHECK(r.exit_status == 0);
    CHECK(r.out == "Removed '" + v1 + "'.\n");
    CHECK(test::listed_names(mnt) == std::vector<std::string>{v2});
    CHECK_FALSE(fs::exists(mnt / v1));
}

TEST_CASE("remove refuses unknown, invalid and non-vendor names, and removes nothing then") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    const auto mnt = scratch.mountpoint();
    import(mnt, v1);
    REQUIRE(test::strata_on(mnt, {"root", "create", "web", "--vendor", "org.example.Demo", "--arch", "x86_64"})
                .exit_status == 0);
    const auto before = test::list_json(mnt);
    test::check_one_line_error(test::strata_on(mnt, {"remove", v1, v2}), 3,
                               "remove '" + v2 + "': no such subvolume in the pool");
    test::check_one_line_error(test::strata_on(mnt, {"remove", "usr:bad"}), 2,
                               "invalid name 'usr:bad': expected 4 fields (usr:<vendor-id>:<arch>:<version>), got 2");
    test::check_one_line_error(
        test::strata_on(mnt, {"remove", "root:web:org.example.Demo:x86_64"}), 2,
        "remove 'root:web:org.example.Demo:x86_64': not a vendor tree (root instances go with 'strata root remove')");
    CHECK(test::list_json(mnt) == before);
}

TEST_CASE("remove refuses a mounted tree unless --force, and nested subvolumes always") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    test::TempDir where;
    const auto mnt = scratch.mountpoint();
    import(mnt, v1);
    import(mnt, v2);
    const auto before = test::list_json(mnt);

    // In use: mounted somewhere, as a deployment's /usr would be.
    REQUIRE(run_process({"mount", "-o", "ro,subvol=/" + v1, scratch.device().string(), where.path().string()})
                .exit_status == 0);
    auto r = test::strata_on(mnt, {"remove", v2, v1});
    test::check_one_line_error(r, 6,
                               "remove '" + v1 + "': in use (mounted at " + where.path().string() +
                                   "); --force removes it anyway");
    CHECK(test::list_json(mnt) == before);  // v2 was not removed either: all or nothing
    r = test::strata_on(mnt, {"remove", v1, "--dry-run", "--force"});
    CHECK(r.out == "Would remove '" + v1 + "' (in use: mounted at " + where.path().string() + ").\n");
    REQUIRE(::umount(where.path().c_str()) == 0);

    // Nested: a subvolume inside a vendor tree is not strata's to delete, even with --force.
    btrfs::set_read_only(Dir::open(mnt / v2), false);
    btrfs::create_subvolume(Dir::open(mnt / v2), "nested");
    btrfs::set_read_only(Dir::open(mnt / v2), true);
    test::check_one_line_error(test::strata_on(mnt, {"remove", v2, "--force"}), 1,
                               "remove '" + v2 + "': contains nested subvolume 'nested', which strata did not make; "
                               "delete it yourself first");
    CHECK(fs::exists(mnt / v2 / "nested"));
    btrfs::set_read_only(Dir::open(mnt / v2), false);
    btrfs::delete_subvolume(Dir::open(mnt / v2), "nested");
}
