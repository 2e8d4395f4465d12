// The deploy library with host facts pointed at test files: a system booted from the pool.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>

#include "boot/loader.hpp"
#include "btrfs/subvolume.hpp"
#include "deploy/deployment.hpp"
#include "deploy/gc.hpp"
#include "deploy/root.hpp"
#include "support/errors.hpp"
#include "support/scratch_pool.hpp"
#include "support/tree.hpp"
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
        test::write_kernel(tree, "6.1.0", "k" + v, "i" + v);
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

TEST_CASE("EFI variables are the running system's: used for the pool it booted from, never for another") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    test::TempDir work;
    const auto p = pool::Pool::open(scratch.mountpoint());
    const auto lock = p.lock(1s);
    const auto root = naming::Name::parse("root:web:org.example.Demo:x86_64");
    deploy::create_root(p, lock, root);
    for (const std::string v : {"1", "2"}) {
        const auto tree = work.path() / v;
        test::write_kernel(tree, "6.1.0", "k" + v, "i" + v);
        vendor::import_directory(p, lock, naming::Name::parse("usr:org.example.Demo:x86_64:" + v), tree);
    }
    fs::create_directories(work.path() / "boot");
    fs::create_directories(work.path() / "efivars");  // a directory stands in for efivarfs
    deploy::BootTarget target(Dir::open(work.path() / "boot"));
    target.efivars = work.path() / "efivars";
    target.cmdline = work.path() / "cmdline";
    const auto var = [&](const std::string& name) {
        return target.efivars / (name + "-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f");
    };
    const auto slurp = [](const fs::path& path) {
        std::ifstream in(path, std::ios::binary);
        return std::string{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    };
    const std::string pattern = "org.example.Demo+web+*+x86_64";

    // The host booted something else (an image's pool is being prepared): only loader.conf.
    std::ofstream(target.cmdline) << "root=UUID=00000000-0000-0000-0000-000000000000 quiet\n";
    std::ofstream(var("LoaderEntryDefault"), std::ios::binary) << boot::encode_efi_string("host-os.conf");
    deploy::deploy(p, lock, target, root, std::string("1"));
    CHECK(slurp(work.path() / "boot/loader/loader.conf") == "default " + pattern + "[.+]*\n");
    CHECK(slurp(var("LoaderEntryDefault")) == boot::encode_efi_string("host-os.conf"));  // the host's, untouched
    CHECK(deploy::status(p, target).loader_default == pattern);  // what this pool's loader.conf says
    CHECK(test::error_of([&] { deploy::boot_once(p, target, "org.example.Demo+web+1+x86_64"); })
              .find("did not boot from this pool") != std::string::npos);
    CHECK_FALSE(fs::exists(var("LoaderEntryOneShot")));

    // Booted from this pool: the variables are set (they override loader.conf) and read.
    const auto uuid = btrfs::format_uuid(btrfs::filesystem_uuid(p.top()));
    std::ofstream(target.cmdline) << "root=UUID=" << uuid << " rootflags=subvol=" << root.str()
                                  << " mount.usrflags=ro,subvol=usr:org.example.Demo:x86_64:1\n";
    deploy::deploy(p, lock, target, root, std::string("2"));
    CHECK(slurp(var("LoaderEntryDefault")) == boot::encode_efi_string(pattern + "[.+]*"));
    CHECK(deploy::status(p, target).loader_default == pattern);
    deploy::boot_once(p, target, "org.example.Demo+web+1+x86_64");
    CHECK(slurp(var("LoaderEntryOneShot")) == boot::encode_efi_string("org.example.Demo+web+1+x86_64[.+]*"));
    CHECK(deploy::status(p, target).next_boot == "org.example.Demo+web+1+x86_64");
}
