// The /etc merge through the binary: etc diff previews, deploy applies and reports conflicts,
// rollback --with-state brings the pre-merge /etc back, etc sync writes into a read-only state
// snapshot, and bad input changes nothing.
#include <sys/stat.h>

#include <fstream>

#include "btrfs/subvolume.hpp"
#include "e2e/e2e.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string vendor = "org.example.Demo";
const std::string root = "root:web:org.example.Demo:x86_64";
std::string usr(const std::string& version) {
    return "usr:" + vendor + ":x86_64:" + version;
}
std::string entry_id(const std::string& version) {
    return vendor + "+web+" + version + "+x86_64";
}

void require_ok(const ProcessResult& r) {
    REQUIRE_MESSAGE(r.exit_status == 0, r.err);
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void put(const fs::path& p, const std::string& content, mode_t mode = 0644) {
    fs::create_directories(p.parent_path());
    fs::remove(p);
    std::ofstream(p, std::ios::binary) << content;
    REQUIRE(::chmod(p.c_str(), mode) == 0);
}

using Files = std::map<std::string, std::string>;

struct World {
    test::ScratchPool scratch;
    test::TempDir work;
    fs::path mnt = scratch.mountpoint();
    fs::path boot = work.path() / "boot";
    fs::path config = work.path() / "strata.toml";
    fs::path etc = mnt / root / "etc";

    World() {
        fs::create_directories(boot);
        std::ofstream(config) << "[boot]\ntries = 3\n";
        require_ok(run({"root", "create", "web", "--vendor", vendor, "--arch", "x86_64"}));
    }
    ProcessResult run(std::vector<std::string> args, const std::string& env = "") const {
        args.insert(args.begin(),
                    {"--pool", mnt.string(), "--config", config.string(), "--boot-dir", boot.string()});
        if (env.empty()) return test::run_strata(args);
        std::string line = env + " '" + test::strata_binary() + "'";
        for (const auto& a : args) line += " '" + a + "'";
        return run_process({"sh", "-c", line});
    }
    // A usr tree with a kernel and these files in share/factory/etc (none: no factory at all).
    void import_usr(const std::string& version, const std::optional<Files>& factory) const {
        const auto tree = work.path() / ("usr-" + version);
        fs::create_directories(tree / "lib/modules/6.1.0-test");
        std::ofstream(tree / "lib/os-release") << "NAME=Demo\nPRETTY_NAME=\"Demo OS " << version << "\"\n";
        std::ofstream(tree / "lib/modules/6.1.0-test/vmlinuz") << "kernel " << version << "\n";
        std::ofstream(tree / "lib/modules/6.1.0-test/initrd.img") << "initrd " << version << "\n";
        if (factory)
            for (const auto& [path, content] : *factory)
                put(tree / "share/factory/etc" / path, content, path == "shadow" ? 0640 : 0644);
        require_ok(test::strata_on(mnt, {"import", usr(version), "--from-dir", tree.string()}));
    }
    // What tmpfiles does on the first boot: the factory /etc copied in, with modes and owners.
    void populate(const std::string& version) const {
        require_ok(run_process(
            {"cp", "-a", (mnt / usr(version) / "share/factory/etc").string() + "/.", etc.string()}));
    }
    nlohmann::json status() const {
        auto r = run({"status", "--json"});
        REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        return nlohmann::json::parse(r.out);
    }
    // Every file below dir with its content, for "nothing changed" checks.
    static Files snapshot(const fs::path& dir) {
        Files out;
        for (const auto& e : fs::recursive_directory_iterator(dir))
            if (e.is_regular_file()) {
                struct stat st {};
                REQUIRE(::lstat(e.path().c_str(), &st) == 0);
                out[fs::relative(e.path(), dir).string()] =
                    slurp(e.path()) + " mode " + std::to_string(st.st_mode & 07777) + " owner " +
                    std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid);
            }
        return out;
    }
};

const Files v1 = {{"os.conf", "version 1\n"},    {"admin.conf", "vendor default\n"},
                  {"both.conf", "base\n"},       {"gone.conf", "old\n"},
                  {"shadow", "root:*:19000:\n"}, {"ssh/sshd_config", "Port 22\n"}};
const Files v2 = {{"os.conf", "version 2\n"},    {"admin.conf", "vendor default\n"},
                  {"both.conf", "vendor 2\n"},   {"new.conf", "new in 2\n"},
                  {"shadow", "root:*:19000:\n"}, {"ssh/sshd_config", "Port 22\n"}};

std::map<std::string, std::string> verdicts(const nlohmann::json& report) {
    std::map<std::string, std::string> out;
    for (const auto& c : report["changes"])
        out[c["path"]] = std::string(c["verdict"]) + "/" + std::string(c["action"]);
    return out;
}

// v1 deployed, /etc populated and changed by the admin, v2 imported.
void set_up(World& w) {
    w.import_usr("1.0", v1);
    auto r = w.run({"deploy", root, "--json"});
    require_ok(r);
    CHECK(nlohmann::json::parse(r.out)["etc"].is_null());  // the first deploy moves from nothing
    w.populate("1.0");
    put(w.etc / "admin.conf", "admin's choice\n");
    put(w.etc / "both.conf", "admin's\n");
    put(w.etc / "shadow", "root:$6$rotated:19500:\n", 0640);
    w.import_usr("2.0", v2);
}

}  // namespace

TEST_CASE("etc diff previews the merge and deploy applies it with conflicts beside the admin's files") {
    test::require_root_and_btrfs();
    World w;
    set_up(w);
    const auto before = World::snapshot(w.etc);

    auto r = w.run({"etc", "diff", root, "--json"});
    require_ok(r);
    auto diff = nlohmann::json::parse(r.out);
    CHECK(diff["from"] == usr("1.0"));
    CHECK(diff["to"] == usr("2.0"));
    CHECK(diff["skipped"].is_null());
    const std::map<std::string, std::string> expected = {{"/etc/os.conf", "vendor-changed/update"},
                                                         {"/etc/admin.conf", "admin-changed/keep"},
                                                         {"/etc/both.conf", "conflict/write-new"},
                                                         {"/etc/gone.conf", "removed/remove"},
                                                         {"/etc/new.conf", "added/add"},
                                                         {"/etc/shadow", "admin-changed/keep"}};
    CHECK(verdicts(diff) == expected);
    CHECK(diff["counts"]["conflict"] == 1);
    CHECK(diff["conflicts"] == nlohmann::json::array({"/etc/both.conf"}));
    r = w.run({"etc", "diff", root, "--to", "2.0", "--json", "--all"});
    require_ok(r);
    auto all = verdicts(nlohmann::json::parse(r.out));
    CHECK(all.size() == expected.size() + 2);
    CHECK(all["/etc/ssh"] == "unchanged/none");
    CHECK(all["/etc/ssh/sshd_config"] == "unchanged/none");
    r = w.run({"etc", "diff", root});
    require_ok(r);
    CHECK(r.out.find("VERDICT") == 0);
    CHECK_MESSAGE(r.out.find("conflict       write-new /etc/both.conf\n") != std::string::npos, r.out);
    // Toward the version it runs: only the admin's own changes.
    r = w.run({"etc", "diff", root, "--to", "1.0", "--json"});
    require_ok(r);
    CHECK(verdicts(nlohmann::json::parse(r.out)) ==
          std::map<std::string, std::string>{{"/etc/admin.conf", "admin-changed/keep"},
                                             {"/etc/both.conf", "admin-changed/keep"},
                                             {"/etc/shadow", "admin-changed/keep"}});
    CHECK(World::snapshot(w.etc) == before);  // a preview changes nothing

    r = w.run({"deploy", root, "--json"});
    require_ok(r);
    const auto d = nlohmann::json::parse(r.out);
    CHECK(d["usr"] == usr("2.0"));
    CHECK(d["etc"]["from"] == usr("1.0"));
    CHECK(d["etc"]["counts"]["vendor-changed"] == 1);
    CHECK(d["etc"]["counts"]["added"] == 1);
    CHECK(d["etc"]["counts"]["removed"] == 1);
    CHECK(d["etc"]["conflicts"] == nlohmann::json::array({"/etc/both.conf"}));
    CHECK(slurp(w.etc / "os.conf") == "version 2\n");
    CHECK(slurp(w.etc / "new.conf") == "new in 2\n");
    CHECK_FALSE(fs::exists(w.etc / "gone.conf"));
    CHECK(slurp(w.etc / "admin.conf") == "admin's choice\n");
    CHECK(slurp(w.etc / "both.conf") == "admin's\n");
    CHECK(slurp(w.etc / "both.conf.strata-new") == "vendor 2\n");
    CHECK(slurp(w.etc / "shadow") == "root:$6$rotated:19500:\n");

    // rollback --with-state: 1.0 with the /etc it had before the merge; and back again.
    require_ok(w.run({"rollback", root, "--with-state"}));
    CHECK(World::snapshot(w.etc) == before);
    require_ok(w.run({"rollback", root, "--with-state"}));
    CHECK(slurp(w.etc / "both.conf.strata-new") == "vendor 2\n");
    CHECK(slurp(w.etc / "os.conf") == "version 2\n");

    // The text output lists the conflict; a second deploy to 1.0 and back shows it again.
    require_ok(w.run({"rollback", root, "--with-state"}));
    r = w.run({"deploy", root});
    require_ok(r);
    CHECK_MESSAGE(r.out.find("Merged /etc from '" + usr("1.0") +
                             "': 1 vendor-changed, 1 added, 1 removed, 2 admin-changed, 1 conflicts.\n") !=
                      std::string::npos,
                  r.out);
    CHECK_MESSAGE(r.out.find("Conflict: '/etc/both.conf' kept as you changed it; the vendor's version is "
                             "'/etc/both.conf.strata-new'.\n") != std::string::npos,
                  r.out);
    CHECK(slurp(w.etc / "os.conf") == "version 2\n");
}

TEST_CASE("etc sync copies a rotated password into the read-only state of the old deployment") {
    test::require_root_and_btrfs();
    World w;
    set_up(w);
    require_ok(w.run({"deploy", root}));
    put(w.etc / "shadow", "root:$6$new:19600:\n", 0640);
    const auto st = w.status();
    REQUIRE(st["deployments"].size() == 2);
    const std::string kept = st["deployments"][0]["state_snapshot"];
    const fs::path kept_etc = w.mnt / kept / "etc";
    const auto kept_before = World::snapshot(kept_etc);
    const auto live_before = World::snapshot(w.etc);
    const auto kept_id = btrfs::subvolume_id(Dir::open(w.mnt / kept));

    // Bad input: one line, the right exit code, nothing changed.
    const std::string ctx = "etc sync '" + entry_id("2.0") + "' to '" + entry_id("1.0") + "': ";
    test::check_one_line_error(
        w.run({"etc", "sync", "--from", entry_id("2.0"), "--to", entry_id("1.0"), "/var/lib/x"}), 2,
        ctx + "path '/var/lib/x' is not under /etc");
    test::check_one_line_error(w.run({"etc", "sync", "--from", entry_id("2.0"), "--to", entry_id("1.0"),
                                      "/etc/shadow", "/etc/../root/.ssh"}),
                               2, ctx + "path '/etc/../root/.ssh' is not under /etc ('..' is not allowed)");
    test::check_one_line_error(w.run({"etc", "sync", "--from", entry_id("2.0"), "--to", entry_id("1.0"),
                                      "/etc/shadow", "/etc/nope"}),
                               3, ctx + "'/etc/nope' does not exist in the source");
    test::check_one_line_error(
        w.run({"etc", "sync", "--from", "nope", "--to", entry_id("1.0"), "/etc/shadow"}), 3,
        "etc sync 'nope' to '" + entry_id("1.0") + "': no such deployment 'nope' (see 'strata status')");
    CHECK(btrfs::subvolume_id(Dir::open(w.mnt / kept)) == kept_id);
    CHECK(World::snapshot(kept_etc) == kept_before);
    CHECK(World::snapshot(w.etc) == live_before);

    auto r = w.run({"etc", "sync", "--from", entry_id("2.0"), "--to", entry_id("1.0"), "/etc/shadow"});
    require_ok(r);
    CHECK(r.out == "Copied '/etc/shadow' from '" + entry_id("2.0") + "' into '" + kept + "'.\n");
    CHECK(slurp(kept_etc / "shadow") == "root:$6$new:19600:\n");
    struct stat sb {};
    REQUIRE(::stat((kept_etc / "shadow").c_str(), &sb) == 0);
    CHECK((sb.st_mode & 07777) == 0640);
    CHECK(btrfs::read_only(Dir::open(w.mnt / kept)));
    CHECK(slurp(kept_etc / "os.conf") == "version 1\n");  // the rest of the old state as it was
    CHECK(w.status()["deployments"][0]["state_snapshot"] == kept);
    std::vector<std::string> states;
    for (const auto& e : fs::directory_iterator(w.mnt / ".strata/state"))
        states.push_back(e.path().filename());
    CHECK(states == std::vector<std::string>{fs::path(kept).filename()});

    // Booting 1.0 with its state now has the new password.
    require_ok(w.run({"rollback", root, "--with-state"}));
    CHECK(slurp(w.etc / "shadow") == "root:$6$new:19600:\n");
    CHECK(slurp(w.etc / "os.conf") == "version 1\n");
}

TEST_CASE("etc diff refuses unknown roots and versions and skips a usr without factory etc") {
    test::require_root_and_btrfs();
    World w;
    test::check_one_line_error(
        w.run({"etc", "diff", "root:nope:org.example.Demo:x86_64"}), 3,
        "etc diff 'root:nope:org.example.Demo:x86_64': no such root instance in the pool");
    test::check_one_line_error(
        w.run({"etc", "diff", root}), 3,
        "etc diff '" + root +
            "': not deployed yet, so there is no current usr to compare with (see 'strata deploy')");
    set_up(w);
    const auto before = World::snapshot(w.etc);
    test::check_one_line_error(w.run({"etc", "diff", root, "--to", "9"}), 3,
                               "etc diff '" + root + "': no usr:org.example.Demo:x86_64:9 in the pool");
    w.import_usr("3.0", std::nullopt);
    auto r = w.run({"etc", "diff", root, "--json"});
    require_ok(r);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["to"] == usr("3.0"));
    CHECK(j["skipped"] == "'" + usr("3.0") + "' has no share/factory/etc");
    CHECK(j["changes"].empty());
    // deploy skips the merge without an error.
    r = w.run({"deploy", root, "--json"});
    require_ok(r);
    CHECK(nlohmann::json::parse(r.out)["etc"]["skipped"] == "'" + usr("3.0") + "' has no share/factory/etc");
    CHECK(World::snapshot(w.etc) == before);
}

TEST_CASE("a deploy killed right after the etc merge leaves the old default and the next run completes") {
    test::require_root_and_btrfs();
    World w;
    set_up(w);
    auto r = w.run({"deploy", root}, "STRATA_TEST_CRASH_AT=deploy:etc-merge");
    CHECK(r.exit_status != 0);
    auto st = w.status();
    REQUIRE(st["deployments"].size() == 1);
    CHECK(st["deployments"][0]["version"] == "1.0");
    CHECK(st["deployments"][0]["default"] == true);
    CHECK(slurp(w.etc / "os.conf") == "version 2\n");  // merged in place, one file at a time
    r = w.run({"deploy", root, "--json"});
    require_ok(r);
    const auto d = nlohmann::json::parse(r.out);
    CHECK(d["default"] == true);
    CHECK(d["etc"]["conflicts"] == nlohmann::json::array({"/etc/both.conf"}));
    CHECK(slurp(w.etc / "both.conf.strata-new") == "vendor 2\n");
    CHECK(slurp(w.etc / "admin.conf") == "admin's choice\n");
    // The leftover snapshot of the first try is unlinked: gc removes it.
    require_ok(w.run({"gc"}));
    st = w.status();
    REQUIRE(st["deployments"].size() == 2);
    std::vector<std::string> states;
    for (const auto& e : fs::directory_iterator(w.mnt / ".strata/state"))
        states.push_back(e.path().filename());
    CHECK(states ==
          std::vector<std::string>{fs::path(std::string(st["deployments"][0]["state_snapshot"])).filename()});
}

TEST_CASE("a deploy whose etc merge fails keeps the old default and leaves etc unchanged") {
    test::require_root_and_btrfs();
    World w;
    w.import_usr("1.0", v1);
    require_ok(w.run({"deploy", root}));
    w.populate("1.0");
    put(w.etc / "both.conf", "admin's\n");
    Files with_new = v2;
    with_new["ssh/new_config"] = "new\n";
    w.import_usr("2.0", with_new);
    const auto before = World::snapshot(w.etc);
    const auto entries_before = w.status()["deployments"];
    // An immutable directory: the vendor's new file cannot be staged in it.
    REQUIRE(run_process({"chattr", "+i", (w.etc / "ssh").string()}).exit_status == 0);
    auto r = w.run({"deploy", root});
    REQUIRE(run_process({"chattr", "-i", (w.etc / "ssh").string()}).exit_status == 0);
    CHECK(r.exit_status == 1);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_MESSAGE(r.err.find("deploy '" + root + "': merge /etc for '" + usr("2.0") + "': ") == 8, r.err);
    CHECK_MESSAGE(r.err.find("Operation not permitted") != std::string::npos, r.err);
    CHECK(World::snapshot(w.etc) == before);
    CHECK(w.status()["deployments"] == entries_before);  // no new entry, 1.0 still the default
}
