// Updates end to end: a publisher pool publishes signed repositories served by a real nginx on
// loopback; a client pool updates from it with `strata update` like an admin would.
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

#include "e2e/e2e.hpp"
#include "support/http_server.hpp"
#include "support/tree.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string vendor = "org.example.Demo";
const std::string root = "root:web:org.example.Demo:x86_64";
std::string usr(const std::string& v) { return "usr:" + vendor + ":x86_64:" + v; }

void require_ok(const ProcessResult& r) { REQUIRE_MESSAGE(r.exit_status == 0, r.err); }

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void put(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
}

std::string random_bytes(size_t n, unsigned seed) {
    std::mt19937 gen(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(gen());
    return s;
}

struct World {
    test::TempDir work;
    test::ScratchPool vendor_pool;
    test::ScratchPool client_pool;
    test::HttpServer server;
    fs::path repo = server.www() / "repo";
    fs::path key = work.path() / "vendor";  // vendor.pub, vendor.key
    fs::path boot = work.path() / "boot";
    fs::path config = work.path() / "strata.toml";
    bool same_kernel = false;  // every release with the same (large) kernel and initrd

    explicit World(const std::string& remote_path = "/repo") {
        fs::create_directories(boot);
        std::ofstream(config) << "[boot]\ntries = 3\n";
        require_ok(test::run_strata({"keygen", "-o", key.string()}));
        require_ok(client({"root", "create", "web", "--vendor", vendor, "--arch", "x86_64"}));
        require_ok(client({"remote", "add", "vendor", server.url() + remote_path, "--key", key.string() + ".pub"}));
    }
    // Version v of the OS: a kernel, os-release, and `payload` bytes of data that change per version.
    void release(const std::string& v, size_t payload = 64 << 10, const std::string& arch = "x86_64",
                 const std::function<void(const fs::path&)>& more = {}) const {
        const auto tree = work.path() / ("tree-" + arch + "-" + v);
        if (more) more(tree);
        put(tree / "lib/modules/6.1.0/vmlinuz", same_kernel ? random_bytes(300000, 3) : "kernel " + v + "\n");
        put(tree / "lib/modules/6.1.0/initrd.img", same_kernel ? random_bytes(700000, 4) : "initrd " + v + "\n");
        put(tree / "lib/os-release", "NAME=Demo\nVERSION_ID=" + v + "\n");
        put(tree / "share/data/common", random_bytes(payload, 1));
        put(tree / ("share/data/v" + v), random_bytes(payload / 4, static_cast<unsigned>(std::stoul(v)) + 7));
        require_ok(test::strata_on(vendor_pool.mountpoint(),
                                   {"import", "usr:" + vendor + ":" + arch + ":" + v, "--from-dir", tree.string()}));
    }
    ProcessResult publish(const std::string& name, std::vector<std::string> extra = {}) const {
        std::vector<std::string> args{"publish", repo.string(), name, "--key", key.string() + ".key"};
        args.insert(args.end(), extra.begin(), extra.end());
        return test::strata_on(vendor_pool.mountpoint(), args);
    }
    ProcessResult client(std::vector<std::string> args) const {
        args.insert(args.begin(), {"--pool", client_pool.mountpoint().string(), "--config", config.string(),
                                   "--boot-dir", boot.string()});
        return test::run_strata(args);
    }
    nlohmann::json update(std::vector<std::string> extra = {}) const {
        std::vector<std::string> args{"update", "--json"};
        args.insert(args.end(), extra.begin(), extra.end());
        auto r = client(args);
        REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        // Progress comes as JSON lines on stderr, each with a phase and a byte count.
        std::istringstream progress(r.err);
        for (std::string line; std::getline(progress, line);) {
            const auto p = nlohmann::json::parse(line);
            CHECK(p["phase"].is_string());
            CHECK(p["bytes"].is_number());
        }
        return nlohmann::json::parse(r.out);
    }
    nlohmann::json index() const { return nlohmann::json::parse(slurp(repo / "index.json")); }
    // The payload of tree `name` whose parent is `parent` ("" for the full one), as indexed.
    nlohmann::json payload(const std::string& name, const std::string& parent, const std::string& kind = "btrfs-send") const {
        const auto idx = index();
        for (const auto& t : idx["trees"])
            if (t["name"] == name)
                for (const auto& p : t["payloads"])
                    if (p["kind"] == kind &&
                        ((parent.empty() && p["parent"].is_null()) || (!p["parent"].is_null() && p["parent"]["name"] == parent)))
                        return p;
        FAIL("no such payload");
        return {};
    }
    uint64_t bytes_served(const std::string& file) const {
        uint64_t total = 0;
        for (const auto& r : server.requests())
            if (r.uri.ends_with(file)) total += r.body_bytes;
        return total;
    }
    std::vector<std::string> same_tree(const std::string& name) const {
        return test::compare_trees(vendor_pool.mountpoint() / name, client_pool.mountpoint() / name);
    }
};

}  // namespace

TEST_CASE("a fresh client gets v1 in full and later v3 as a delta from the version it has") {
    test::require_root_and_btrfs();
    World w;
    w.release("1");
    require_ok(w.publish(usr("1")));
    auto j = w.update();
    CHECK(j["target"] == usr("1"));
    CHECK(j["kind"] == "full");
    CHECK(j["deployment"]["usr"] == usr("1"));
    CHECK(w.same_tree(usr("1")).empty());

    w.release("2");
    w.release("3");
    require_ok(w.publish(usr("2"), {"--deltas-from", "1"}));
    require_ok(w.publish(usr("3"), {"--deltas-from", "2"}));
    const auto delta = w.payload(usr("3"), usr("1"));
    auto r = w.client({"update", "--check", "--json"});
    CHECK(r.exit_status == 100);
    j = nlohmann::json::parse(r.out);
    CHECK(j["target"] == usr("3"));
    CHECK(j["kind"] == "incremental");
    CHECK(j["parent"] == usr("1"));
    CHECK(j["download_bytes"] == delta["compressed_size"]);

    j = w.update();
    CHECK(j["deployment"]["usr"] == usr("3"));
    CHECK(w.bytes_served(delta["file"].get<std::string>()) == delta["compressed_size"].get<uint64_t>());
    CHECK(w.same_tree(usr("3")).empty());
    r = w.client({"update", "--check"});
    CHECK(r.exit_status == 0);
    CHECK(r.out.find("Up to date: '" + root + "' runs '" + usr("3") + "'") != std::string::npos);
    CHECK(fs::is_empty(w.client_pool.mountpoint() / ".strata/downloads"));  // neither the .part nor a .stream is left
}

TEST_CASE("a strata delta is used when it is the smallest payload, and the plain stream when it does not apply") {
    test::require_root_and_btrfs();
    World w;
    // A relinked library: every address moved, so a plain delta ships it whole.
    // And a data file that only grows a line: all but its last block come from the parent.
    const auto library = [](uint32_t shift) {
        return [shift](const fs::path& tree) {
            put(tree / "lib/libbig.so.1", test::code_like(60000, shift));
            put(tree / "share/data.bin", random_bytes(300000, 5) + "release " + std::to_string(shift) + "\n");
        };
    };
    w.release("1", 64 << 10, "x86_64", library(0));
    require_ok(w.publish(usr("1")));
    CHECK(w.update()["kind"] == "full");
    w.release("2", 64 << 10, "x86_64", library(100));
    w.release("3", 64 << 10, "x86_64", library(300));
    require_ok(w.publish(usr("2"), {"--deltas-from", "1"}));
    require_ok(w.publish(usr("3"), {"--parent", usr("1")}));
    const auto plain = w.payload(usr("2"), usr("1")), sdelta = w.payload(usr("2"), usr("1"), "strata-delta");
    CHECK(sdelta["compressed_size"].get<uint64_t>() * 2 < plain["compressed_size"].get<uint64_t>());

    // To v2 by the strata delta: only it is downloaded, the tree is the published one.
    auto r = w.client({"update", "--check", "--json"});
    CHECK(r.exit_status == 100);
    auto j = nlohmann::json::parse(r.out);
    CHECK(j["target"] == usr("3"));
    // v3 is newest; the client has v1, so the choice is among v3's payloads from v1.
    const auto plain3 = w.payload(usr("3"), usr("1")), sdelta3 = w.payload(usr("3"), usr("1"), "strata-delta");
    CHECK(j["kind"] == "delta");
    CHECK(j["payload_kind"] == "strata-delta");
    CHECK(j["parent"] == usr("1"));
    CHECK(j["download_bytes"] == sdelta3["compressed_size"]);
    r = w.client({"update", "--check"});
    CHECK(r.out.find("Update available: '" + usr("3") + "' for '" + root + "': delta payload from '" + usr("1") + "'") !=
          std::string::npos);

    SUBCASE("applied") {
        j = w.update();
        CHECK(j["kind"] == "delta");
        CHECK(j["fallback"].is_null());
        CHECK(j["deployment"]["usr"] == usr("3"));
        CHECK(w.bytes_served(sdelta3["file"].get<std::string>()) == sdelta3["compressed_size"].get<uint64_t>());
        CHECK(w.bytes_served(plain3["file"].get<std::string>()) == 0);
        CHECK(w.same_tree(usr("3")).empty());
        // The unchanged blocks were cloned from the parent, not written again.
        const auto data = [&](const std::string& v) { return w.client_pool.mountpoint() / usr(v) / "share/data.bin"; };
        CHECK(test::physical_at(data("3"), 4096) == test::physical_at(data("1"), 4096));
        CHECK(test::physical_at(data("3"), 290000) == test::physical_at(data("1"), 290000));
        CHECK(test::physical_at(data("3"), 299999) != test::physical_at(data("1"), 299999));  // the block with the new line
        const auto inspect = nlohmann::json::parse(w.client({"inspect", usr("3"), "--json"}).out);
        CHECK(inspect["read_only"] == true);
    }
    SUBCASE("a delta that does not rebuild the signed stream falls back to the plain incremental one") {
        // The publisher signs an index whose strata delta claims another stream digest.
        auto idx = w.index();
        for (auto& t : idx["trees"])
            for (auto& p : t["payloads"])
                if (p["kind"] == "strata-delta") p["stream_sha256"] = std::string(64, 'a');
        put(w.repo / "index.json", idx.dump(2) + "\n");
        require_ok(run_process({"minisign", "-S", "-s", w.key.string() + ".key", "-m", (w.repo / "index.json").string(), "-t",
                                "strata-index serial=" + std::to_string(idx["serial"].get<uint64_t>())}));
        j = w.update();
        CHECK(j["kind"] == "incremental");
        CHECK(j["payload_kind"] == "btrfs-send");
        REQUIRE(j["fallback"].is_string());
        CHECK(j["fallback"].get<std::string>().find("the rebuilt stream's sha256") != std::string::npos);
        CHECK(j["deployment"]["usr"] == usr("3"));
        CHECK(w.bytes_served(sdelta3["file"].get<std::string>()) == sdelta3["compressed_size"].get<uint64_t>());
        CHECK(w.bytes_served(plain3["file"].get<std::string>()) == plain3["compressed_size"].get<uint64_t>());
        CHECK(w.same_tree(usr("3")).empty());
        // Nothing of the failed attempt is left: no download, no staging.
        CHECK(fs::is_empty(w.client_pool.mountpoint() / ".strata/downloads"));
    }
    SUBCASE("a parent that was made writable is no parent any more: the full stream is used") {
        require_ok(run_process({"btrfs", "property", "set", "-f", (w.client_pool.mountpoint() / usr("1")).string(), "ro", "false"}));
        r = w.client({"update", "--check", "--json"});
        j = nlohmann::json::parse(r.out);
        CHECK(j["kind"] == "full");
        CHECK(j["parent"].is_null());
    }
}

TEST_CASE("a delta whose clones the kernel refuses is applied again without them, not downloaded again") {
    test::require_root_and_btrfs();
    World w;
    const auto data = [](const std::string& v) {
        return [v](const fs::path& tree) { put(tree / "share/data.bin", random_bytes(300000, 5) + "release " + v + "\n"); };
    };
    w.release("1", 64 << 10, "x86_64", data("1"));
    require_ok(w.publish(usr("1")));
    CHECK(w.update()["kind"] == "full");
    // The parent's files have data checksums; what receive creates from now on has none, and the
    // kernel does not clone between the two.
    REQUIRE(run_process({"mount", "-o", "remount,nodatasum", w.client_pool.mountpoint().string()}).exit_status == 0);
    w.release("2", 64 << 10, "x86_64", data("2"));
    require_ok(w.publish(usr("2"), {"--deltas-from", "1"}));
    const auto sdelta = w.payload(usr("2"), usr("1"), "strata-delta"), plain = w.payload(usr("2"), usr("1"));
    const auto j = w.update();
    CHECK(j["kind"] == "delta");
    CHECK(j["fallback"].is_null());
    CHECK(j["deployment"]["usr"] == usr("2"));
    CHECK(w.bytes_served(sdelta["file"].get<std::string>()) == sdelta["compressed_size"].get<uint64_t>());
    CHECK(w.bytes_served(plain["file"].get<std::string>()) == 0);
    CHECK(w.same_tree(usr("2")).empty());
}

TEST_CASE("a kernel an update keeps is copied to $BOOT while the new version is received") {
    test::require_root_and_btrfs();
    World w;
    w.same_kernel = true;
    w.release("1");
    require_ok(w.publish(usr("1")));
    w.update();
    w.release("2");
    require_ok(w.publish(usr("2"), {"--deltas-from", "1"}));
    const auto r = w.client({"-v", "update"});
    require_ok(r);
    CHECK_MESSAGE(r.err.find("copied to $BOOT while it was received") != std::string::npos, r.err);
    const auto dir = w.boot / vendor / "2";
    CHECK(slurp(dir / "linux") == slurp(w.client_pool.mountpoint() / usr("2") / "lib/modules/6.1.0/vmlinuz"));
    CHECK(slurp(dir / "initrd") == slurp(w.client_pool.mountpoint() / usr("2") / "lib/modules/6.1.0/initrd.img"));
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"initrd", "linux"});  // no copy left under a hidden name
    CHECK(test::listed_names(w.client_pool.mountpoint()).size() == 3);  // root, usr 1 and 2
}

TEST_CASE("tampered payloads and indexes are refused before anything is applied") {
    test::require_root_and_btrfs();
    World w;
    w.release("1");
    require_ok(w.publish(usr("1")));
    const auto before = test::listed_names(w.client_pool.mountpoint());

    SUBCASE("a flipped byte in the stream") {
        const auto file = w.repo / w.payload(usr("1"), "")["file"].get<std::string>();
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(100);
        f.put('\x42');
        f.close();
        auto r = w.client({"update"});
        CHECK(r.exit_status == 2);
        CHECK(r.err.find("is not the signed") != std::string::npos);
        CHECK(r.err.find("nothing was applied") != std::string::npos);
    }
    SUBCASE("a changed index") {
        auto text = slurp(w.repo / "index.json");
        text.replace(text.find("\"serial\""), 8, "\"serial\" ");
        std::ofstream(w.repo / "index.json", std::ios::trunc) << text;
        auto r = w.client({"update"});
        CHECK(r.exit_status == 2);
        CHECK(r.err.starts_with("strata: update '" + root + "': update from 'vendor': "));
    }
    SUBCASE("an index signed by an unknown key") {
        const auto other = w.work.path() / "other";
        require_ok(test::run_strata({"keygen", "-o", other.string()}));
        fs::remove_all(w.repo);
        require_ok(test::strata_on(w.vendor_pool.mountpoint(),
                                   {"publish", w.repo.string(), usr("1"), "--key", other.string() + ".key"}));
        auto r = w.client({"update"});
        CHECK(r.exit_status == 2);
        CHECK(r.err.find("unknown key") != std::string::npos);
    }
    SUBCASE("a revoked key") {
        const auto keys = w.work.path() / "keys";
        fs::create_directories(keys / "revoked");
        fs::copy_file(w.key.string() + ".pub", keys / "vendor.pub");
        fs::copy_file(w.key.string() + ".pub", keys / "revoked/vendor.pub");
        require_ok(w.client({"remote", "add", "vendor", w.server.url() + "/repo", "--key", keys.string(), "--force"}));
        auto r = w.client({"update"});
        CHECK(r.exit_status == 2);
        CHECK(r.err.find("revoked") != std::string::npos);
    }
    CHECK(test::listed_names(w.client_pool.mountpoint()) == before);
    CHECK_FALSE(fs::exists(w.client_pool.mountpoint() / "usr:org.example.Demo:x86_64:1"));
}

TEST_CASE("a replayed older index is refused unless downgrades are allowed") {
    test::require_root_and_btrfs();
    World w;
    w.release("1");
    require_ok(w.publish(usr("1")));
    const auto old_index = slurp(w.repo / "index.json"), old_sig = slurp(w.repo / "index.json.minisig");
    w.release("2");
    require_ok(w.publish(usr("2"), {"--deltas-from", "1"}));
    CHECK(w.update()["deployment"]["usr"] == usr("2"));
    std::ofstream(w.repo / "index.json", std::ios::trunc) << old_index;
    std::ofstream(w.repo / "index.json.minisig", std::ios::trunc) << old_sig;
    auto r = w.client({"update"});
    CHECK(r.exit_status == 2);
    CHECK(r.err.find("older than one seen before") != std::string::npos);
    // Allowed, the older index takes the root back to the older version it offers.
    r = w.client({"update", "--allow-downgrade", "--check", "--json"});
    CHECK(r.exit_status == 100);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["current"] == usr("2"));
    CHECK(j["target"] == usr("1"));
}

TEST_CASE("a repository for another arch has nothing for this root") {
    test::require_root_and_btrfs();
    World w;
    w.release("1", 4096, "aarch64");
    require_ok(w.publish("usr:" + vendor + ":aarch64:1"));
    test::check_one_line_error(w.client({"update"}), 3,
                               "update '" + root + "': update from 'vendor': it publishes no usr for " + vendor + " on x86_64");
    test::check_one_line_error(w.client({"update", "nope"}), 3, "update 'nope': no such root instance in the pool");
    test::check_one_line_error(w.client({"update", "root:nope:" + vendor + ":x86_64"}), 3,
                               "update 'root:nope:" + vendor + ":x86_64': no such root instance in the pool");
}

TEST_CASE("an interrupted download resumes where it stopped") {
    test::require_root_and_btrfs();
    World w("/slow/repo");
    w.release("1", 1 << 20);
    require_ok(w.publish(usr("1")));
    const auto full = w.payload(usr("1"), "");
    const uint64_t size = full["compressed_size"];
    REQUIRE(size > 512 << 10);
    // Killed (as by a power cut) a moment into the slow download. --foreground: timeout must
    // reap strata before it returns (without it, timeout kills itself with the same SIGKILL and
    // strata may still be exiting, holding the pool lock, when the next command starts).
    std::string line = "timeout --foreground -s KILL 3 '" + test::strata_binary() + "' --pool '" +
                       w.client_pool.mountpoint().string() + "' --config '" + w.config.string() + "' --boot-dir '" +
                       w.boot.string() + "' update";
    CHECK(run_process({"sh", "-c", line}).exit_status == 128 + 9);
    const auto part = w.client_pool.mountpoint() / ".strata/downloads" / (full["sha256"].get<std::string>() + ".part");
    REQUIRE(fs::exists(part));
    const auto had = fs::file_size(part);
    CHECK(had > 0);
    CHECK(had < size);
    auto st = w.client({"status"});
    CHECK(st.out.find("Unfinished update: stopped at download " + usr("1")) != std::string::npos);

    auto r = w.client({"update"});
    require_ok(r);
    CHECK(r.out.find("Continuing an unfinished update") != std::string::npos);
    CHECK(r.out.find("Resumed the download at") != std::string::npos);
    const auto requests = w.server.wait_for_requests(w.server.requests().size());
    const auto& last = requests.back();
    CHECK(last.range == "bytes=" + std::to_string(had) + "-");
    CHECK(last.body_bytes == size - had);
    CHECK(w.same_tree(usr("1")).empty());
}

TEST_CASE("an update killed after its download or its import is finished by the next one without fetching again") {
    test::require_root_and_btrfs();
    for (const std::string step : {"update:downloaded", "update:imported"}) {
        CAPTURE(step);
        World w;
        w.release("1");
        require_ok(w.publish(usr("1")));
        CHECK(w.update()["kind"] == "full");
        const auto old_entry = w.boot / "loader/entries" / ("org.example.Demo+web+1+x86_64+3.conf");
        REQUIRE(fs::exists(old_entry));
        const auto old_text = slurp(old_entry);
        w.release("2");
        require_ok(w.publish(usr("2"), {"--deltas-from", "1"}));
        const auto check = w.client({"update", "--check", "--json"});
        REQUIRE(check.exit_status == 100);
        const bool is_delta = nlohmann::json::parse(check.out)["kind"] == "delta";  // the smaller one
        const auto delta = w.payload(usr("2"), usr("1"), is_delta ? "strata-delta" : "btrfs-send");
        const std::string file = delta["file"];

        std::string line = "STRATA_TEST_CRASH_AT=" + step + " '" + test::strata_binary() + "' --pool '" +
                           w.client_pool.mountpoint().string() + "' --config '" + w.config.string() + "' --boot-dir '" +
                           w.boot.string() + "' update";
        CHECK(run_process({"sh", "-c", line}).exit_status == 128 + 9);
        // Power cut: v1 stays the default with its entry as it was; v2 has a name only once imported.
        CHECK(slurp(old_entry) == old_text);
        CHECK(fs::exists(w.client_pool.mountpoint() / usr("2")) == (step == "update:imported"));
        const auto downloads = w.client_pool.mountpoint() / ".strata/downloads";
        const auto part = downloads / (delta["sha256"].get<std::string>() + ".part");
        if (step == "update:downloaded") CHECK(fs::file_size(part) == delta["compressed_size"].get<uint64_t>());
        auto st = w.client({"status"});
        CHECK(st.out.find(step == "update:downloaded" ? "Unfinished update: stopped at download " + usr("2")
                                                      : "Unfinished update: stopped at import " + usr("2")) != std::string::npos);

        const auto served = w.bytes_served(file);
        CHECK(served == delta["compressed_size"].get<uint64_t>());
        auto r = w.client({"update"});
        require_ok(r);
        CHECK(r.out.find("Continuing an unfinished update") != std::string::npos);
        CHECK(w.bytes_served(file) == served);  // the complete download was checked, not fetched again
        CHECK(w.same_tree(usr("2")).empty());
        CHECK(fs::exists(w.boot / "loader/entries" / ("org.example.Demo+web+2+x86_64+3.conf")));
        CHECK(fs::is_empty(downloads));
        st = w.client({"status"});
        CHECK(st.out.find("Unfinished update") == std::string::npos);
    }
}

TEST_CASE("--download-only keeps a verified download for later, and one the remote has moved past is removed") {
    test::require_root_and_btrfs();
    World w;
    w.release("1");
    require_ok(w.publish(usr("1")));
    CHECK(w.update()["kind"] == "full");
    const auto downloads = w.client_pool.mountpoint() / ".strata/downloads";

    w.release("2");
    require_ok(w.publish(usr("2"), {"--deltas-from", "1"}));
    auto r = w.client({"update", "--download-only", "--json"});
    require_ok(r);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["downloaded"] == true);
    CHECK(j["imported"] == false);
    CHECK(j["deployment"].is_null());
    const auto payload = w.payload(usr("2"), usr("1"), j["kind"] == "delta" ? "strata-delta" : "btrfs-send");
    // Durable under the name a later run trusts, with the signed size; nothing applied yet.
    const auto kept = downloads / (payload["sha256"].get<std::string>() + ".stream");
    REQUIRE(fs::exists(kept));
    CHECK(fs::file_size(kept) == payload["compressed_size"].get<uint64_t>());
    CHECK_FALSE(fs::exists(downloads / (payload["sha256"].get<std::string>() + ".part")));
    CHECK_FALSE(fs::exists(w.client_pool.mountpoint() / usr("2")));
    CHECK(w.client({"update", "--check"}).out.find("already downloaded") != std::string::npos);

    // The remote moves on to v3 before the download is applied: the next update applies v3 and
    // removes the v2 download, which no plan will use again.
    w.release("3");
    require_ok(w.publish(usr("3"), {"--deltas-from", "1"}));
    const auto next = w.update();
    CHECK(next["deployment"]["usr"] == usr("3"));
    CHECK(w.same_tree(usr("3")).empty());
    CHECK_FALSE(fs::exists(kept));
    CHECK(fs::is_empty(downloads));
}

TEST_CASE("a corrupt part of a strata delta is fetched again from that part on, and nothing is applied before") {
    test::require_root_and_btrfs();
    World w;
    const auto release = [&](const std::string& v, uint32_t shift) {
        w.release(v, 64 << 10, "x86_64", [&](const fs::path& tree) {
            put(tree / "lib/libbig.so.1", test::code_like(60000, shift));
            // New content in v2 large enough for more than one 8 MiB part.
            if (v == "2") put(tree / "share/big.bin", random_bytes(10 << 20, 99));
        });
    };
    release("1", 0);
    require_ok(w.publish(usr("1")));
    CHECK(w.update()["kind"] == "full");
    release("2", 100);
    require_ok(w.publish(usr("2"), {"--deltas-from", "1"}));
    const auto sdelta = w.payload(usr("2"), usr("1"), "strata-delta");
    REQUIRE(sdelta["parts"].size() == 2);
    const uint64_t size = sdelta["compressed_size"], first = sdelta["parts"][0]["size"];
    const auto file = w.repo / sdelta["file"].get<std::string>();

    // The server hands out a damaged second part: the download fails its digest, keeps the first part.
    const auto good = slurp(file);
    std::string bad = good;
    bad[first + 100] = static_cast<char>(bad[first + 100] ^ 0x40);
    put(file, bad);
    auto r = w.client({"update"});
    CHECK(r.exit_status == 2);
    CHECK(r.err.find("corrupt or tampered, kept the " + std::to_string(first) + " bytes of parts that verify") != std::string::npos);
    CHECK(r.err.find("nothing was applied") != std::string::npos);
    CHECK_FALSE(fs::exists(w.client_pool.mountpoint() / usr("2")));
    const auto part = w.client_pool.mountpoint() / ".strata/downloads" / (sdelta["sha256"].get<std::string>() + ".part");
    REQUIRE(fs::exists(part));
    CHECK(fs::file_size(part) == first);

    // Repaired: the next update fetches only from the second part on.
    put(file, good);
    const auto before = w.server.requests().size();
    auto j = w.update();
    CHECK(j["kind"] == "delta");
    CHECK(j["deployment"]["usr"] == usr("2"));
    const auto requests = w.server.wait_for_requests(before + 1);
    uint64_t fetched = 0;
    for (size_t i = before; i < requests.size(); ++i)
        if (requests[i].uri.ends_with(sdelta["file"].get<std::string>())) {
            CHECK(requests[i].range == "bytes=" + std::to_string(first) + "-");
            fetched += requests[i].body_bytes;
        }
    CHECK(fetched == size - first);
    CHECK(w.same_tree(usr("2")).empty());
}

TEST_CASE("an update that does not fit is refused with the numbers before downloading") {
    test::require_root_and_btrfs();
    World w;
    w.release("1", 8 << 20);
    require_ok(w.publish(usr("1")));
    // Leave a few MiB free in the client pool: less than download plus receive need.
    struct statvfs st {};
    REQUIRE(::statvfs(w.client_pool.mountpoint().c_str(), &st) == 0);
    const uint64_t free_now = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
    REQUIRE(free_now > (12ull << 20));
    require_ok(run_process({"fallocate", "-l", std::to_string(free_now - (6ull << 20)),
                            (w.client_pool.mountpoint() / "filler").string()}));
    auto r = w.client({"update"});
    CHECK(r.exit_status == 1);
    CHECK_MESSAGE(r.err.find("not enough space in the pool: needs ") != std::string::npos, r.err);
    CHECK(w.bytes_served(w.payload(usr("1"), "")["file"].get<std::string>()) == 0);
    CHECK_FALSE(fs::exists(w.client_pool.mountpoint() / usr("1")));
}

TEST_CASE("two updates at once: the second finds the pool busy and nothing is lost") {
    test::require_root_and_btrfs();
    World w("/slow/repo");
    std::ofstream(w.config, std::ios::app) << "[pool]\nlock-timeout-sec = 0\n";
    w.release("1", 1 << 20);
    require_ok(w.publish(usr("1")));
    // --foreground: first.wait() returns only once strata is gone and its pool lock released.
    std::string line = "timeout --foreground -s KILL 4 '" + test::strata_binary() + "' --pool '" +
                       w.client_pool.mountpoint().string() + "' --config '" + w.config.string() + "' --boot-dir '" +
                       w.boot.string() + "' update";
    auto first = ChildProcess::spawn({"sh", "-c", line}, -1, -1);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    auto second = w.client({"update"});
    CHECK(second.exit_status == 5);
    CHECK(second.err.find("busy") != std::string::npos);
    first.wait();
    require_ok(w.client({"update"}));
    CHECK(w.same_tree(usr("1")).empty());
}

TEST_CASE("remote add writes a drop-in that list shows and remove deletes") {
    test::TempDir work;
    const auto config = work.path() / "strata.toml";
    std::ofstream(config) << "";
    auto run = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {"--config", config.string()});
        return test::run_strata(args);
    };
    require_ok(run({"remote", "add", "vendor", "https://updates.example.org/os", "--key", "/etc/strata/keys.d"}));
    CHECK(fs::exists(work.path() / "strata.toml.d/remote-vendor.toml"));
    auto r = run({"remote", "list", "--json"});
    require_ok(r);
    CHECK(nlohmann::json::parse(r.out) ==
          nlohmann::json::parse(R"([{"name":"vendor","url":"https://updates.example.org/os","keys":["/etc/strata/keys.d"],"insecure":false}])"));
    test::check_one_line_error(run({"remote", "add", "vendor", "https://other.example.org"}), 4,
                               "add remote 'vendor': exists already (--force replaces it)");
    test::check_one_line_error(run({"remote", "add", "x", "ftp://a"}), 2,
                               "add remote 'x': config 'remote drop-in' line 3: 'remote.x.url' must be a file:///, http:// or https:// URL, got 'ftp://a'");
    test::check_one_line_error(run({"remote", "add", "a/b", "https://a"}), 2,
                               "add remote 'a/b': invalid remote name 'a/b': use letters, digits, '_', '-' and '.'");
    test::check_one_line_error(run({"remote", "remove", "nope"}), 3, "remove remote 'nope': no such remote");
    require_ok(run({"remote", "remove", "vendor"}));
    CHECK_FALSE(fs::exists(work.path() / "strata.toml.d/remote-vendor.toml"));
    r = run({"remote", "list", "--json"});
    CHECK(nlohmann::json::parse(r.out).empty());
}

TEST_CASE("a key announced by the trusted key takes over after rotation") {
    test::require_root_and_btrfs();
    World w;
    const auto next = w.work.path() / "next";
    require_ok(test::run_strata({"keygen", "-o", next.string()}));
    w.release("1");
    require_ok(w.publish(usr("1"), {"--announce-key", next.string() + ".pub"}));
    CHECK(w.update()["deployment"]["usr"] == usr("1"));
    w.release("2");
    require_ok(test::strata_on(w.vendor_pool.mountpoint(),
                               {"publish", w.repo.string(), usr("2"), "--deltas-from", "1", "--key", next.string() + ".key",
                                "--previous-key", w.key.string() + ".pub"}));
    CHECK(w.update()["deployment"]["usr"] == usr("2"));
    // The client remembers the new key in its pool.
    CHECK(fs::exists(w.client_pool.mountpoint() / ".strata/keys.d"));
    CHECK_FALSE(fs::is_empty(w.client_pool.mountpoint() / ".strata/keys.d"));
}
