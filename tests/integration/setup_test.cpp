#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include <doctest/doctest.h>

#include "base/error.hpp"
#include "mount/mount.hpp"
#include "pool/pool.hpp"
#include "pool/setup.hpp"
#include "support/scratch_pool.hpp"

using namespace strata;

namespace {

// Unmounts whatever strata mounted below the temp dir, also when a CHECK failed.
struct UnmountBelow {
    std::filesystem::path path;
    ~UnmountBelow() { test::unmount_all_below(path); }
};

}  // namespace

TEST_CASE("an image pool is created, mounted through an auto-clear loop device, and goes away cleanly") {
    test::require_root_and_btrfs();
    test::TempDir dir;
    UnmountBelow cleanup{dir.path()};
    const auto image = dir.path() / "state/pool.img";
    const auto mnt = dir.path() / "pool";

    pool::create_image_pool(image, 256ull << 20, mnt);
    const auto m = mount::find_mount(mnt);
    REQUIRE(m);
    CHECK(m->fstype == "btrfs");
    CHECK(test::loop_backing_file(m->source) == image.string());
    CHECK(std::filesystem::file_size(image) == 256ull << 20);
    // Where the image's file system can do direct I/O, the device uses it: the pool's blocks are
    // cached once, not also in the image file's page cache.
    if (const int fd = ::open(image.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC); fd >= 0) {
        ::close(fd);
        std::ifstream dio("/sys/block/" + std::filesystem::path(m->source).filename().string() + "/loop/dio");
        std::string flag;
        std::getline(dio, flag);
        CHECK(flag == "1");
    }
    CHECK_NOTHROW(pool::Pool::open(mnt));

    // A second init on the same image or mount point changes nothing.
    try {
        pool::create_image_pool(image, 256ull << 20, mnt);
        FAIL("second init succeeded");
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::Exists);
    }
    CHECK(test::loop_backing_file(m->source) == image.string());

    pool::unmount_pool(mnt);
    CHECK_FALSE(mount::find_mount(mnt));
    CHECK(test::loop_backing_file(m->source).empty());  // auto-clear detached it

    pool::mount_image_pool(image, mnt);
    const auto again = mount::find_mount(mnt);
    REQUIRE(again);
    pool::unmount_pool(mnt);
    CHECK(test::loop_backing_file(again->source).empty());
}

TEST_CASE("image pool creation refuses bad sizes and leaves no file behind") {
    test::require_root_and_btrfs();
    test::TempDir dir;
    UnmountBelow cleanup{dir.path()};
    const auto image = dir.path() / "pool.img";
    try {
        pool::create_image_pool(image, 16ull << 20, dir.path() / "pool");
        FAIL("tiny pool created");
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::InvalidInput);
        CHECK(std::string(e.what()) ==
              "create pool image '" + image.string() + "': size must be at least 128M for a btrfs filesystem");
    }
    CHECK_FALSE(std::filesystem::exists(image));
    CHECK_THROWS_AS(pool::mount_image_pool(image, dir.path() / "pool"), Error);
}
