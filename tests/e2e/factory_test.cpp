// strata factory prepare / populate through the binary: output, --json, the usr taken from the
// deployment, and bad input that must fail with one line and change nothing.
#include <unistd.h>

#include <fstream>

#include "e2e/e2e.hpp"
#include "support/tree.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string vendor = "org.example.Demo";
const std::string root = "root:web:org.example.Demo:x86_64";
const std::string usr = "usr:org.example.Demo:x86_64:1.0";

void require_ok(const ProcessResult& r) { REQUIRE_MESSAGE(r.exit_status == 0, r.err); }

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write(const fs::path& p, const std::string& content, mode_t mode = 0644) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    fs::permissions(p, static_cast<fs::perms>(mode));
}

void make_tree(const fs::path& tree) {
    write(tree / "usr/lib/os-release", "NAME=Demo\nPRETTY_NAME=\"Demo OS 1.0\"\n");
    write(tree / "usr/lib/modules/6.1.0-test/vmlinuz", "kernel\n");
    write(tree / "usr/lib/modules/6.1.0-test/initrd.img", "initrd\n");
    write(tree / "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    write(tree / "etc/shadow", "root:*:19000:0:99999:7:::\n", 0640);
    REQUIRE(::chown((tree / "etc/shadow").c_str(), 0, 42) == 0);
    write(tree / "etc/hostname", "demo\n");
    write(tree / "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    fs::create_symlink("../usr/lib/os-release", tree / "etc/os-release");
    write(tree / "var/lib/foo/state", "state\n");
    write(tree / "var/log/x.log", "log\n");
}

// A copy of dir to compare with after a command that must not change anything.
struct Unchanged {
    fs::path dir, copy;
    Unchanged(const fs::path& d, const fs::path& c) : dir(d), copy(c) {
        require_ok(run_process({"cp", "-a", dir.string(), copy.string()}));
    }
    std::vector<std::string> differences() const { return test::compare_trees(copy, dir); }
};

struct World {
    test::ScratchPool scratch;
    test::TempDir work;
    fs::path mnt = scratch.mountpoint();
    fs::path tree = work.path() / "tree";
    fs::path boot = work.path() / "boot";
    World() {
        make_tree(tree);
        fs::create_directories(boot);
    }
    ProcessResult run(std::vector<std::string> args) const {
        args.insert(args.begin(), {"--pool", mnt.string(), "--boot-dir", boot.string()});
        return test::run_strata(args);
    }
};

}  // namespace

TEST_CASE("factory prepare and populate through the binary") {
    test::require_root_and_btrfs();
    World w;
    auto r = w.run({"factory", "prepare", w.tree.string(), "--exclude", "etc/hostname", "--json"});
    require_ok(r);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["tree"] == w.tree.string());
    CHECK(j["rules_file"] == "/usr/lib/tmpfiles.d/strata-factory.conf");
    CHECK(j["rules"] == nlohmann::json::array({"d /etc 0755 0 0 -", "L /etc/os-release - - - - ../usr/lib/os-release",
                                               "C /etc/passwd", "C /etc/shadow", "d /var 0755 0 0 -", "C /var/lib",
                                               "C /var/log"}));
    CHECK(j["excluded"] == nlohmann::json::array({"/etc/hostname", "/etc/machine-id", "/var/log/x.log"}));
    CHECK(fs::is_empty(w.tree / "etc"));
    CHECK(slurp(w.tree / "usr/share/factory/etc/passwd") == "root:x:0:0:root:/root:/bin/bash\n");

    require_ok(w.run({"import", usr, "--from-dir", (w.tree / "usr").string()}));
    require_ok(w.run({"root", "create", "web", "--vendor", vendor, "--arch", "x86_64"}));

    // Without --usr the root needs a deployment to say which usr it runs.
    test::check_one_line_error(w.run({"factory", "populate", root}), 3,
                               "populate '" + root + "': it has no deployment to take the usr from; name one with --usr");
    CHECK(fs::is_empty(w.mnt / root / "etc"));

    r = w.run({"factory", "populate", root, "--usr", usr, "--json"});
    require_ok(r);
    const auto p = nlohmann::json::parse(r.out);
    CHECK(p["root"] == root);
    CHECK(p["usr"] == usr);
    CHECK(p["copied"] == nlohmann::json::array({"/etc/passwd", "/etc/shadow", "/var/lib", "/var/log"}));
    CHECK(p["linked"] == nlohmann::json::array({"/etc/os-release"}));
    CHECK(p["created"] == nlohmann::json::array());
    CHECK(p["skipped"] == nlohmann::json::array({"/etc", "/var"}));
    CHECK(p["missing"] == nlohmann::json::array());
    const fs::path etc = w.mnt / root / "etc";
    CHECK(slurp(etc / "passwd") == "root:x:0:0:root:/root:/bin/bash\n");
    struct stat st {};
    REQUIRE(::stat((etc / "shadow").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);
    CHECK(st.st_gid == 42);
    CHECK(fs::read_symlink(etc / "os-release") == "../usr/lib/os-release");
    CHECK_FALSE(fs::exists(etc / "machine-id"));
    CHECK_FALSE(fs::exists(etc / "hostname"));
    CHECK(slurp(w.mnt / root / "var/lib/foo/state") == "state\n");
    CHECK(fs::is_directory(w.mnt / root / "var/log"));
    CHECK(fs::is_empty(w.mnt / root / "var/log"));

    // Again: all present, nothing copied; the text form counts.
    r = w.run({"factory", "populate", root, "--usr", usr});
    require_ok(r);
    CHECK(r.out == "Populated '" + root + "' from '" + usr + "': 0 copied, 0 linked, 0 created, 7 present already.\n");

    // After a deploy the usr comes from the deployments database.
    require_ok(w.run({"root", "create", "db", "--vendor", vendor, "--arch", "x86_64"}));
    const std::string db = "root:db:org.example.Demo:x86_64";
    require_ok(w.run({"deploy", db}));
    r = w.run({"factory", "populate", db});
    require_ok(r);
    CHECK(r.out == "Populated '" + db + "' from '" + usr + "': 4 copied, 1 linked, 0 created, 2 present already.\n");
    CHECK(slurp(w.mnt / db / "etc/passwd") == "root:x:0:0:root:/root:/bin/bash\n");
}

TEST_CASE("factory prepare refuses bad trees with one line and changes nothing") {
    test::require_root_and_btrfs();
    World w;
    const fs::path missing = w.work.path() / "missing";
    test::check_one_line_error(w.run({"factory", "prepare", missing.string()}), 3,
                               "prepare '" + missing.string() + "': no such directory");
    CHECK_FALSE(fs::exists(missing));

    const fs::path no_etc = w.work.path() / "no-etc";
    write(no_etc / "usr/lib/os-release", "NAME=x\n");
    {
        const Unchanged before(no_etc, w.work.path() / "no-etc.copy");
        test::check_one_line_error(w.run({"factory", "prepare", no_etc.string()}), 2,
                                   "prepare '" + no_etc.string() + "': no etc/ directory (not an OS tree)");
        CHECK(before.differences() == std::vector<std::string>{});
    }
    {
        const Unchanged before(w.tree, w.work.path() / "tree.copy");
        test::check_one_line_error(w.run({"factory", "prepare", w.tree.string(), "--exclude", "usr/lib"}), 2,
                                   "prepare '" + w.tree.string() + "': exclude pattern 'usr/lib': must start with etc/ or var/");
        CHECK(before.differences() == std::vector<std::string>{});
    }
    require_ok(w.run({"factory", "prepare", w.tree.string()}));
    {
        const Unchanged before(w.tree, w.work.path() / "prepared.copy");
        test::check_one_line_error(
            w.run({"factory", "prepare", w.tree.string()}), 2,
            "prepare '" + w.tree.string() + "': already prepared (usr/lib/tmpfiles.d/strata-factory.conf exists)");
        CHECK(before.differences() == std::vector<std::string>{});
    }
}

TEST_CASE("factory populate refuses unknown roots and usr trees without a factory") {
    test::require_root_and_btrfs();
    World w;
    // A usr tree that was never prepared.
    require_ok(w.run({"import", usr, "--from-dir", (w.tree / "usr").string()}));
    require_ok(w.run({"root", "create", "web", "--vendor", vendor, "--arch", "x86_64"}));
    const Unchanged before(w.mnt / root, w.work.path() / "root.copy");

    test::check_one_line_error(w.run({"factory", "populate", "root:nope:org.example.Demo:x86_64", "--usr", usr}), 3,
                               "populate 'root:nope:org.example.Demo:x86_64': no such root instance in the pool");
    test::check_one_line_error(w.run({"factory", "populate", usr, "--usr", usr}), 2,
                               "populate '" + usr + "': not a root instance name (root:<name>:<vendor-id>:<arch>)");
    test::check_one_line_error(w.run({"factory", "populate", root, "--usr", "usr:org.example.Demo:x86_64:9"}), 3,
                               "populate '" + root + "': no such usr tree in the pool: 'usr:org.example.Demo:x86_64:9'");
    test::check_one_line_error(w.run({"factory", "populate", root, "--usr", root}), 2,
                               "populate '" + root + "': '" + root + "' is not a usr tree");
    test::check_one_line_error(
        w.run({"factory", "populate", root, "--usr", usr}), 2,
        "populate '" + (w.mnt / root).string() + "': the usr tree '" + (w.mnt / usr).string() +
            "' has no factory rules (lib/tmpfiles.d/strata-factory.conf); make it with 'strata factory prepare'");
    CHECK(before.differences() == std::vector<std::string>{});
}

TEST_CASE("factory.exclude in the configuration adds to the defaults and to --exclude") {
    test::require_root_and_btrfs();
    test::TempDir work;
    const fs::path tree = work.path() / "tree";
    make_tree(tree);
    const fs::path config = work.path() / "strata.toml";
    std::ofstream(config) << "[factory]\nexclude = [\"var/lib/foo/**\"]\n";
    const auto r = test::run_strata({"--config", config.string(), "factory", "prepare", tree.string(), "--exclude",
                                     "etc/hostname", "--json"});
    require_ok(r);
    CHECK(nlohmann::json::parse(r.out)["excluded"] ==
          nlohmann::json::array({"/etc/hostname", "/etc/machine-id", "/var/lib/foo/state", "/var/log/x.log"}));
    CHECK(fs::is_directory(tree / "usr/share/factory/var/lib/foo"));
    CHECK(fs::exists(tree / "usr/share/factory/etc/passwd"));

    std::ofstream(config) << "[factory]\nexclude = [\"usr/lib\"]\n";
    const fs::path other = work.path() / "other";
    make_tree(other);
    test::check_one_line_error(
        test::run_strata({"--config", config.string(), "factory", "prepare", other.string()}), 2,
        "config '" + config.string() + "' line 2: 'factory.exclude' must hold paths below etc/ or var/, got 'usr/lib'");
    CHECK(fs::exists(other / "etc/passwd"));
}
