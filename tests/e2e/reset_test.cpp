// Factory reset through the binary: levels, kept paths, homes, undo, dry runs, scheduling for a
// root in use, gc of the old state, crashes, and bad input that must change nothing.
#include <sys/mount.h>
#include <sys/stat.h>

#include <fstream>

#include "e2e/e2e.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string vendor = "org.example.Demo";
const std::string root = "root:web:org.example.Demo:x86_64";
const std::string usr1 = "usr:org.example.Demo:x86_64:1";

void require_ok(const ProcessResult& r) { REQUIRE_MESSAGE(r.exit_status == 0, r.err); }

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void put(const fs::path& p, const std::string& text, fs::perms mode = fs::perms(0644)) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    fs::permissions(p, mode);
}

// A pool with one deployed root whose usr ships a factory, and admin changes in its state.
struct World {
    test::ScratchPool scratch;
    test::TempDir work;
    fs::path mnt = scratch.mountpoint();
    fs::path boot = work.path() / "boot";
    fs::path config = work.path() / "strata.toml";
    fs::path state = mnt / root;

    World() {
        fs::create_directories(boot);
        std::ofstream(config) << "[boot]\ntries = 0\n";
        const auto tree = work.path() / "usr";
        put(tree / "lib/modules/6.1.0-test/vmlinuz", "kernel\n");
        put(tree / "lib/modules/6.1.0-test/initrd.img", "initrd\n");
        put(tree / "share/factory/etc/hostname", "factory-host\n");
        put(tree / "share/factory/etc/ssh/sshd_config", "factory sshd\n");
        put(tree / "share/factory/var/lib/foo/data", "factory var\n");
        put(tree / "lib/tmpfiles.d/strata-factory.conf", "C /etc/hostname\nC /etc/ssh\nd /var/lib 0755 0 0 -\nC /var/lib/foo\n");
        require_ok(test::strata_on(mnt, {"import", usr1, "--from-dir", tree.string()}));
        require_ok(run({"root", "create", "web", "--vendor", vendor, "--arch", "x86_64"}));
        require_ok(run({"deploy", root}));
        // What the admin made of it.
        put(state / "etc/hostname", "admin-host\n");
        put(state / "etc/ssh/sshd_config", "admin sshd\n");
        put(state / "etc/ssh/ssh_host_ed25519_key", "KEY\n", fs::perms(0600));
        put(state / "etc/extra.conf", "extra\n");
        put(state / "etc/passwd", "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n");
        put(state / "var/lib/foo/data", "admin var\n");
        put(state / "srv/www/index.html", "site\n");
    }
    ProcessResult run(std::vector<std::string> args) const {
        args.insert(args.begin(), {"--pool", mnt.string(), "--config", config.string(), "--boot-dir", boot.string()});
        return test::run_strata(args);
    }
    nlohmann::json reset(std::vector<std::string> args) const {
        args.insert(args.begin(), "factory-reset");
        args.push_back("--json");
        auto r = run(args);
        REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        return nlohmann::json::parse(r.out);
    }
    // Everything a reset could touch, to prove that a refused one touched nothing.
    std::string fingerprint() const {
        std::string out;
        for (const auto& e : fs::recursive_directory_iterator(mnt)) {
            if (e.path().string().find("/.strata/skeletons") != std::string::npos) continue;
            out += e.path().string() + (e.is_regular_file() ? "=" + slurp(e.path()) : "") + "\n";
        }
        return out;
    }
};

}  // namespace

TEST_CASE("factory-reset --level etc puts /etc back to factory and keeps the chosen paths") {
    test::require_root_and_btrfs();
    World w;
    const auto j = w.reset({root, "--level", "etc", "--keep", "/etc/ssh/ssh_host_*", "--yes"});
    CHECK(j["cleared"] == nlohmann::json::array({"/etc"}));
    CHECK(j["kept"] == nlohmann::json::array({"/etc/ssh/ssh_host_ed25519_key"}));
    CHECK(j["populated_from"] == usr1);
    CHECK(j["scheduled"] == false);
    CHECK(slurp(w.state / "etc/hostname") == "factory-host\n");
    CHECK(slurp(w.state / "etc/ssh/sshd_config") == "factory sshd\n");
    CHECK(slurp(w.state / "etc/ssh/ssh_host_ed25519_key") == "KEY\n");
    CHECK((fs::status(w.state / "etc/ssh/ssh_host_ed25519_key").permissions() & fs::perms::all) == fs::perms(0600));
    CHECK_FALSE(fs::exists(w.state / "etc/extra.conf"));
    CHECK_FALSE(fs::exists(w.state / "etc/passwd"));
    CHECK(slurp(w.state / "var/lib/foo/data") == "admin var\n");  // /var is not this level's
    CHECK(slurp(w.state / "srv/www/index.html") == "site\n");

    // Undo brings the admin's /etc back exactly and drops the kept copy.
    auto r = w.run({"factory-reset", root, "--undo"});
    require_ok(r);
    CHECK(r.out == "Restored the state of '" + root + "' from before its factory reset.\n");
    CHECK(slurp(w.state / "etc/hostname") == "admin-host\n");
    CHECK(slurp(w.state / "etc/extra.conf") == "extra\n");
    CHECK_FALSE(fs::exists(w.mnt / ".strata/reset" / root));
    test::check_one_line_error(w.run({"factory-reset", root, "--undo"}), 3,
                               "undo factory reset '" + root + "': no factory reset to undo (none kept, or gc removed it)");
}

TEST_CASE("factory-reset --level state resets /var too and the root stays writable") {
    test::require_root_and_btrfs();
    World w;
    w.reset({"web", "--yes"});  // the short name and the default level
    CHECK(slurp(w.state / "etc/hostname") == "factory-host\n");
    CHECK(slurp(w.state / "var/lib/foo/data") == "factory var\n");
    CHECK(slurp(w.state / "srv/www/index.html") == "site\n");
    std::ofstream(w.state / "etc/after") << "writable\n";
    CHECK(slurp(w.state / "etc/after") == "writable\n");
}

TEST_CASE("factory-reset --level all --homes starts from a fresh instance and sets the root's homes aside") {
    test::require_root_and_btrfs();
    World w;
    require_ok(run_process({"btrfs", "subvolume", "create", (w.mnt / "home:alice:1000:1000").string()}));
    require_ok(run_process({"btrfs", "subvolume", "create", (w.mnt / "home:bob:1001:1001").string()}));
    std::ofstream(w.mnt / "home:alice:1000:1000/notes") << "alice\n";
    const auto j = w.reset({root, "--level", "all", "--homes", "--yes"});
    CHECK(j["cleared"] == nlohmann::json::array({"/"}));
    CHECK(j["homes"] == nlohmann::json::array({"home:alice:1000:1000"}));
    CHECK_FALSE(fs::exists(w.state / "srv/www"));
    CHECK(fs::is_symlink(w.state / "bin"));
    CHECK((fs::status(w.state / "tmp").permissions() & fs::perms::mask) == fs::perms(01777));
    CHECK(slurp(w.state / "etc/hostname") == "factory-host\n");
    auto names = test::listed_names(w.mnt);
    CHECK(std::find(names.begin(), names.end(), "home:alice:1000:1000") == names.end());
    CHECK(std::find(names.begin(), names.end(), "home:bob:1001:1001") != names.end());  // not a user of this root

    require_ok(w.run({"factory-reset", root, "--undo"}));
    CHECK(slurp(w.state / "srv/www/index.html") == "site\n");
    CHECK(slurp(w.mnt / "home:alice:1000:1000/notes") == "alice\n");
    std::ofstream(w.mnt / "home:alice:1000:1000/more") << "writable again\n";
    CHECK(fs::exists(w.mnt / "home:alice:1000:1000/more"));
}

TEST_CASE("factory-reset --dry-run reports and changes nothing") {
    test::require_root_and_btrfs();
    World w;
    const auto before = w.fingerprint();
    const auto j = w.reset({root, "--level", "state", "--keep", "/etc/ssh/ssh_host_*", "--dry-run"});
    CHECK(j["dry_run"] == true);
    CHECK(j["kept"] == nlohmann::json::array({"/etc/ssh/ssh_host_ed25519_key"}));
    CHECK(w.fingerprint() == before);
}

TEST_CASE("a root in use is scheduled, not reset, and the boot-time run carries it out") {
    test::require_root_and_btrfs();
    World w;
    test::TempDir where;
    require_ok(run_process({"mount", "-o", "subvol=" + root, w.scratch.device().string(), where.path().string()}));
    struct Unmount {
        fs::path p;
        ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
    } unmount{where.path()};

    const auto j = w.reset({root, "--yes"});
    CHECK(j["scheduled"] == true);
    CHECK(j["in_use"] == "mounted at " + where.path().string());
    CHECK(slurp(w.state / "etc/hostname") == "admin-host\n");
    CHECK(fs::exists(w.mnt / ".strata/reset" / (root + ".request.json")));
    auto st = w.run({"status", "--json"});
    require_ok(st);
    CHECK(nlohmann::json::parse(st.out)["scheduled_factory_resets"] ==
          nlohmann::json::parse(R"([{"root": ")" + root + R"(", "level": "state"}])"));
    st = w.run({"status"});
    CHECK(st.out.find("Factory reset scheduled: '" + root + "' (level state) on its next boot\n") != std::string::npos);

    // Still mounted: the boot-time run leaves it scheduled.
    auto r = w.run({"factory-reset", "--apply-scheduled", "--json"});
    require_ok(r);
    CHECK(nlohmann::json::parse(r.out).empty());
    CHECK(slurp(w.state / "etc/hostname") == "admin-host\n");

    REQUIRE(::umount2(where.path().c_str(), 0) == 0);
    r = w.run({"factory-reset", "--apply-scheduled", "--json"});
    require_ok(r);
    const auto done = nlohmann::json::parse(r.out);
    REQUIRE(done.size() == 1);
    CHECK(done[0]["root"] == root);
    CHECK(slurp(w.state / "etc/hostname") == "factory-host\n");
    CHECK(slurp(w.state / "var/lib/foo/data") == "factory var\n");
    CHECK_FALSE(fs::exists(w.mnt / ".strata/reset" / (root + ".request.json")));
    require_ok(w.run({"factory-reset", root, "--undo"}));
    CHECK(slurp(w.state / "etc/hostname") == "admin-host\n");
}

TEST_CASE("factory-reset --on-next-boot schedules and --undo cancels") {
    test::require_root_and_btrfs();
    World w;
    auto r = w.run({"factory-reset", root, "--on-next-boot", "--level", "etc"});
    require_ok(r);
    CHECK(r.out.find("Scheduled a factory reset (level etc) of '" + root + "' for its next boot.") == 0);
    CHECK(slurp(w.state / "etc/hostname") == "admin-host\n");
    r = w.run({"factory-reset", root, "--undo"});
    require_ok(r);
    CHECK(r.out == "Cancelled the factory reset scheduled for '" + root + "'.\n");
    r = w.run({"factory-reset", "--apply-scheduled", "--json"});
    require_ok(r);
    CHECK(nlohmann::json::parse(r.out).empty());
    CHECK(slurp(w.state / "etc/hostname") == "admin-host\n");

    // A reset done now supersedes a scheduled one: the next boot does not reset again.
    require_ok(w.run({"factory-reset", root, "--on-next-boot"}));
    require_ok(w.run({"factory-reset", root, "--level", "etc", "--yes"}));
    std::ofstream(w.state / "etc/hostname") << "changed after the reset\n";
    r = w.run({"factory-reset", "--apply-scheduled", "--json"});
    require_ok(r);
    CHECK(nlohmann::json::parse(r.out).empty());
    CHECK(slurp(w.state / "etc/hostname") == "changed after the reset\n");
}

TEST_CASE("gc keeps the old state of a reset for the undo period and then removes it") {
    test::require_root_and_btrfs();
    World w;
    w.reset({root, "--yes"});
    auto r = w.run({"gc", "--json"});
    require_ok(r);
    CHECK(nlohmann::json::parse(r.out)["resets"].empty());
    CHECK(fs::exists(w.mnt / ".strata/reset" / root / "root"));
    r = w.run({"gc", "--reset-undo-days", "0", "--json"});
    require_ok(r);
    CHECK(nlohmann::json::parse(r.out)["resets"] == nlohmann::json::array({".strata/reset/" + root}));
    CHECK_FALSE(fs::exists(w.mnt / ".strata/reset" / root));
    CHECK(w.run({"factory-reset", root, "--undo"}).exit_status == 3);
}

TEST_CASE("a reset killed at any step leaves the old or the new state and the next command works") {
    test::require_root_and_btrfs();
    for (const std::string step : {"reset:undo", "reset:root"}) {
        CAPTURE(step);
        World w;
        std::string line = "STRATA_TEST_CRASH_AT=" + step + " '" + test::strata_binary() + "' --pool '" +
                           w.mnt.string() + "' --config '" + w.config.string() + "' factory-reset " + root + " --yes";
        CHECK(run_process({"sh", "-c", line}).exit_status == 128 + 9);
        const auto hostname = slurp(w.state / "etc/hostname");
        CHECK((hostname == "admin-host\n" || hostname == "factory-host\n"));
        CHECK(slurp(w.state / "etc/hostname") == (step == "reset:undo" ? "admin-host\n" : "factory-host\n"));
        // The old state is kept either way, and undo brings it back.
        require_ok(w.run({"factory-reset", root, "--undo"}));
        CHECK(slurp(w.state / "etc/hostname") == "admin-host\n");
        require_ok(w.run({"factory-reset", root, "--yes"}));
        CHECK(slurp(w.state / "etc/hostname") == "factory-host\n");
    }
}

TEST_CASE("factory-reset refuses bad input with one line and changes nothing") {
    test::require_root_and_btrfs();
    World w;
    const auto before = w.fingerprint();
    test::check_one_line_error(w.run({"factory-reset", "nope", "--yes"}), 3,
                               "factory reset 'nope': no such root instance in the pool");
    test::check_one_line_error(w.run({"factory-reset", "root:nope:org.example.Demo:x86_64", "--yes"}), 3,
                               "factory reset 'root:nope:org.example.Demo:x86_64': no such root instance in the pool");
    test::check_one_line_error(w.run({"factory-reset", usr1, "--yes"}), 2,
                               "factory reset '" + usr1 + "': not a root instance name (root:<name>:<vendor-id>:<arch>)");
    test::check_one_line_error(w.run({"factory-reset", root, "--keep", "/home/alice", "--yes"}), 2,
                               "factory reset '" + root + "': keep path '/home/alice' is not below /etc or /var, which this reset clears");
    test::check_one_line_error(w.run({"factory-reset", root, "--level", "etc", "--keep", "/var/lib/foo", "--yes"}), 2,
                               "factory reset '" + root + "': keep path '/var/lib/foo' is not below /etc, which this reset clears");
    test::check_one_line_error(w.run({"factory-reset", root, "--keep", "/etc/../root", "--yes"}), 2,
                               "factory reset '" + root + "': keep path '/etc/../root' must be a plain absolute path (no '.', '..' or '//')");
    test::check_one_line_error(w.run({"factory-reset", root, "--homes", "--yes"}), 2,
                               "factory reset '" + root + "': --homes resets homes only with --level all");
    test::check_one_line_error(w.run({"factory-reset", root}), 2,
                               "factory reset '" + root + "': refusing without --yes when not on a terminal (--dry-run shows what goes)");
    auto r = w.run({"factory-reset", root, "--level", "everything", "--yes"});
    CHECK(r.exit_status == 2);
    CHECK(r.err.find("everything") != std::string::npos);
    CHECK(w.fingerprint() == before);
}
