#include <sys/stat.h>

#include "e2e/e2e.hpp"

using namespace strata;

namespace {

struct UnmountBelow {
    std::filesystem::path path;
    ~UnmountBelow() { test::unmount_all_below(path); }
};

std::string mount_source(const std::filesystem::path& target) {
    auto r = run_process({"findmnt", "-n", "-o", "SOURCE", target.string()});
    while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
    return r.out;
}

}  // namespace

TEST_CASE("pool init --image creates a mounted pool, umount and mount bring it back") {
    test::require_root_and_btrfs();
    test::TempDir dir;
    UnmountBelow cleanup{dir.path()};
    const auto image = dir.path() / "state/pool.img";
    const auto mnt = dir.path() / "pool";

    auto r = test::strata_on(mnt, {"pool", "init", "--image", image.string(), "--size", "200M"});
    REQUIRE_MESSAGE(r.exit_status == 0, r.err);
    CHECK(r.out == "Created pool at " + mnt.string() + ".\n");
    struct stat st {};
    REQUIRE(::stat(image.c_str(), &st) == 0);
    CHECK(st.st_size == 200 << 20);
    CHECK(st.st_blocks * 512 < st.st_size);  // sparse
    const auto device = mount_source(mnt);
    CHECK(test::loop_backing_file(device) == image.string());
    CHECK(test::strata_on(mnt, {"list"}).out == "No subvolumes.\n");

    // Again on the same image: refused, nothing changed.
    test::check_one_line_error(test::strata_on(mnt, {"pool", "init", "--image", image.string(), "--size", "200M"}),
                               4,
                               "create pool image '" + image.string() + "': use mount point '" + mnt.string() +
                                   "': '" + device + "' is mounted there already");
    CHECK(mount_source(mnt) == device);

    REQUIRE(test::strata_on(mnt, {"pool", "umount"}).exit_status == 0);
    CHECK(mount_source(mnt).empty());
    CHECK(test::loop_backing_file(device).empty());
    // The image exists: init refuses to overwrite it.
    auto again = test::strata_on(mnt, {"pool", "init", "--image", image.string(), "--size", "200M"});
    test::check_one_line_error(again, 4, "create pool image '" + image.string() + "': create '" + image.string() +
                                             "': File exists");
    auto m = test::strata_on(mnt, {"pool", "mount", "--image", image.string()});
    REQUIRE_MESSAGE(m.exit_status == 0, m.err);
    CHECK(test::loop_backing_file(mount_source(mnt)) == image.string());
    REQUIRE(test::strata_on(mnt, {"pool", "umount"}).exit_status == 0);
}

TEST_CASE("pool init refuses bad input and leaves nothing behind") {
    test::require_root_and_btrfs();
    test::TempDir dir;
    UnmountBelow cleanup{dir.path()};
    const auto image = dir.path() / "pool.img";
    const auto mnt = dir.path() / "pool";
    test::check_one_line_error(test::strata_on(mnt, {"pool", "init", "--image", image.string(), "--size", "64M"}), 2,
                               "create pool image '" + image.string() +
                                   "': size must be at least 128M for a btrfs filesystem");
    test::check_one_line_error(test::strata_on(mnt, {"pool", "init", "--image", image.string(), "--size", "lots"}),
                               2, "invalid size 'lots': not a number");
    CHECK_FALSE(std::filesystem::exists(image));

    test::check_one_line_error(test::strata_on(mnt, {"pool", "init", "--device", "/dev/null"}), 2,
                               "pool init '/dev/null': this destroys all data on the device; add --force to confirm");
    test::check_one_line_error(test::strata_on(mnt, {"pool", "init", "--device", "/dev/null", "--force"}), 2,
                               "create pool on device '/dev/null': not a block device");
    test::check_one_line_error(test::strata_on(mnt, {"pool", "mount", "--image", image.string()}), 3,
                               "mount pool image '" + image.string() +
                                   "': no such image; create it with 'strata pool init'");
    CHECK(mount_source(mnt).empty());
}
