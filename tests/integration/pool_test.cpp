#include <doctest/doctest.h>
#include <sys/file.h>

#include <fcntl.h>
#include <thread>

#include "base/error.hpp"
#include "btrfs/subvolume.hpp"
#include "deploy/root.hpp"
#include "pool/pool.hpp"
#include "pool/staging.hpp"
#include "support/scratch_pool.hpp"
#include "vendor/import.hpp"

using namespace strata;
using namespace std::chrono_literals;

namespace {

std::string open_error(const std::filesystem::path& p) {
    try {
        pool::Pool::open(p);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

std::vector<std::string> names(const pool::Pool& p) {
    std::vector<std::string> out;
    for (const auto& s : p.list()) out.push_back(s.name);
    return out;
}

}  // namespace

TEST_CASE("a pool is the top-level subvolume of a btrfs filesystem, nothing else") {
    test::ScratchPool scratch;
    const auto mnt = scratch.mountpoint();
    CHECK_NOTHROW(pool::Pool::open(mnt));

    const Dir top = Dir::open(mnt);
    btrfs::create_subvolume(top, "sub");
    top.make_dir("plain");
    CHECK(open_error(mnt / "sub") ==
          "open pool '" + (mnt / "sub").string() +
              "': not the top-level subvolume (this is subvolume 256; mount the filesystem with subvolid=5)");
    CHECK(open_error(mnt / "plain") ==
          "open pool '" + (mnt / "plain").string() + "': a directory inside the top-level subvolume, not its root");
    CHECK(open_error(scratch.dir() / "missing") ==
          "open pool '" + (scratch.dir() / "missing").string() + "': open directory '" +
              (scratch.dir() / "missing").string() + "': No such file or directory");

    test::TempDir tmpfs_dir;
    test::unmount_all_below(tmpfs_dir.path());
    REQUIRE(run_process({"mount", "-t", "tmpfs", "tmpfs", tmpfs_dir.path().string()}).exit_status == 0);
    CHECK(open_error(tmpfs_dir.path()) == "open pool '" + tmpfs_dir.path().string() + "': not a btrfs filesystem");
    test::unmount_all_below(tmpfs_dir.path());
}

TEST_CASE("list shows direct children in kind, id, arch and version order, untyped last") {
    test::ScratchPool scratch;
    const auto p = pool::Pool::open(scratch.mountpoint());
    CHECK(p.list().empty());
    for (const char* n : {"usr:org.example.Demo:x86_64:1.10", "usr:org.example.Demo:x86_64:1.9",
                          "usr:org.example.Demo:x86_64:1.10~rc1", "home:alice:1000:1000", "zzz-untyped",
                          "root:web:org.example.Demo:x86_64", "runtime:org.example.Platform:x86_64:2",
                          "app:org.example.Editor:org.example.Platform:x86_64:1",
                          "framework:org.example.Sdk:x86_64:2", "usr:org.example.Demo:aarch64:1.0",
                          "usr:com.acme.Os:x86_64:7"})
        btrfs::create_subvolume(p.top(), n);
    // Not pool objects: a nested subvolume and strata's hidden area.
    btrfs::create_subvolume(p.top().open_dir("root:web:org.example.Demo:x86_64"), "nested");
    auto lock = p.lock(1s);

    CHECK(names(p) == std::vector<std::string>{
                          "usr:com.acme.Os:x86_64:7",
                          "usr:org.example.Demo:aarch64:1.0",
                          "usr:org.example.Demo:x86_64:1.9",
                          "usr:org.example.Demo:x86_64:1.10~rc1",
                          "usr:org.example.Demo:x86_64:1.10",
                          "runtime:org.example.Platform:x86_64:2",
                          "framework:org.example.Sdk:x86_64:2",
                          "app:org.example.Editor:org.example.Platform:x86_64:1",
                          "root:web:org.example.Demo:x86_64",
                          "home:alice:1000:1000",
                          "zzz-untyped",
                      });
    const auto untyped = p.find("zzz-untyped");
    REQUIRE(untyped);
    CHECK_FALSE(untyped->typed);
    CHECK_FALSE(p.find("nested"));
    CHECK_FALSE(p.find(".strata"));
}

TEST_CASE("the pool lock excludes a second mutator and reports 'pool is busy'") {
    test::ScratchPool scratch;
    const auto p = pool::Pool::open(scratch.mountpoint());
    auto held = p.lock(1s);
    try {
        p.lock(100ms);
        FAIL("second lock succeeded");
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::Busy);
        CHECK(std::string(e.what()).find("pool is busy") != std::string::npos);
    }
}

TEST_CASE("the second mutator waits for the lock when the first finishes in time") {
    test::ScratchPool scratch;
    const auto p = pool::Pool::open(scratch.mountpoint());
    std::optional<pool::Lock> first(p.lock(1s));
    std::thread releaser([&] {
        std::this_thread::sleep_for(200ms);
        first.reset();
    });
    CHECK_NOTHROW(p.lock(5s));
    releaser.join();
}

TEST_CASE("staging: publish renames into place, abandoned work and crash debris disappear") {
    test::ScratchPool scratch;
    const auto p = pool::Pool::open(scratch.mountpoint());
    const auto name = naming::Name::parse("usr:org.example.Demo:x86_64:1.0");
    {
        auto lock = p.lock(1s);
        {
            auto staged = p.stage(lock, name);
            write_file_atomic(staged.dir(), "marker", "x");
            CHECK_FALSE(p.find(name.str()));  // nothing with a valid name until publish
        }  // abandoned: deleted
        CHECK(Dir::open(scratch.mountpoint() / ".strata/staging").entries().empty());

        auto staged = p.stage(lock, name);
        write_file_atomic(staged.dir(), "marker", "x");
        staged.publish(pool::Access::ReadOnly);
        const auto s = p.find(name.str());
        REQUIRE(s);
        CHECK(s->info.read_only());
        CHECK(read_file(p.top().open_dir(name.str()), "marker") == "x");

        // Publishing over an existing name fails and keeps the existing object.
        try {
            p.stage(lock, name);
            FAIL("staged over an existing name");
        } catch (const Error& e) {
            CHECK(e.fault() == Fault::Exists);
        }
    }
    // A crash leaves a subvolume and a plain directory in staging; the next lock removes both.
    const Dir staging = Dir::open(scratch.mountpoint() / ".strata/staging");
    btrfs::create_subvolume(staging, "usr-crashed");
    btrfs::set_read_only(staging.open_dir("usr-crashed"), true);
    staging.make_dir("half-copied").make_dir("deeper");
    auto lock = p.lock(1s);
    CHECK(staging.entries().empty());
    CHECK(names(p) == std::vector<std::string>{name.str()});
}

TEST_CASE("import --from-dir copies faithfully, read-only, and refuses to overwrite") {
    test::ScratchPool scratch;
    const auto p = pool::Pool::open(scratch.mountpoint());
    test::TempDir src;
    const Dir s = Dir::open(src.path());
    s.make_dir("lib").make_dir("os");
    write_file_atomic(s.open_dir("lib"), "os-release", "ID=demo\n");
    REQUIRE(::symlinkat("lib/os-release", s.fd(), "os-release") == 0);
    REQUIRE(::linkat(s.fd(), "lib/os-release", s.fd(), "hardlink", 0) == 0);
    REQUIRE(::fchmodat(s.fd(), "lib/os", 04750, 0) == 0);

    const auto name = naming::Name::parse("usr:org.example.Demo:x86_64:1");
    auto lock = p.lock(1s);
    vendor::import_directory(p, lock, name, src.path());
    const Dir t = p.top().open_dir(name.str());
    CHECK(btrfs::read_only(t));
    CHECK(read_file(t, "lib/os-release") == "ID=demo\n");
    CHECK(std::filesystem::read_symlink(t.path_of("os-release")) == "lib/os-release");
    CHECK(t.stat("hardlink")->st_ino == t.stat("lib/os-release")->st_ino);
    CHECK((t.stat("lib/os")->st_mode & 07777) == 04750);

    CHECK_THROWS_AS(vendor::import_directory(p, lock, name, src.path()), Error);
    CHECK_THROWS_AS(vendor::import_directory(p, lock, naming::Name::parse("root:a:org.example.Demo:x86_64"),
                                             src.path()),
                    Error);
    CHECK_THROWS_AS(vendor::import_directory(p, lock, naming::Name::parse("usr:org.example.Demo:x86_64:2"),
                                             src.path() / "missing"),
                    Error);
    CHECK(names(p) == std::vector<std::string>{name.str()});
    CHECK(Dir::open(scratch.mountpoint() / ".strata/staging").entries().empty());
}

TEST_CASE("root create builds the merged-usr skeleton, writable, without machine-id") {
    test::ScratchPool scratch;
    const auto p = pool::Pool::open(scratch.mountpoint());
    auto lock = p.lock(1s);
    const auto name = naming::Name::parse("root:web:org.example.Demo:x86_64");
    deploy::create_root(p, lock, name);
    const Dir r = p.top().open_dir(name.str());
    CHECK_FALSE(btrfs::read_only(r));
    CHECK(std::filesystem::read_symlink(r.path_of("bin")) == "usr/bin");
    CHECK(std::filesystem::read_symlink(r.path_of("sbin")) == "usr/sbin");
    CHECK(std::filesystem::read_symlink(r.path_of("lib")) == "usr/lib");
    CHECK(std::filesystem::read_symlink(r.path_of("lib64")) == "usr/lib64");
    CHECK((r.stat("tmp")->st_mode & 07777) == 01777);
    CHECK((r.stat("root")->st_mode & 07777) == 0700);
    CHECK((r.stat("proc")->st_mode & 07777) == 0555);
    CHECK(r.open_dir("etc").entries().empty());
    CHECK_FALSE(r.stat("etc/machine-id"));
}
