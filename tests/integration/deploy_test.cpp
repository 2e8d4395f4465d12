// The deploy library with host facts pointed at test files: a system booted from the pool.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>

#include "btrfs/subvolume.hpp"
#include "deploy/deployment.hpp"
#include "deploy/gc.hpp"
#include "deploy/root.hpp"
#include "support/scratch_pool.hpp"
#include "vendor/import.hpp"

using namespace strata;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST_CASE("status tells the booted deployment from the kernel command line, and gc keeps it") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    test::TempDir work;
    const auto p = pool::Pool::open(scratch.mountpoint());
    const auto lock = p.lock(1s);
    const auto root = naming::Name::parse("root:web:org.example.Demo:x86_64");
    deploy::create_root(p, lock, root);
    for (const std::string v : {"1", "2", "3"}) {
        const auto tree = work.path() / v;
        fs::create_directories(tree / "lib/modules/6.1.0/");
        std::ofstream(tree / "lib/modules/6.1.0/vmlinuz") << "k" << v;
        std::ofstream(tree / "lib/modules/6.1.0/initrd.img") << "i" << v;
        vendor::import_directory(p, lock, naming::Name::parse("usr:org.example.Demo:x86_64:" + v), tree);
    }
    fs::create_directories(work.path() / "boot");
    deploy::BootTarget target(Dir::open(work.path() / "boot"));
    target.tries = 0;  // all entries good, so only retention and the booted flag decide
    target.efivars = work.path() / "no-efivars";
    target.cmdline = work.path() / "cmdline";
    std::ofstream(target.cmdline) << "BOOT_IMAGE=/vmlinuz quiet\n";

    deploy::deploy(p, lock, target, root, std::string("1"));
    deploy::deploy(p, lock, target, root, std::string("2"));
    deploy::deploy(p, lock, target, root, std::string("3"));
    CHECK_FALSE(deploy::status(p, target).booted);

    const auto uuid = btrfs::format_uuid(btrfs::filesystem_uuid(p.top()));
    std::ofstream(target.cmdline) << "initrd=x root=UUID=" << uuid << " rootflags=subvol=" << root.str()
                                  << " mount.usrflags=ro,subvol=usr:org.example.Demo:x86_64:1 rw\n";
    const auto st = deploy::status(p, target);
    REQUIRE(st.booted);
    CHECK(st.booted->root == root.str());
    CHECK(st.booted->usr == "usr:org.example.Demo:x86_64:1");
    REQUIRE(st.deployments.size() == 3);
    CHECK(st.deployments[0].booted);
    CHECK_FALSE(st.deployments[2].booted);
    CHECK(st.deployments[2].is_default);
    // deploy follows the root: its newest entry that has tries left.
    CHECK(st.loader_default == "org.example.Demo+web+*+x86_64");
    CHECK(st.next_boot == "org.example.Demo+web+3+x86_64");

    // A root=UUID of another filesystem is not this pool.
    std::ofstream(target.cmdline) << "root=UUID=00000000-0000-0000-0000-000000000000 rootflags=subvol=" << root.str()
                                  << " mount.usrflags=ro,subvol=usr:org.example.Demo:x86_64:1\n";
    CHECK_FALSE(deploy::status(p, target).booted);

    // Booted 1 survives gc --keep 1; 2 goes.
    std::ofstream(target.cmdline) << "root=UUID=" << uuid << " rootflags=subvol=" << root.str()
                                  << " mount.usrflags=ro,subvol=usr:org.example.Demo:x86_64:1\n";
    const auto report = deploy::gc(p, lock, target, {.keep = 1});
    CHECK(report.usr == std::vector<std::string>{"usr:org.example.Demo:x86_64:2"});
    CHECK(p.find("usr:org.example.Demo:x86_64:1"));
    CHECK(p.find("usr:org.example.Demo:x86_64:3"));
}
