// The boot module against real directories and tmpfs mounts standing in for $BOOT (there is no
// vfat here): entries, boot counting renames, kernel copies, full and read-only $BOOT, systemd's
// own parser (bootctl), $BOOT discovery under a fake root, loader.conf and EFI variables in a
// directory standing in for efivarfs.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/process.hpp"
#include "boot/boot_dir.hpp"
#include "boot/entries.hpp"
#include "boot/kernel.hpp"
#include "boot/loader.hpp"
#include "btrfs/subvolume.hpp"
#include "support/errors.hpp"
#include "support/mount.hpp"
#include "support/scratch_pool.hpp"

using namespace strata;
using namespace strata::boot;
namespace fs = std::filesystem;
using test::error_of;
using test::TestMount;

namespace {

void write_text(const fs::path& path, const std::string& content) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    REQUIRE(out.good());
}

std::string read_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Names in a directory, sorted; empty if it does not exist.
std::vector<std::string> names_in(const fs::path& dir) {
    std::vector<std::string> out;
    if (!fs::exists(dir)) return out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

// Every path below dir, relative, sorted.
std::vector<std::string> tree_of(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir)) out.push_back(fs::relative(e.path(), dir).string());
    std::sort(out.begin(), out.end());
    return out;
}

std::string bytes(size_t n, char seed) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + static_cast<char>(i % 251));
    return s;
}

Entry demo_entry(const std::string& version = "2.1") {
    Entry e;
    e.title = "Demo " + version + " (web)";
    e.version = version;
    e.machine_id = "0123456789abcdef0123456789abcdef";
    e.sort_key = "org.example.Demo";
    e.architecture = "x64";
    e.linux = "/org.example.Demo/6.1.0-test/linux";
    e.initrd = {"/org.example.Demo/6.1.0-test/initrd"};
    e.options = {"root=UUID=0b5e-demo rootflags=subvol=root:web:org.example.Demo:x86_64",
                 "mount.usrflags=ro,subvol=usr:org.example.Demo:x86_64:" + version, "quiet"};
    return e;
}

// A usr tree (the usr subvolume is /usr) with one kernel.
void fake_kernel(const fs::path& usr, const std::string& kver, size_t kernel_size = 4096, size_t initrd_size = 8192,
                 const std::string& initrd_name = "initrd.img") {
    write_text(usr / "lib/modules" / kver / "vmlinuz", bytes(kernel_size, 'k'));
    write_text(usr / "lib/modules" / kver / initrd_name, bytes(initrd_size, 'i'));
}

bool have_bootctl() {
    if (run_process({"sh", "-c", "command -v bootctl"}).exit_status == 0) return true;
    const char* ci = std::getenv("CI");
    if (ci && std::string(ci) == "true") FAIL("bootctl is missing (package systemd-boot, scripts/install-deps)");
    WARN_MESSAGE(false, "bootctl is missing (package systemd-boot): skipping the check with systemd's parser");
    return false;
}

}  // namespace

TEST_CASE("entries: write, replace, list, find and remove in a plain directory as $BOOT") {
    test::TempDir tmp;
    const Dir boot = Dir::open(tmp.path());
    CHECK(list_entries(boot).empty());
    CHECK_FALSE(find_entry(boot, "org.example.Demo-web-2.1"));

    CHECK(write_entry(boot, "org.example.Demo-web-2.1", demo_entry("2.1"), 3u) == "org.example.Demo-web-2.1+3.conf");
    CHECK(write_entry(boot, "org.example.Demo-web-2.0", demo_entry("2.0"), std::nullopt) ==
          "org.example.Demo-web-2.0.conf");
    const fs::path entries = tmp.path() / "loader/entries";
    CHECK(read_text(entries / "org.example.Demo-web-2.1+3.conf") == render(demo_entry("2.1")));

    // Things that are not entries are skipped: other names, temporaries, directories, bad content.
    write_text(entries / "notes.txt", "hello");
    write_text(entries / ".#org.example.Demo-web-2.2.conf.1234", render(demo_entry("2.2")));
    write_text(entries / "broken.conf", "title Broken\nlinux\n");
    fs::create_directory(entries / "dir.conf");
    write_text(entries / "other-os.conf", "# someone else's\ntitle Other\nlinux /other/linux\nefi /x.efi\n");

    auto list = list_entries(boot);
    REQUIRE(list.size() == 3);
    CHECK(list[0].file_name == "org.example.Demo-web-2.0.conf");
    CHECK(list[1].file_name == "org.example.Demo-web-2.1+3.conf");
    CHECK(list[2].file_name == "other-os.conf");
    CHECK(list[1].name.id == "org.example.Demo-web-2.1");
    CHECK(list[1].name.tries_left == 3u);
    CHECK(list[1].name.state() == BootState::Indeterminate);
    CHECK(list[1].entry == demo_entry("2.1"));
    CHECK(list[2].entry.title == "Other");

    // Replacing keeps one file per id and drops the counter when there are no tries.
    Entry changed = demo_entry("2.1");
    changed.options.push_back("debug");
    CHECK(write_entry(boot, "org.example.Demo-web-2.1", changed, std::nullopt) == "org.example.Demo-web-2.1.conf");
    CHECK_FALSE(fs::exists(entries / "org.example.Demo-web-2.1+3.conf"));
    auto found = find_entry(boot, "org.example.Demo-web-2.1");
    REQUIRE(found);
    CHECK(found->file_name == "org.example.Demo-web-2.1.conf");
    CHECK(found->entry == changed);
    CHECK(found->name.state() == BootState::Good);
    // tries == 0 writes no counter either (boot.tries = 0 in the configuration).
    CHECK(write_entry(boot, "org.example.Demo-web-2.1", changed, 0u) == "org.example.Demo-web-2.1.conf");

    remove_entry(boot, "org.example.Demo-web-2.1");
    remove_entry(boot, "org.example.Demo-web-2.1");  // no-op
    remove_entry(boot, "never-written");
    CHECK_FALSE(find_entry(boot, "org.example.Demo-web-2.1"));
    CHECK(names_in(entries) == std::vector<std::string>{".#org.example.Demo-web-2.2.conf.1234", "broken.conf",
                                                          "dir.conf", "notes.txt", "org.example.Demo-web-2.0.conf",
                                                          "other-os.conf"});

    CHECK(error_of([&] { write_entry(boot, "bad:id", demo_entry(), 3u); }).find("not a valid id") != std::string::npos);
    CHECK(error_of([&] { write_entry(boot, "x", Entry{}, 3u); }).find("no kernel") != std::string::npos);
    CHECK_FALSE(fs::exists(entries / "x+3.conf"));
}

TEST_CASE("boot counting: find_entry follows the loader's renames and systemd-bless-boot") {
    test::TempDir tmp;
    const Dir boot = Dir::open(tmp.path());
    const fs::path entries = tmp.path() / "loader/entries";
    const std::string id = "org.example.Demo-web-2.1";
    REQUIRE(write_entry(boot, id, demo_entry(), 3u) == id + "+3.conf");

    struct Step {
        std::string to;
        std::optional<unsigned> left, done;
        BootState state;
    };
    std::string current = id + "+3.conf";
    for (const Step& step : {Step{id + "+2-1.conf", 2u, 1u, BootState::Indeterminate},
                             Step{id + "+1-2.conf", 1u, 2u, BootState::Indeterminate},
                             Step{id + "+0-3.conf", 0u, 3u, BootState::Bad}, Step{id + ".conf", {}, {}, BootState::Good}}) {
        CAPTURE(step.to);
        fs::rename(entries / current, entries / step.to);  // what sd-boot / systemd-bless-boot do
        current = step.to;
        const auto found = find_entry(boot, id);
        REQUIRE(found);
        CHECK(found->file_name == step.to);
        CHECK(found->name.tries_left == step.left);
        CHECK(found->name.tries_done == step.done);
        CHECK(found->name.state() == step.state);
        CHECK(found->entry == demo_entry());
    }

    // A bad entry written again gets a fresh counter, and only one file remains.
    fs::rename(entries / current, entries / (id + "+0-3.conf"));
    CHECK(write_entry(boot, id, demo_entry(), 3u) == id + "+3.conf");
    CHECK(names_in(entries) == std::vector<std::string>{id + "+3.conf"});
    remove_entry(boot, id);
    CHECK(names_in(entries).empty());
}

TEST_CASE("find_kernel: one kernel, a chosen one, none, several, no initrd") {
    test::TempDir usr_dir;
    const fs::path usr = usr_dir.path();
    const Dir tree = Dir::open(usr);

    std::string e = error_of([&] { find_kernel(tree); });
    CHECK(e == "find kernel in '" + usr.string() + "': no kernel (no lib/modules/<kver>/vmlinuz)");
    try {
        find_kernel(tree);
    } catch (const Error& err) {
        CHECK(err.fault() == Fault::NotFound);
    }

    fake_kernel(usr, "6.1.0-test");
    fs::create_directories(usr / "lib/modules/6.1.0-test-extra");  // modules only, no kernel: ignored
    const KernelSource k = find_kernel(tree);
    CHECK(k.kver == "6.1.0-test");
    CHECK(k.vmlinuz == "lib/modules/6.1.0-test/vmlinuz");
    CHECK(k.initrd == "lib/modules/6.1.0-test/initrd.img");

    // initrd before initrd.img before initramfs.img
    write_text(usr / "lib/modules/6.1.0-test/initrd", "plain");
    CHECK(find_kernel(tree).initrd == "lib/modules/6.1.0-test/initrd");

    fake_kernel(usr, "6.2.0-test", 100, 100, "initramfs.img");
    e = error_of([&] { find_kernel(tree); });
    CHECK(e == "find kernel in '" + usr.string() + "': several kernel versions (6.1.0-test, 6.2.0-test); choose one");
    CHECK(find_kernel(tree, "6.2.0-test").initrd == "lib/modules/6.2.0-test/initramfs.img");
    e = error_of([&] { find_kernel(tree, "5.0"); });
    CHECK(e == "find kernel in '" + usr.string() + "': no kernel lib/modules/5.0/vmlinuz");
    CHECK(error_of([&] { find_kernel(tree, "../x"); }).find("not a valid file name") != std::string::npos);

    fs::remove(usr / "lib/modules/6.2.0-test/initramfs.img");
    e = error_of([&] { find_kernel(tree, "6.2.0-test"); });
    CHECK(e.find("no initrd beside lib/modules/6.2.0-test/vmlinuz") != std::string::npos);
    CHECK(e.find(usr.string()) != std::string::npos);

    fs::remove(usr / "lib/modules/6.2.0-test/vmlinuz");
    fs::create_symlink("/etc/passwd", usr / "lib/modules/6.2.0-test/vmlinuz");
    CHECK(error_of([&] { find_kernel(tree, "6.2.0-test"); }).find("symbolic links are not followed") !=
          std::string::npos);
}

TEST_CASE("install_kernel copies once, compares bytes, and removes cleanly") {
    test::TempDir boot_dir, usr_dir;
    fake_kernel(usr_dir.path(), "6.1.0-test", 300000, 700000);
    const Dir boot = Dir::open(boot_dir.path()), tree = Dir::open(usr_dir.path());
    const KernelSource src = find_kernel(tree);

    InstalledKernel k = install_kernel(boot, "org.example.Demo", "6.1.0-test", tree, src);
    CHECK(k.linux == "/org.example.Demo/6.1.0-test/linux");
    CHECK(k.initrd == "/org.example.Demo/6.1.0-test/initrd");
    CHECK(k.copied);
    CHECK(k.bytes == 1000000);
    const fs::path dir = boot_dir.path() / "org.example.Demo/6.1.0-test";
    CHECK(read_text(dir / "linux") == read_text(usr_dir.path() / src.vmlinuz));
    CHECK(read_text(dir / "initrd") == read_text(usr_dir.path() / src.initrd));
    CHECK(names_in(dir) == std::vector<std::string>{"initrd", "linux"});

    k = install_kernel(boot, "org.example.Demo", "6.1.0-test", tree, src);
    CHECK_FALSE(k.copied);
    CHECK(k.bytes == 0);

    // Same size, one byte different: copied again (only that file).
    std::string initrd = read_text(usr_dir.path() / src.initrd);
    initrd[500000] ^= 1;
    write_text(usr_dir.path() / src.initrd, initrd);
    k = install_kernel(boot, "org.example.Demo", "6.1.0-test", tree, src);
    CHECK(k.copied);
    CHECK(k.bytes == 700000);
    CHECK(read_text(dir / "initrd") == initrd);

    install_kernel(boot, "org.example.Demo", "6.2.0-other", tree, src);
    CHECK(installed_kernel_versions(boot, "org.example.Demo") == std::vector<std::string>{"6.1.0-test", "6.2.0-other"});
    CHECK(installed_kernel_versions(boot, "nothing").empty());

    remove_kernel(boot, "org.example.Demo", "6.1.0-test");
    CHECK(installed_kernel_versions(boot, "org.example.Demo") == std::vector<std::string>{"6.2.0-other"});
    remove_kernel(boot, "org.example.Demo", "6.1.0-test");  // no-op
    remove_kernel(boot, "org.example.Demo", "6.2.0-other");
    CHECK(names_in(boot_dir.path()).empty());  // the empty token directory went too

    CHECK(error_of([&] { install_kernel(boot, "a/b", "1", tree, src); }).find("not a valid file name") !=
          std::string::npos);
    CHECK(error_of([&] { install_kernel(boot, "tok", "..", tree, src); }).find("not a valid file name") !=
          std::string::npos);
}

TEST_CASE("KernelAhead: the predecessor's kernel is kept for a successor with the very same files, never otherwise") {
    test::require_root_and_btrfs();
    test::ScratchPool pool;
    test::TempDir boot_dir;
    const Dir top = Dir::open(pool.mountpoint()), boot = Dir::open(boot_dir.path());
    const auto usr = [&](const char* name) { return pool.mountpoint() / name; };
    btrfs::create_subvolume(top, "v1");
    fake_kernel(usr("v1"), "6.1.0-test", 300000, 700000);
    REQUIRE(run_process({"sync"}).exit_status == 0);
    // v2 keeps the kernel (a snapshot, as btrfs receive starts an incremental stream); v3 has an
    // initrd of the same size and mtime but other bytes (a rebuild with clamped timestamps).
    btrfs::snapshot(top, "v1", top, "v2");
    btrfs::snapshot(top, "v1", top, "v3");
    const fs::path initrd = "lib/modules/6.1.0-test/initrd.img";
    std::string other = read_text(usr("v3") / initrd);
    other[123456] ^= 1;
    const auto mtime = fs::last_write_time(usr("v1") / initrd);
    write_text(usr("v3") / initrd, other);
    fs::last_write_time(usr("v3") / initrd, mtime);
    // The received tree's own times: v2's kernel touched (utimes in a stream), its bytes not.
    const auto touched = mtime - std::chrono::hours(24);
    fs::last_write_time(usr("v2") / "lib/modules/6.1.0-test/vmlinuz", touched);
    const fs::path token_dir = boot_dir.path() / "org.example.Demo";

    {
        KernelAhead ahead(boot, "org.example.Demo", "2", top.open_dir("v1"));
        CHECK(ahead.take(top.open_dir("v2")) == 2);
    }
    CHECK(names_in(token_dir / "2") == std::vector<std::string>{"initrd", "linux"});
    CHECK(read_text(token_dir / "2/linux") == read_text(usr("v2") / "lib/modules/6.1.0-test/vmlinuz"));
    CHECK(read_text(token_dir / "2/initrd") == read_text(usr("v2") / initrd));
    CHECK(fs::last_write_time(token_dir / "2/linux") == touched);
    // So the deploy finds them in place.
    const auto k2 = install_kernel(boot, "org.example.Demo", "2", top.open_dir("v2"), find_kernel(top.open_dir("v2")));
    CHECK_FALSE(k2.copied);

    {
        KernelAhead ahead(boot, "org.example.Demo", "3", top.open_dir("v1"));
        CHECK(ahead.take(top.open_dir("v3")) == 1);
    }
    // The kernel is kept, the initrd's copy removed: the deploy copies only the initrd.
    CHECK(names_in(token_dir / "3") == std::vector<std::string>{"linux"});
    const auto k3 = install_kernel(boot, "org.example.Demo", "3", top.open_dir("v3"), find_kernel(top.open_dir("v3")));
    CHECK(k3.copied);
    CHECK(k3.bytes == other.size());
    CHECK(read_text(token_dir / "3/initrd") == other);
    // Another kernel version: nothing kept, and the directory made for the copies is gone.
    btrfs::create_subvolume(top, "v7");
    fake_kernel(usr("v7"), "6.1.0-next", 300000, 700000);
    {
        KernelAhead ahead(boot, "org.example.Demo", "7", top.open_dir("v1"));
        CHECK(ahead.take(top.open_dir("v7")) == 0);
    }
    CHECK_FALSE(fs::exists(token_dir / "7"));

    // Not taken (the update failed): nothing left; a kernel that is not there: nothing made.
    { KernelAhead ahead(boot, "org.example.Demo", "4", top.open_dir("v1")); }
    CHECK(names_in(token_dir) == std::vector<std::string>{"2", "3"});
    btrfs::create_subvolume(top, "empty");
    {
        KernelAhead ahead(boot, "org.example.Demo", "5", top.open_dir("empty"));
        CHECK(ahead.take(top.open_dir("v2")) == 0);
    }
    CHECK(names_in(token_dir) == std::vector<std::string>{"2", "3"});
    // Copies left under the hidden names by a killed update are never taken as they are.
    fs::create_directories(token_dir / "6");
    write_text(token_dir / "6/.ahead-initrd", "stale");
    {
        KernelAhead ahead(boot, "org.example.Demo", "6", top.open_dir("v1"));
        CHECK(ahead.take(top.open_dir("v2")) == 2);
    }
    CHECK(read_text(token_dir / "6/initrd") == read_text(usr("v2") / initrd));
    CHECK(names_in(token_dir / "6") == std::vector<std::string>{"initrd", "linux"});
}

TEST_CASE("install_kernel on a full $BOOT fails with ENOSPC and leaves nothing behind") {
    test::TempDir tmp, usr_dir;
    const auto mount = TestMount::tmpfs(tmp.path() / "boot", "size=64k");
    fake_kernel(usr_dir.path(), "6.1.0-test", 16 * 1024, 256 * 1024);
    const Dir boot = Dir::open(mount.path()), tree = Dir::open(usr_dir.path());
    write_entry(boot, "existing", demo_entry(), std::nullopt);
    const auto before = tree_of(mount.path());

    const std::string e = error_of([&] { install_kernel(boot, "org.example.Demo", "6.1.0-test", tree, find_kernel(tree)); });
    // Kernel and initrd are copied side by side: either may be the one that found $BOOT full.
    const auto dir = mount.path() / "org.example.Demo/6.1.0-test";
    CHECK((e.find("install kernel '" + (dir / "initrd").string() + "'") != std::string::npos ||
           e.find("install kernel '" + (dir / "linux").string() + "'") != std::string::npos));
    CHECK(e.find("No space left on device") != std::string::npos);
    // No partial file under a final name, no temporaries, no directories made by the failed call.
    CHECK(tree_of(mount.path()) == before);

    // Into an existing version directory: the complete old files stay, no temporaries.
    write_text(mount.path() / "org.example.Demo/6.1.0-test/linux", "old");
    CHECK(error_of([&] { install_kernel(boot, "org.example.Demo", "6.1.0-test", tree, find_kernel(tree)); })
              .find("No space left on device") != std::string::npos);
    const auto left = names_in(mount.path() / "org.example.Demo/6.1.0-test");
    CHECK(std::none_of(left.begin(), left.end(), [](const std::string& n) { return n.starts_with(".#"); }));
    CHECK(std::find(left.begin(), left.end(), "initrd") == left.end());
}

TEST_CASE("a read-only $BOOT gives a clear error and stays unchanged") {
    test::TempDir tmp, usr_dir, efivars;
    const auto mount = TestMount::tmpfs(tmp.path() / "boot");
    fake_kernel(usr_dir.path(), "6.1.0-test");
    const Dir boot = Dir::open(mount.path()), tree = Dir::open(usr_dir.path());
    write_entry(boot, "existing", demo_entry(), 3u);
    const auto before = tree_of(mount.path());
    mount.remount_read_only();

    std::string e = error_of([&] { write_entry(boot, "new", demo_entry(), 3u); });
    CHECK(e.find("write boot entry '" + (mount.path() / "loader/entries/new+3.conf").string() + "'") != std::string::npos);
    CHECK(e.find("Read-only file system") != std::string::npos);
    e = error_of([&] { install_kernel(boot, "org.example.Demo", "6.1.0-test", tree, find_kernel(tree)); });
    CHECK(e.find("Read-only file system") != std::string::npos);
    CHECK(e.find(mount.path().string()) != std::string::npos);
    e = error_of([&] { remove_entry(boot, "existing"); });
    CHECK(e.find("Read-only file system") != std::string::npos);
    e = error_of([&] { set_default_entry(boot, "existing", efivars.path() / "none"); });
    CHECK(e.find("set default boot entry 'existing'") != std::string::npos);
    CHECK(e.find("Read-only file system") != std::string::npos);

    CHECK(tree_of(mount.path()) == before);
    CHECK(list_entries(boot).size() == 1);  // reading works
    mount.remount_read_write();
}

TEST_CASE("bootctl reads the entries strata writes") {
    if (!have_bootctl()) return;
    test::TempDir tmp, usr_dir, efivars;
    // bootctl --esp-path wants the root of a file system; tmpfs is not vfat, hence the relaxed checks.
    const auto mount = TestMount::tmpfs(tmp.path() / "esp", "size=4m");
    fake_kernel(usr_dir.path(), "6.1.0-test");
    const Dir boot = Dir::open(mount.path()), tree = Dir::open(usr_dir.path());
    const auto k = install_kernel(boot, "org.example.Demo", "6.1.0-test", tree, find_kernel(tree));
    Entry e21 = demo_entry("2.1"), e20 = demo_entry("2.0");
    e21.linux = e20.linux = k.linux;
    e21.initrd = e20.initrd = {k.initrd};
    const std::string id21 = make_entry_id({"org.example.Demo", "web", "2.1"});
    const std::string id20 = make_entry_id({"org.example.Demo", "web", "2.0"});
    write_entry(boot, id21, e21, 3u);
    write_entry(boot, id20, e20, std::nullopt);
    set_default_entry(boot, id21, efivars.path() / "absent");

    const auto r = run_process({"env", "SYSTEMD_RELAX_ESP_CHECKS=1", "bootctl", "--esp-path=" + mount.path().string(),
                                "--no-pager", "list"});
    INFO(r.out);
    INFO(r.err);
    REQUIRE(r.exit_status == 0);
    // Split bootctl's listing into one block per entry, keyed by id.
    std::vector<std::string> blocks;
    for (size_t pos = 0; pos < r.out.size();) {
        const size_t end = r.out.find("\n\n", pos);
        blocks.push_back(r.out.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
        pos = end == std::string::npos ? r.out.size() : end + 2;
    }
    auto block_of = [&](const std::string& id) {
        for (const auto& b : blocks)
            if (b.find("id: " + id + ".conf\n") != std::string::npos) return b;
        return std::string();
    };
    const std::string b21 = block_of(id21), b20 = block_of(id20);
    REQUIRE(!b21.empty());
    REQUIRE(!b20.empty());
    CHECK(b21.find("title: Demo 2.1 (web)") != std::string::npos);
    CHECK(b21.find("(default)") != std::string::npos);  // loader.conf's default matched
    CHECK(b21.find("source: " + (mount.path() / "loader/entries" / (id21 + "+3.conf")).string()) != std::string::npos);
    CHECK(b21.find("tries: 3 left") != std::string::npos);
    CHECK(b21.find("sort-key: org.example.Demo") != std::string::npos);
    CHECK(b21.find("version: 2.1") != std::string::npos);
    CHECK(b21.find("machine-id: 0123456789abcdef0123456789abcdef") != std::string::npos);
    CHECK(b21.find("linux: /org.example.Demo/6.1.0-test/linux") != std::string::npos);
    CHECK(b21.find("initrd: /org.example.Demo/6.1.0-test/initrd") != std::string::npos);
    CHECK(b21.find("options: root=UUID=0b5e-demo rootflags=subvol=root:web:org.example.Demo:x86_64 "
                   "mount.usrflags=ro,subvol=usr:org.example.Demo:x86_64:2.1 quiet") != std::string::npos);
    CHECK(b20.find("title: Demo 2.0 (web)") != std::string::npos);
    CHECK(b20.find("tries:") == std::string::npos);
    CHECK(b20.find("(default)") == std::string::npos);
}

TEST_CASE("find_boot_dir: configured wins, then XBOOTLDR at /boot, then the ESP at /efi, /boot, /boot/efi") {
    test::require_root_and_btrfs();
    test::TempDir tmp;
    const fs::path root = tmp.path() / "root";
    fs::create_directories(root / "efi");
    fs::create_directories(root / "boot/efi/EFI");  // an EFI directory, but no mount point: not an ESP

    std::string e = error_of([&] { find_boot_dir(std::nullopt, root); });
    CHECK(e.find("find $BOOT under '" + root.string() + "'") != std::string::npos);
    CHECK(e.find("no XBOOTLDR mounted at /boot and no ESP mounted at /efi, /boot or /boot/efi") != std::string::npos);
    try {
        find_boot_dir(std::nullopt, root);
    } catch (const Error& err) {
        CHECK(err.fault() == Fault::NotFound);
    }

    fs::create_directories(tmp.path() / "elsewhere");
    auto b = find_boot_dir(tmp.path() / "elsewhere", root);
    CHECK(b.how == "configured");
    CHECK(b.dir.path() == tmp.path() / "elsewhere");
    CHECK(&b.loader_dir() == &b.dir);
    e = error_of([&] { find_boot_dir(tmp.path() / "missing", root); });
    CHECK(e.find("open configured $BOOT") != std::string::npos);
    CHECK(e.find((tmp.path() / "missing").string()) != std::string::npos);

    {
        // ESP at /boot/efi (mount point with an EFI directory).
        const auto esp = TestMount::tmpfs(root / "boot/efi");
        fs::create_directory(root / "boot/efi/EFI");
        b = find_boot_dir(std::nullopt, root);
        CHECK(b.how == "esp");
        CHECK(b.dir.path() == root / "boot/efi");
        CHECK_FALSE(b.esp);
    }
    {
        // A mount point without EFI directory (and not vfat) is no ESP.
        const auto m = TestMount::tmpfs(root / "efi");
        CHECK(error_of([&] { find_boot_dir(std::nullopt, root); }).find("no XBOOTLDR") != std::string::npos);
        // With one, /efi is the ESP, and it comes before /boot/efi.
        fs::create_directory(root / "efi/EFI");
        const auto esp2 = TestMount::tmpfs(root / "boot/efi");
        fs::create_directory(root / "boot/efi/EFI");
        b = find_boot_dir(std::nullopt, root);
        CHECK(b.how == "esp");
        CHECK(b.dir.path() == root / "efi");
    }
    {
        // /boot mounted with an EFI directory and nothing at /efi: the ESP is /boot.
        const auto m = TestMount::tmpfs(root / "boot");
        fs::create_directories(root / "boot/EFI/systemd");
        fs::create_directories(root / "boot/efi");
        b = find_boot_dir(std::nullopt, root);
        CHECK(b.how == "esp");
        CHECK(b.dir.path() == root / "boot");
        {
            // With an ESP at /efi as well, the mount point /boot is taken for XBOOTLDR (without a
            // partition type to tell, as here on tmpfs).
            const auto efi = TestMount::tmpfs(root / "efi");
            fs::create_directory(root / "efi/EFI");
            b = find_boot_dir(std::nullopt, root);
            CHECK(b.how == "xbootldr");
            CHECK(b.dir.path() == root / "boot");
            REQUIRE(b.esp);
            CHECK(b.esp->path() == root / "efi");
        }
    }
    {
        // XBOOTLDR: /boot is a mount point of its own and the ESP is at /boot/efi (the "efi" mount
        // point in /boot does not make /boot look like an ESP).
        const auto xbootldr = TestMount::tmpfs(root / "boot");
        fs::create_directories(root / "boot/efi");
        const auto esp = TestMount::tmpfs(root / "boot/efi");
        fs::create_directory(root / "boot/efi/EFI");
        b = find_boot_dir(std::nullopt, root);
        CHECK(b.how == "xbootldr");
        CHECK(b.dir.path() == root / "boot");
        REQUIRE(b.esp);
        CHECK(b.esp->path() == root / "boot/efi");
        CHECK(&b.loader_dir() == &*b.esp);
        // A configured directory still wins.
        CHECK(find_boot_dir(root / "boot/efi", root).how == "configured");
    }
    {
        // XBOOTLDR with the ESP at /efi.
        const auto efi = TestMount::tmpfs(root / "efi");
        fs::create_directory(root / "efi/EFI");
        const auto xbootldr = TestMount::tmpfs(root / "boot");
        b = find_boot_dir(std::nullopt, root);
        CAPTURE(b.dir.path());
        CHECK(b.how == "xbootldr");
        REQUIRE(b.esp);
        CHECK(b.esp->path() == root / "efi");
    }
}

TEST_CASE("loader.conf: set_default_entry keeps the other lines and default_entry reads it back") {
    test::TempDir tmp;
    const Dir boot = Dir::open(tmp.path());
    const fs::path no_efivars = tmp.path() / "no-efivars";
    CHECK_FALSE(default_entry(boot, no_efivars));

    set_default_entry(boot, "org.example.Demo-web-2.1", no_efivars);  // no loader.conf yet
    CHECK(read_text(tmp.path() / "loader/loader.conf") == "default org.example.Demo-web-2.1[.+]*\n");
    CHECK(default_entry(boot, no_efivars) == "org.example.Demo-web-2.1");

    const std::string mine = "# site settings\ntimeout 5\ndefault old-*.conf\nconsole-mode max\n# default x\neditor no";
    write_text(tmp.path() / "loader/loader.conf", mine);
    CHECK(default_entry(boot, no_efivars) == "old-*.conf");  // someone else's glob, as written
    set_default_entry(boot, "org.example.Demo-web-2.0", no_efivars);
    CHECK(read_text(tmp.path() / "loader/loader.conf") ==
          "# site settings\ntimeout 5\ndefault org.example.Demo-web-2.0[.+]*\nconsole-mode max\n# default x\neditor no");
    CHECK(default_entry(boot, no_efivars) == "org.example.Demo-web-2.0");
    CHECK(names_in(tmp.path() / "loader") == std::vector<std::string>{"loader.conf"});  // no temporaries
    write_text(tmp.path() / "loader/loader.conf", "default org.example.Demo-web-1.9.conf\n");  // strata before
    CHECK(default_entry(boot, no_efivars) == "org.example.Demo-web-1.9");

    CHECK(error_of([&] { set_default_entry(boot, "a+3", no_efivars); }).find("not a valid entry id") != std::string::npos);
}

TEST_CASE("EFI variables in a directory standing in for efivarfs") {
    test::TempDir tmp, efivars_dir;
    const Dir boot = Dir::open(tmp.path());
    const fs::path efivars = efivars_dir.path();
    const fs::path default_var = efivars / "LoaderEntryDefault-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
    const fs::path oneshot_var = efivars / "LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

    set_default_entry(boot, "web-2.1", efivars);
    CHECK(read_text(default_var) == encode_efi_string("web-2.1[.+]*"));
    CHECK(read_text(tmp.path() / "loader/loader.conf") == "default web-2.1[.+]*\n");
    CHECK(default_entry(boot, efivars) == "web-2.1");

    // The EFI variable wins over loader.conf (as in sd-boot), e.g. after `bootctl set-default`.
    write_text(default_var, encode_efi_string("other.conf"));
    CHECK(default_entry(boot, efivars) == "other");
    set_default_entry(boot, "web-2.0", efivars);
    CHECK(default_entry(boot, efivars) == "web-2.0");

    CHECK_FALSE(oneshot_entry(efivars));
    CHECK(set_oneshot_entry("web-2.1", efivars) == OneShotMethod::EfiVariable);
    CHECK(read_text(oneshot_var) == encode_efi_string("web-2.1[.+]*"));
    CHECK(oneshot_entry(efivars) == "web-2.1");
    CHECK(names_in(efivars).size() == 2);  // no temporaries

    // No EFI variables: a clear error saying what to do instead.
    const std::string e = error_of([&] { set_oneshot_entry("web-2.1", efivars / "absent"); });
    CHECK(e.find("set one-shot boot entry 'web-2.1': there are no EFI variables") != std::string::npos);
    CHECK(e.find("make the entry the default, boot it, and set the default back") != std::string::npos);
    try {
        set_oneshot_entry("web-2.1", efivars / "absent");
    } catch (const Error& err) {
        CHECK(err.fault() == Fault::Failed);
    }
    CHECK_FALSE(oneshot_entry(efivars / "absent"));
    CHECK(error_of([&] { set_oneshot_entry("bad id", efivars); }).find("not a valid id") != std::string::npos);
}

TEST_CASE("EFI variables on a read-only file system: one-shot refused, default only in loader.conf") {
    test::TempDir tmp;
    const auto vars = TestMount::tmpfs(tmp.path() / "efivars");
    const Dir boot = Dir::open(tmp.path());
    vars.remount_read_only();
    CHECK(error_of([&] { set_oneshot_entry("web", vars.path()); }).find("is mounted read-only") != std::string::npos);
    set_default_entry(boot, "web", vars.path());
    CHECK(default_entry(boot, vars.path()) == "web");
    CHECK(names_in(vars.path()).empty());
}
