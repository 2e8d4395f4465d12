// strata publish driven like a vendor would: keys from minisign itself, --json and text reports,
// and bad input answered with one line and the right exit code, the repository untouched.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "e2e/e2e.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string v1 = "usr:org.example.Pub:x86_64:1";
const std::string v2 = "usr:org.example.Pub:x86_64:2";

void require_ok(const ProcessResult& r) { REQUIRE_MESSAGE(r.exit_status == 0, r.err); }

std::string read_text(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::map<std::string, std::string> repo_state(const fs::path& repo) {
    std::map<std::string, std::string> state;
    for (const auto& e : fs::recursive_directory_iterator(repo))
        state[fs::relative(e.path(), repo).string()] = e.is_regular_file() ? read_text(e.path()) : "<dir>";
    return state;
}

struct Publisher {
    test::ScratchPool scratch;
    test::TempDir work;
    fs::path mnt = scratch.mountpoint();
    fs::path repo = work.path() / "repo";
    fs::path key = work.path() / "a.key", pub = work.path() / "a.pub";

    Publisher() {
        const auto tree = work.path() / "tree";
        fs::create_directories(tree / "usr/lib");
        std::ofstream(tree / "usr/lib/os-release") << "ID=pub\nVERSION_ID=1\n";
        require_ok(test::strata_on(mnt, {"import", v1, "--from-dir", tree.string()}));
        std::ofstream(tree / "usr/lib/os-release") << "ID=pub\nVERSION_ID=2\n";
        require_ok(test::strata_on(mnt, {"import", v2, "--from-dir", tree.string()}));
        require_ok(run_process({"minisign", "-G", "-W", "-p", pub.string(), "-s", key.string()}));
    }

    ProcessResult publish(std::vector<std::string> args) {
        args.insert(args.begin(), {"publish", repo.string()});
        return test::strata_on(mnt, args);
    }
};

}  // namespace

TEST_CASE("strata publish writes a repository minisign verifies and reports it as text and json") {
    test::require_root_and_btrfs();
    Publisher t;
    auto r = t.publish({v1, "--key", t.key.string(), "--json"});
    require_ok(r);
    auto j = nlohmann::json::parse(r.out);
    CHECK(j["name"] == v1);
    CHECK(j["serial"] == 1);
    CHECK(j["written"] == nlohmann::json{"payloads/usr_org.example.Pub_x86_64_1.full.zst"});
    CHECK(j["reused"].empty());
    CHECK(j["pruned"].empty());
    CHECK(j["tree"]["payloads"][0]["parent"].is_null());
    CHECK(j["tree"]["payloads"][0]["sha256"].get<std::string>().size() == 64);

    r = t.publish({v2, "--deltas-from", "1", "--changelog", "os-release bumped", "--key", t.key.string()});
    require_ok(r);
    CHECK(r.out.starts_with("Published '" + v2 + "' to '" + t.repo.string() + "' (serial 2).\n"));
    CHECK(r.out.find("  wrote  payloads/usr_org.example.Pub_x86_64_2.from-1.zst (") != std::string::npos);
    CHECK(r.out.find(", from '" + v1 + "')") != std::string::npos);
    CHECK(r.err.empty());

    require_ok(run_process({"minisign", "-V", "-p", t.pub.string(), "-m", (t.repo / "index.json").string()}));
    const auto index = nlohmann::json::parse(read_text(t.repo / "index.json"));
    CHECK(index["serial"] == 2);
    CHECK(index["trees"][1]["changelog"] == "os-release bumped");
    CHECK(index["trees"][1]["payloads"][1]["parent"]["name"] == v1);

    // Again: nothing written, the payloads reused.
    r = t.publish({v2, "--deltas-from", "1", "--key", t.key.string(), "--json"});
    require_ok(r);
    j = nlohmann::json::parse(r.out);
    CHECK(j["serial"] == 3);
    CHECK(j["written"].empty());
    CHECK(j["reused"].size() == 3);  // full, delta stream, strata delta

    r = t.publish({v2, "--keep", "1", "--key", t.key.string(), "-q"});
    require_ok(r);
    CHECK(r.out.empty());
    CHECK(!fs::exists(t.repo / "payloads/usr_org.example.Pub_x86_64_1.full.zst"));
}

TEST_CASE("strata publish refuses bad input with one line and leaves the repository alone") {
    test::require_root_and_btrfs();
    Publisher t;
    require_ok(t.publish({v1, "--key", t.key.string()}));
    const auto state = repo_state(t.repo);

    test::check_one_line_error(t.publish({"usr:org.example.Pub:x86_64:9", "--key", t.key.string()}), 3,
                               "publish 'usr:org.example.Pub:x86_64:9': find 'usr:org.example.Pub:x86_64:9': no such "
                               "subvolume in the pool");
    test::check_one_line_error(t.publish({v1, "--parent", v2, "--key", t.key.string()}), 2,
                               "publish '" + v1 + "': '" + v2 + "' is not an ancestor of '" + v1 +
                                   "' in this pool (it was not built on it), so a delta from it would not apply; "
                                   "publish without it");
    require_ok(run_process({"minisign", "-G", "-W", "-p", (t.work.path() / "b.pub").string(), "-s",
                            (t.work.path() / "b.key").string()}));
    auto r = t.publish({v2, "--key", (t.work.path() / "b.key").string()});
    CHECK(r.exit_status == 2);
    CHECK(r.err.starts_with("strata: publish '" + v2 + "': verify index '" + (t.repo / "index.json").string() + "': "));
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    // A public key where the secret key belongs.
    r = t.publish({v2, "--key", t.pub.string()});
    CHECK(r.exit_status == 2);
    CHECK(r.err.starts_with("strata: read key '" + t.pub.string() + "': "));
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(t.publish({v2, "--key", t.key.string(), "--keep", "0"}).exit_status == 2);
    CHECK(t.publish({v2, "--key", t.key.string(), "--parent", v1, "--deltas-from", "1"}).exit_status == 2);
    CHECK(t.publish({v2}).exit_status == 2);  // --key is required
    for (const char* level : {"0", "20", "fast"}) {
        r = t.publish({v2, "--key", t.key.string(), "--parent", v1, "--delta-level", level});
        CHECK(r.exit_status == 2);
        CHECK(r.err.find("--delta-level") != std::string::npos);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
    CHECK(repo_state(t.repo) == state);
}
