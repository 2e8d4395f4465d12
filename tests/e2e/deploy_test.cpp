// Deployments through the binary: deploy, status, rollback (with and without state), pins, gc,
// several vendors, bad input and crashes between the steps of a deploy.
#include <sys/mount.h>

#include <fstream>

#include "btrfs/subvolume.hpp"
#include "e2e/e2e.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string vendor = "org.example.Demo";
const std::string root = "root:web:org.example.Demo:x86_64";
std::string usr(const std::string& version) { return "usr:" + vendor + ":x86_64:" + version; }
std::string entry_id(const std::string& version) { return vendor + "+web+" + version + "+x86_64"; }

void require_ok(const ProcessResult& r) { REQUIRE_MESSAGE(r.exit_status == 0, r.err); }

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A pool with a root instance, a directory as $BOOT and fake usr trees that carry a kernel.
struct World {
    test::ScratchPool scratch;
    test::TempDir work;
    fs::path mnt = scratch.mountpoint();
    fs::path boot = work.path() / "boot";
    fs::path config = work.path() / "strata.toml";

    World() {
        fs::create_directories(boot);
        std::ofstream(config) << "[boot]\ntries = 3\n";
        require_ok(run({"root", "create", "web", "--vendor", vendor, "--arch", "x86_64"}));
    }
    ProcessResult run(std::vector<std::string> args, const std::string& env = "") const {
        args.insert(args.begin(), {"--pool", mnt.string(), "--config", config.string(), "--boot-dir", boot.string()});
        if (env.empty()) return test::run_strata(args);
        std::string line = env + " '" + test::strata_binary() + "'";
        for (const auto& a : args) line += " '" + a + "'";
        return run_process({"sh", "-c", line});
    }
    void import_usr(const std::string& version, const std::string& id = vendor, bool with_kernel = true) const {
        const auto tree = work.path() / ("usr-" + id + "-" + version);
        fs::create_directories(tree / "lib/modules/6.1.0-test");
        std::ofstream(tree / "lib/os-release") << "NAME=Demo\nPRETTY_NAME=\"Demo OS " << version << "\"\n";
        if (with_kernel) {
            std::ofstream(tree / "lib/modules/6.1.0-test/vmlinuz") << "kernel " << version << "\n";
            std::ofstream(tree / "lib/modules/6.1.0-test/initrd.img") << "initrd " << version << "\n";
        }
        require_ok(test::strata_on(mnt, {"import", "usr:" + id + ":x86_64:" + version, "--from-dir", tree.string()}));
    }
    nlohmann::json status() const {
        auto r = run({"status", "--json"});
        REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        return nlohmann::json::parse(r.out);
    }
    std::vector<std::string> entry_files() const {
        std::vector<std::string> out;
        if (fs::exists(boot / "loader/entries"))
            for (const auto& e : fs::directory_iterator(boot / "loader/entries")) out.push_back(e.path().filename());
        std::sort(out.begin(), out.end());
        return out;
    }
    void write_marker(const std::string& text) const { std::ofstream(mnt / root / "etc/marker") << text; }
    std::string marker() const { return slurp(mnt / root / "etc/marker"); }
    // What systemd-bless-boot does after a good boot: drop the counter from the file name.
    void bless(const std::string& version) const {
        for (const auto& f : entry_files())
            if (f.starts_with(entry_id(version) + "+"))
                fs::rename(boot / "loader/entries" / f, boot / "loader/entries" / (entry_id(version) + ".conf"));
    }
};

}  // namespace

TEST_CASE("deploy writes a BLS entry, copies the kernel once and makes it the default") {
    test::require_root_and_btrfs();
    World w;
    w.import_usr("1.0");
    auto r = w.run({"deploy", root, "--json"});
    require_ok(r);
    const auto d = nlohmann::json::parse(r.out);
    CHECK(d["id"] == entry_id("1.0"));
    CHECK(d["default"] == true);
    CHECK(d["boot_state"] == "indeterminate");
    CHECK(d["tries_left"] == 3);
    CHECK(w.entry_files() == std::vector<std::string>{entry_id("1.0") + "+3.conf"});

    const auto uuid = btrfs::format_uuid(btrfs::filesystem_uuid(Dir::open(w.mnt)));
    const std::string entry = slurp(w.boot / "loader/entries" / (entry_id("1.0") + "+3.conf"));
    CHECK(entry.find("title Demo OS 1.0 (web)\n") != std::string::npos);
    CHECK(entry.find("version 1.0\n") != std::string::npos);
    CHECK(entry.find("sort-key org.example.Demo\n") != std::string::npos);
    CHECK(entry.find("linux /org.example.Demo/1.0/linux\n") != std::string::npos);
    CHECK(entry.find("initrd /org.example.Demo/1.0/initrd\n") != std::string::npos);
    CHECK(entry.find("architecture x64\n") != std::string::npos);
    CHECK(entry.find("options root=UUID=" + uuid + " rootflags=subvol=" + root + " mount.usrflags=ro,subvol=" +
                     usr("1.0") + " rw\n") != std::string::npos);
    CHECK(entry.find("machine-id") == std::string::npos);  // the new root has none yet
    CHECK(slurp(w.boot / "org.example.Demo/1.0/linux") == "kernel 1.0\n");
    CHECK(slurp(w.boot / "org.example.Demo/1.0/initrd") == "initrd 1.0\n");

    const auto st = w.status();
    CHECK(st["booted"].is_null());
    REQUIRE(st["deployments"].size() == 1);
    CHECK(st["deployments"][0]["default"] == true);
    r = w.run({"status"});
    CHECK(r.out.rfind("Booted: not booted from a strata pool\n", 0) == 0);

    // Deploying again changes nothing: same entry file, same counter.
    require_ok(w.run({"deploy", root}));
    CHECK(w.entry_files() == std::vector<std::string>{entry_id("1.0") + "+3.conf"});
}

TEST_CASE("a new usr version keeps the old state, rollback returns to it, --with-state restores and undoes") {
    test::require_root_and_btrfs();
    World w;
    w.import_usr("1.0");
    require_ok(w.run({"deploy", root}));
    w.write_marker("state of 1.0\n");
    w.import_usr("2.0");
    require_ok(w.run({"deploy", root}));
    w.write_marker("state of 2.0\n");

    auto st = w.status();
    REQUIRE(st["deployments"].size() == 2);
    CHECK(st["deployments"][0]["version"] == "1.0");
    CHECK(st["deployments"][0]["default"] == false);
    CHECK(st["deployments"][1]["default"] == true);
    const std::string kept = st["deployments"][0]["state_snapshot"];
    CHECK(btrfs::read_only(Dir::open(w.mnt / kept)));
    CHECK(slurp(w.mnt / kept / "etc/marker") == "state of 1.0\n");

    // Rollback with state: 1.0 boots next with the state it had; the 2.0 state is kept, so a
    // second rollback undoes the first.
    auto r = w.run({"rollback", root, "--with-state"});
    require_ok(r);
    CHECK(r.out == "Default is now '" + entry_id("1.0") + "': '" + root + "' with '" + usr("1.0") + "'.\n");
    CHECK(w.marker() == "state of 1.0\n");
    CHECK_FALSE(btrfs::read_only(Dir::open(w.mnt / root)));
    CHECK(w.status()["deployments"][0]["default"] == true);
    require_ok(w.run({"rollback", root, "--with-state"}));
    CHECK(w.marker() == "state of 2.0\n");
    CHECK(w.status()["deployments"][1]["default"] == true);

    // OS-only rollback: 1.0 boots next, the state stays as it is.
    require_ok(w.run({"rollback"}));
    CHECK(w.marker() == "state of 2.0\n");
    CHECK(w.status()["deployments"][0]["default"] == true);
    require_ok(w.run({"set-default", entry_id("2.0")}));
    CHECK(w.status()["deployments"][1]["default"] == true);
    CHECK(test::listed_names(w.mnt) == std::vector<std::string>{usr("1.0"), usr("2.0"), root});
}

TEST_CASE("deploy's default follows the root's newest entry with tries left, set-default pins one") {
    test::require_root_and_btrfs();
    World w;
    for (const auto* v : {"1.0", "2.0", "3.0"}) w.import_usr(v);
    require_ok(w.run({"deploy", root, "--version", "1.0"}));
    w.bless("1.0");
    // A second instance whose name starts like the first one's, on a newer version: root web's
    // default must never pick its entries.
    require_ok(w.run({"root", "create", "web-2", "--vendor", vendor, "--arch", "x86_64"}));
    require_ok(w.run({"deploy", "root:web-2:" + vendor + ":x86_64"}));
    require_ok(w.run({"deploy", root, "--version", "2.0"}));
    auto st = w.status();
    CHECK(st["loader_default"] == vendor + "+web+*+x86_64");
    CHECK(slurp(w.boot / "loader/loader.conf") == "default " + vendor + "+web+*+x86_64[.+]*\n");
    CHECK(st["next_boot"] == entry_id("2.0"));

    // 2.0 used up its tries without reaching boot-complete.target: the loader falls back to 1.0.
    fs::rename(w.boot / "loader/entries" / (entry_id("2.0") + "+3.conf"),
               w.boot / "loader/entries" / (entry_id("2.0") + "+0-3.conf"));
    st = w.status();
    CHECK(st["next_boot"] == entry_id("1.0"));
    for (const auto& d : st["deployments"]) {
        if (d["id"] == entry_id("2.0")) {
            CHECK(d["boot_state"] == "bad");
            CHECK(d["default"] == true);  // what deploy chose; the loader skips it
        }
    }
    // An explicit choice holds, even for an entry without tries left.
    require_ok(w.run({"set-default", entry_id("2.0")}));
    st = w.status();
    CHECK(st["loader_default"] == entry_id("2.0"));
    CHECK(st["next_boot"] == entry_id("2.0"));
}

TEST_CASE("bad input to deploy is refused with one line and changes nothing") {
    test::require_root_and_btrfs();
    World w;
    const auto before_list = test::list_json(w.mnt);
    test::check_one_line_error(w.run({"deploy", root}), 3,
                               "deploy '" + root + "': no usr:org.example.Demo:x86_64:* in the pool to deploy");
    w.import_usr("1.0");
    test::check_one_line_error(w.run({"deploy", root, "--version", "9"}), 3,
                               "deploy '" + root + "': no usr:org.example.Demo:x86_64:9 in the pool");
    test::check_one_line_error(w.run({"deploy", "root:nope:org.example.Demo:x86_64"}), 3,
                               "deploy 'root:nope:org.example.Demo:x86_64': no such root instance in the pool");
    test::check_one_line_error(w.run({"deploy", usr("1.0")}), 2,
                               "deploy '" + usr("1.0") +
                                   "': not a root instance name (root:<name>:<vendor-id>:<arch>)");
    w.import_usr("2.0", vendor, /*with_kernel=*/false);
    auto r = w.run({"deploy", root});
    CHECK(r.exit_status == 3);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_MESSAGE(r.err.find("2.0") != std::string::npos, r.err);
    CHECK(w.entry_files().empty());
    CHECK_FALSE(fs::exists(w.mnt / ".strata/state"));

    // An unwritable $BOOT: nothing half-written.
    require_ok(w.run({"deploy", root, "--version", "1.0"}));
    const auto entries = w.entry_files();
    REQUIRE(::mount(w.boot.c_str(), w.boot.c_str(), nullptr, MS_BIND, nullptr) == 0);
    REQUIRE(::mount(nullptr, w.boot.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0);
    w.import_usr("3.0");
    r = w.run({"deploy", root});
    ::umount(w.boot.c_str());
    CHECK(r.exit_status == 1);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_MESSAGE(r.err.find("Read-only file system") != std::string::npos, r.err);
    CHECK(w.entry_files() == entries);
    CHECK(w.status()["deployments"][0]["default"] == true);
    CHECK(before_list.size() + 3 == test::list_json(w.mnt).size());
}

TEST_CASE("a deploy killed after any step leaves the previous default bootable, the next run completes it") {
    test::require_root_and_btrfs();
    for (const std::string step : {"deploy:state-snapshot", "deploy:kernel", "deploy:entry", "deploy:database"}) {
        CAPTURE(step);
        World w;
        w.import_usr("1.0");
        require_ok(w.run({"deploy", root}));
        const auto old_entry = slurp(w.boot / "loader/entries" / (entry_id("1.0") + "+3.conf"));
        w.import_usr("2.0");
        auto r = w.run({"deploy", root}, "STRATA_TEST_CRASH_AT=" + step);
        CHECK(r.exit_status == 128 + 9);
        // The old entry is untouched, its kernel in place, and it is still the default.
        CHECK(slurp(w.boot / "loader/entries" / (entry_id("1.0") + "+3.conf")) == old_entry);
        CHECK(slurp(w.boot / "org.example.Demo/1.0/linux") == "kernel 1.0\n");
        CHECK(w.status()["next_boot"] == entry_id("1.0"));
        // The next run finishes the job; gc removes what the crash left over.
        require_ok(w.run({"deploy", root}));
        const auto st = w.status();
        REQUIRE(st["deployments"].size() == 2);
        CHECK(st["deployments"][1]["default"] == true);
        require_ok(w.run({"gc", "--keep", "5"}));
        CHECK(fs::exists(w.mnt / std::string(st["deployments"][0]["state_snapshot"])));
        size_t snapshots = 0;
        for ([[maybe_unused]] const auto& e : fs::directory_iterator(w.mnt / ".strata/state")) ++snapshots;
        CHECK(snapshots == 1);
    }
}

TEST_CASE("gc keeps N versions and whatever is default, pinned or not yet good, and removes the rest") {
    test::require_root_and_btrfs();
    World w;
    for (const std::string v : {"1", "2", "3", "4"}) {
        w.import_usr(v);
        require_ok(w.run({"deploy", root}));
    }
    for (const std::string v : {"1", "2", "3"}) w.bless(v);  // 4 is on trial
    require_ok(w.run({"pin", entry_id("1")}));

    auto r = w.run({"gc", "--keep", "1", "--dry-run", "--json"});
    require_ok(r);
    auto j = nlohmann::json::parse(r.out);
    CHECK(j["usr"] == nlohmann::json::array({usr("2")}));
    CHECK(test::listed_names(w.mnt).size() == 5);

    r = w.run({"gc", "--keep", "1", "--json"});
    require_ok(r);
    j = nlohmann::json::parse(r.out);
    // 1 is pinned, 3 is the newest good one while 4 is on trial, 4 is the default.
    CHECK(j["usr"] == nlohmann::json::array({usr("2")}));
    CHECK(j["entries"] == nlohmann::json::array({entry_id("2")}));
    CHECK(j["kernels"] == nlohmann::json::array({"org.example.Demo/2"}));
    CHECK(j["states"].size() == 1);
    CHECK(j["freed_bytes"].is_null());  // not waited for the btrfs cleaner
    CHECK(test::listed_names(w.mnt) == std::vector<std::string>{usr("1"), usr("3"), usr("4"), root});
    CHECK_FALSE(fs::exists(w.boot / "org.example.Demo/2"));
    CHECK(fs::exists(w.boot / "org.example.Demo/3/linux"));

    // Once 4 is good and 1 unpinned, only 4 stays.
    w.bless("4");
    require_ok(w.run({"unpin", entry_id("1")}));
    r = w.run({"gc", "--keep", "1", "--wait"});
    require_ok(r);
    CHECK(r.out.find("Freed ") != std::string::npos);
    CHECK(test::listed_names(w.mnt) == std::vector<std::string>{usr("4"), root});
    CHECK(w.entry_files() == std::vector<std::string>{entry_id("4") + ".conf"});
}

TEST_CASE("a gc killed after any step leaves the default bootable, and the next gc finishes") {
    test::require_root_and_btrfs();
    for (const std::string step : {"gc:entries", "gc:database", "gc:kernels", "gc:states"}) {
        CAPTURE(step);
        World w;
        for (const std::string v : {"1", "2", "3"}) {
            w.import_usr(v);
            require_ok(w.run({"deploy", root}));
            w.bless(v);
        }
        const auto default_entry = slurp(w.boot / "loader/entries" / (entry_id("3") + ".conf"));
        auto r = w.run({"gc", "--keep", "1"}, "STRATA_TEST_CRASH_AT=" + step);
        CHECK(r.exit_status == 128 + 9);
        CHECK(slurp(w.boot / "loader/entries" / (entry_id("3") + ".conf")) == default_entry);
        CHECK(slurp(w.boot / "org.example.Demo/3/linux") == "kernel 3\n");
        CHECK(fs::exists(w.mnt / usr("3")));
        require_ok(w.run({"gc", "--keep", "1"}));
        CHECK(test::listed_names(w.mnt) == std::vector<std::string>{usr("3"), root});
        CHECK(w.entry_files() == std::vector<std::string>{entry_id("3") + ".conf"});
        CHECK_FALSE(fs::exists(w.boot / "org.example.Demo/1"));
        CHECK_FALSE(fs::exists(w.boot / "org.example.Demo/2"));
        size_t snapshots = 0;
        for ([[maybe_unused]] const auto& e : fs::directory_iterator(w.mnt / ".strata/state")) ++snapshots;
        CHECK(snapshots == 0);
    }
}

TEST_CASE("two vendors side by side: own entries, sort keys and retention") {
    test::require_root_and_btrfs();
    World w;
    const std::string other = "org.other.Os";
    const std::string other_root = "root:db:org.other.Os:x86_64";
    require_ok(w.run({"root", "create", "db", "--vendor", other, "--arch", "x86_64"}));
    w.import_usr("1.0");
    w.import_usr("7", other);
    w.import_usr("8", other);
    require_ok(w.run({"deploy", root}));
    require_ok(w.run({"deploy", other_root, "--version", "7"}));
    require_ok(w.run({"deploy", other_root}));
    const auto st = w.status();
    REQUIRE(st["deployments"].size() == 3);
    CHECK(slurp(w.boot / "loader/entries" / (other + "+db+8+x86_64+3.conf")).find("sort-key org.other.Os\n") !=
          std::string::npos);
    CHECK(fs::exists(w.boot / "org.other.Os/7/linux"));
    for (const std::string v : {"7", "8"})
        fs::rename(w.boot / "loader/entries" / (other + "+db+" + v + "+x86_64+3.conf"),
                   w.boot / "loader/entries" / (other + "+db+" + v + "+x86_64.conf"));
    require_ok(w.run({"gc", "--keep", "1"}));
    CHECK(test::listed_names(w.mnt) ==
          std::vector<std::string>{usr("1.0"), "usr:org.other.Os:x86_64:8", other_root, root});
}

TEST_CASE("root clone and remove") {
    test::require_root_and_btrfs();
    World w;
    std::ofstream(w.mnt / root / "etc/machine-id") << "0123456789abcdef0123456789abcdef\n";
    w.write_marker("x\n");
    require_ok(w.run({"root", "clone", root, "web2"}));
    const std::string clone = "root:web2:org.example.Demo:x86_64";
    CHECK(slurp(w.mnt / clone / "etc/marker") == "x\n");
    CHECK_FALSE(fs::exists(w.mnt / clone / "etc/machine-id"));
    require_ok(w.run({"root", "clone", root, "web3", "--keep-machine-id"}));
    CHECK(fs::exists(w.mnt / "root:web3:org.example.Demo:x86_64/etc/machine-id"));

    w.import_usr("1.0");
    require_ok(w.run({"deploy", clone}));
    CHECK(slurp(w.boot / "loader/entries" / (vendor + "+web2+1.0+x86_64+3.conf")).find("machine-id") ==
          std::string::npos);
    require_ok(w.run({"root", "remove", clone}));
    CHECK_FALSE(fs::exists(w.mnt / clone));
    CHECK(w.entry_files().empty());
    test::check_one_line_error(w.run({"root", "remove", clone}), 3,
                               "remove root '" + clone + "': no such root instance in the pool");
}

TEST_CASE("remove refuses a deployed usr and --force takes its entry away first") {
    test::require_root_and_btrfs();
    World w;
    w.import_usr("1");
    w.import_usr("2");
    require_ok(w.run({"deploy", root, "--version", "1"}));
    require_ok(w.run({"deploy", root}));
    const auto entries = w.entry_files();
    test::check_one_line_error(w.run({"remove", usr("2")}), 6,
                               "remove '" + usr("2") + "': in use (boot entry '" + entry_id("2") + "' (default of " + root +
                                   ")); --force removes it anyway");
    test::check_one_line_error(w.run({"remove", usr("1"), usr("2")}), 6,
                               "remove '" + usr("1") + "': in use (boot entry '" + entry_id("1") + "'); --force removes it anyway");
    CHECK(w.entry_files() == entries);
    CHECK(fs::exists(w.mnt / usr("1")));
    REQUIRE(fs::exists(w.boot / "org.example.Demo/1/linux"));
    require_ok(w.run({"remove", usr("1"), "--force"}));
    CHECK_FALSE(fs::exists(w.mnt / usr("1")));
    for (const auto& f : w.entry_files()) CHECK(f.find(entry_id("1")) == std::string::npos);
    // Its kernel copy went with it; the other version's stays.
    CHECK_FALSE(fs::exists(w.boot / "org.example.Demo/1"));
    CHECK(slurp(w.boot / "org.example.Demo/2/linux") == "kernel 2\n");
    const auto st = w.status();
    REQUIRE(st["deployments"].size() == 1);
    CHECK(st["deployments"][0]["usr"] == usr("2"));
}
