#include "btrfs/subvolume.hpp"
#include "e2e/e2e.hpp"

using namespace strata;

TEST_CASE("root create makes a writable instance with the merged-usr skeleton") {
    test::ScratchPool scratch;
    const auto mnt = scratch.mountpoint();
    auto r = test::strata_on(mnt, {"root", "create", "web", "--vendor", "org.example.Demo", "--arch", "aarch64"});
    REQUIRE_MESSAGE(r.exit_status == 0, r.err);
    CHECK(r.out == "Created 'root:web:org.example.Demo:aarch64'.\n");
    const Dir root = Dir::open(mnt / "root:web:org.example.Demo:aarch64");
    CHECK_FALSE(btrfs::read_only(root));
    CHECK(std::filesystem::read_symlink(root.path_of("bin")) == "usr/bin");
    const auto j = test::list_json(mnt);
    REQUIRE(j.size() == 1);
    CHECK(j[0]["kind"] == "root");
    CHECK(j[0]["vendor_id"] == "org.example.Demo");

    test::check_one_line_error(
        test::strata_on(mnt, {"root", "create", "web", "--vendor", "org.example.Demo", "--arch", "aarch64"}), 4,
        "create root 'root:web:org.example.Demo:aarch64': it exists already");
    auto bad_arch = test::strata_on(mnt, {"root", "create", "db", "--vendor", "org.example.Demo", "--arch", "amd64"});
    CHECK(bad_arch.exit_status == 2);
    CHECK(bad_arch.err.find("field 'arch'") != std::string::npos);
    auto bad_name = test::strata_on(mnt, {"root", "create", "a b", "--vendor", "org.example.Demo", "--arch", "x86_64"});
    CHECK(bad_name.exit_status == 2);
    CHECK(test::list_json(mnt).size() == 1);
}
