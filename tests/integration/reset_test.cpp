// Factory reset at boot: the kernel command line names the pool and, with systemd's request, the
// root to reset; strata mounts the pool itself, as it must in the initrd.
#include <doctest/doctest.h>

#include <fstream>

#include "btrfs/subvolume.hpp"
#include "deploy/reset.hpp"
#include "deploy/root.hpp"
#include "mount/mount.hpp"
#include "support/scratch_pool.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const auto root = naming::Name::parse("root:web:org.example.Demo:x86_64");

struct World {
    test::ScratchPool scratch;
    test::TempDir work;
    pool::Pool pool = pool::Pool::open(scratch.mountpoint());
    fs::path state = scratch.mountpoint() / root.str();
    std::string uuid = btrfs::format_uuid(btrfs::filesystem_uuid(pool.top()));

    World() {
        deploy::create_root(pool, pool.lock(std::chrono::seconds(1)), root);
        std::ofstream(state / "etc/hostname") << "admin-host\n";
    }
    fs::path cmdline(const std::string& text) const {
        const auto p = work.path() / "cmdline";
        std::ofstream(p) << text << "\n";
        return p;
    }
    bool nothing_mounted_below(const fs::path& dir) const {
        for (const auto& m : mount::list_mounts())
            if (m.target.starts_with(dir.string())) return false;
        return true;
    }
};

}  // namespace

TEST_CASE("the boot command line names pool, root and systemd's factory reset request") {
    const auto b = deploy::parse_boot_command_line(
        "BOOT_IMAGE=x root=UUID=1234 rootflags=compress=zstd,subvol=root:web:v:x86_64 rw systemd.factory_reset=1");
    CHECK(b.pool_uuid == "1234");
    CHECK(b.root == "root:web:v:x86_64");
    CHECK(b.factory_reset);
    CHECK(deploy::parse_boot_command_line("systemd.factory_reset").factory_reset);
    CHECK_FALSE(deploy::parse_boot_command_line("systemd.factory_reset=0 root=/dev/sda1").factory_reset);
    CHECK(deploy::parse_boot_command_line("root=/dev/sda1").pool_uuid.empty());
}

TEST_CASE("at boot a scheduled reset is carried out on a pool strata mounts itself") {
    test::require_root_and_btrfs();
    World w;
    {
        const auto lock = w.pool.lock(std::chrono::seconds(1));
        const auto r = deploy::factory_reset(w.pool, lock, root, {.level = deploy::ResetLevel::State, .keep = {}, .homes = false, .dry_run = false, .on_next_boot = true});
        CHECK(r.scheduled);
    }
    CHECK(deploy::scheduled_resets(w.pool).size() == 1);
    const auto base = w.work.path() / "run";
    const auto done = deploy::apply_scheduled_resets_at_boot(
        w.cmdline("root=UUID=" + w.uuid + " rootflags=subvol=" + root.str()), base, std::chrono::seconds(1));
    REQUIRE(done.size() == 1);
    CHECK(done[0].root == root.str());
    CHECK_FALSE(fs::exists(w.state / "etc/hostname"));
    CHECK(deploy::scheduled_resets(w.pool).empty());
    CHECK(w.nothing_mounted_below(base));
    CHECK(fs::is_empty(base));
}

TEST_CASE("at boot systemd.factory_reset=1 resets the root being booted") {
    test::require_root_and_btrfs();
    World w;
    const auto base = w.work.path() / "run";
    auto done = deploy::apply_scheduled_resets_at_boot(
        w.cmdline("root=UUID=" + w.uuid + " rootflags=subvol=" + root.str()), base, std::chrono::seconds(1));
    CHECK(done.empty());
    CHECK(fs::exists(w.state / "etc/hostname"));
    done = deploy::apply_scheduled_resets_at_boot(
        w.cmdline("root=UUID=" + w.uuid + " rootflags=subvol=" + root.str() + " systemd.factory_reset=1"), base,
        std::chrono::seconds(1));
    REQUIRE(done.size() == 1);
    CHECK(done[0].level == deploy::ResetLevel::State);
    CHECK_FALSE(fs::exists(w.state / "etc/hostname"));
    CHECK(w.nothing_mounted_below(base));
    // Not a strata boot: nothing to do, nothing mounted.
    CHECK(deploy::apply_scheduled_resets_at_boot(w.cmdline("root=/dev/sda2"), base, std::chrono::seconds(1)).empty());
}
