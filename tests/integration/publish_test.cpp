// repo::publish on a scratch pool: a repository of v1, v2 and v3 with deltas, checked with the
// stock tools (sha256sum -c, minisign -V), re-published idempotently, pruned, applied on a second
// pool; refused input leaves the repository as it was.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "base/lock.hpp"
#include "btrfs/subvolume.hpp"
#include "pool/pool.hpp"
#include "repo/publish.hpp"
#include "sign/minisign.hpp"
#include "support/errors.hpp"
#include "support/mount.hpp"
#include "support/scratch_pool.hpp"
#include "support/tree.hpp"
#include "vendor/import.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string v1 = "usr:org.example.Pub:x86_64:1";
const std::string v2 = "usr:org.example.Pub:x86_64:2";
const std::string v3 = "usr:org.example.Pub:x86_64:3";
const std::string stem = "payloads/usr_org.example.Pub_x86_64_";

void write_text(const fs::path& file, const std::string& text) {
    fs::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
}

std::string read_text(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string random_text(size_t size, unsigned seed) {
    std::mt19937 gen(seed);
    std::string out(size, '\0');
    for (auto& c : out) c = static_cast<char>(gen());
    return out;
}

// Three versions, each built on the one before (import with the default base), so v2 and v3
// are snapshots of their predecessors and deltas carry only the change.
struct Versions {
    test::ScratchPool scratch{512ull << 20};
    test::TempDir work;
    pool::Pool pool = pool::Pool::open(scratch.mountpoint());
    fs::path repo = work.path() / "repo";
    sign::KeyPair keys = sign::generate_key_pair();
    fs::path pub = work.path() / "a.pub";

    Versions() {
        const auto lock = pool.lock(std::chrono::seconds(5));
        const auto tree = work.path() / "tree";
        write_text(tree / "usr/lib/os-release", "ID=pub\nVERSION_ID=1\n");
        write_text(tree / "usr/lib/data/big", random_text(512 * 1024, 1));
        vendor::import_directory(pool, lock, naming::Name::parse(v1), tree);
        write_text(tree / "usr/lib/os-release", "ID=pub\nVERSION_ID=2\n");
        write_text(tree / "usr/bin/tool", random_text(4096, 2));
        vendor::import_directory(pool, lock, naming::Name::parse(v2), tree);
        write_text(tree / "usr/lib/os-release", "ID=pub\nVERSION_ID=3\n");
        fs::remove(tree / "usr/bin/tool");
        vendor::import_directory(pool, lock, naming::Name::parse(v3), tree);
        write_text(pub, sign::public_key_file(keys.public_key, "test key"));
    }

    std::string uuid(const std::string& name) const { return btrfs::format_uuid(pool.find(name)->info.uuid); }
};

repo::PublishOptions deltas(unsigned n) {
    repo::PublishOptions o;
    o.deltas_from = n;
    return o;
}

// Every file of the repository with its content, for "nothing changed" checks.
std::map<std::string, std::string> repo_state(const fs::path& repo) {
    std::map<std::string, std::string> state;
    if (!fs::exists(repo)) return state;
    for (const auto& e : fs::recursive_directory_iterator(repo))
        state[fs::relative(e.path(), repo).string()] = e.is_regular_file() ? read_text(e.path()) : "<dir>";
    return state;
}

std::string sha256sum(const fs::path& file) {
    const auto r = run_process({"sha256sum", file.string()});
    REQUIRE(r.exit_status == 0);
    return r.out.substr(0, 64);
}

bool sums_check(const fs::path& repo) {
    const auto r = test::run_shell("cd '" + repo.string() + "' && sha256sum -c --strict SHA256SUMS");
    if (r.exit_status != 0) MESSAGE((r.out + r.err));
    return r.exit_status == 0;
}

std::string joined(const std::vector<std::string>& lines) {
    std::string all;
    for (const auto& l : lines) all += l + "\n";
    return all;
}

const repo::Payload* payload_from(const repo::Tree& tree, const std::optional<std::string>& parent,
                                  std::string_view kind = repo::send_stream_kind) {
    for (const auto& p : tree.payloads)
        if (p.kind == kind && ((!parent && !p.parent) || (parent && p.parent && p.parent->name == *parent))) return &p;
    return nullptr;
}

}  // namespace

TEST_CASE("publish v1 v2 v3 with deltas gives a repository sha256sum and minisign accept") {
    test::require_root_and_btrfs();
    Versions t;
    const auto& key = t.keys.secret_key;
    const std::vector<sign::PublicKey> trusted{t.keys.public_key};

    auto r = repo::publish(t.pool, t.repo, v1, key);
    CHECK(r.serial == 1);
    CHECK(r.written == std::vector<std::string>{stem + "1.full.zst"});
    auto o2 = deltas(1);
    o2.changelog = "second";
    r = repo::publish(t.pool, t.repo, v2, key, o2);
    CHECK(r.serial == 2);
    CHECK(r.written == std::vector<std::string>{stem + "2.full.zst", stem + "2.from-1.zst", stem + "2.from-1.sdelta.zst"});
    r = repo::publish(t.pool, t.repo, v3, key, deltas(2));
    CHECK(r.serial == 3);
    CHECK(r.written == std::vector<std::string>{stem + "3.full.zst", stem + "3.from-2.zst", stem + "3.from-2.sdelta.zst",
                                                stem + "3.from-1.zst", stem + "3.from-1.sdelta.zst"});
    CHECK(r.reused.empty());

    const auto index = repo::read_local_index(t.repo, trusted);
    CHECK(index.serial == 3);
    REQUIRE(index.trees.size() == 3);
    CHECK(index.trees[0].name == v1);
    CHECK(index.trees[1].changelog == "second");
    const auto& tree3 = index.trees[2];
    CHECK(tree3.name == v3);
    CHECK(tree3.uuid == t.uuid(v3));
    CHECK(tree3.received_uuid.empty());
    REQUIRE(tree3.payloads.size() == 5);
    CHECK(!tree3.payloads[0].parent);  // full first, then by parent in version order, then by kind
    for (size_t i : {1u, 2u}) CHECK(tree3.payloads[i].parent->name == v1);
    for (size_t i : {3u, 4u}) CHECK(tree3.payloads[i].parent->name == v2);
    CHECK(tree3.payloads[1].kind == "btrfs-send");
    CHECK(tree3.payloads[2].kind == "strata-delta");
    CHECK(tree3.payloads[1].parent->uuid == t.uuid(v1));
    CHECK(tree3.payloads[3].parent->uuid == t.uuid(v2));
    for (const auto& tree : index.trees)
        for (const auto& p : tree.payloads) {
            CAPTURE(p.file);
            CHECK(p.compression == "zstd");
            CHECK(p.compressed_size == fs::file_size(t.repo / p.file));
            CHECK(p.sha256 == sha256sum(t.repo / p.file));
            CHECK(p.size > 0);
            if (p.kind == "btrfs-send") {
                CHECK(p.parts.empty());
                continue;
            }
            CHECK(p.kind == "strata-delta");
            // Each part's digest is that of its range of the file.
            REQUIRE_FALSE(p.parts.empty());
            uint64_t offset = 0;
            for (const auto& part : p.parts) {
                const auto range = test::run_shell("tail -c +" + std::to_string(offset + 1) + " '" + (t.repo / p.file).string() +
                                               "' | head -c " + std::to_string(part.size) + " | sha256sum");
                CHECK(range.out.substr(0, 64) == part.sha256);
                offset += part.size;
            }
            CHECK(offset == p.compressed_size);
            // It rebuilds exactly the plain incremental stream from the same parent.
            const auto plain = payload_from(tree, p.parent->name);
            REQUIRE(plain);
            CHECK(p.size == plain->size);
            CHECK(test::run_shell("zstd -dc '" + (t.repo / plain->file).string() + "' | sha256sum").out.substr(0, 64) ==
                  p.stream_sha256);
        }
    // The full stream carries the 512 KiB of random data, the deltas do not.
    CHECK(payload_from(tree3, std::nullopt)->size > 512 * 1024);
    CHECK(payload_from(tree3, v2)->size < 64 * 1024);

    auto check = test::run_shell("cd '" + t.repo.string() + "' && sha256sum -c --strict SHA256SUMS");
    CHECK_MESSAGE(check.exit_status == 0, (check.out + check.err));
    CHECK(std::count(check.out.begin(), check.out.end(), '\n') == 9);
    check = run_process({"minisign", "-V", "-p", t.pub.string(), "-m", (t.repo / "index.json").string()});
    CHECK_MESSAGE(check.exit_status == 0, (check.out + check.err));
    CHECK(check.out.find("strata-index serial=3") != std::string::npos);

    SUBCASE("a payload applies on a second pool: the full stream and then a delta on top") {
        test::ScratchPool b;
        const auto other = pool::Pool::open(b.mountpoint());
        const auto lock = other.lock(std::chrono::seconds(5));
        vendor::import_stream(other, lock, naming::Name::parse(v1), t.repo / payload_from(index.trees[0], std::nullopt)->file);
        vendor::import_stream(other, lock, naming::Name::parse(v3), t.repo / payload_from(tree3, v1)->file);
        const auto differences = test::compare_trees(t.scratch.mountpoint() / v3, b.mountpoint() / v3);
        CHECK_MESSAGE(differences.empty(), joined(differences));
        CHECK(btrfs::format_uuid(other.find(v3)->info.received_uuid) == t.uuid(v3));
    }

    SUBCASE("re-publishing writes no payload again and only bumps the serial") {
        std::map<std::string, std::pair<ino_t, timespec>> before;
        for (const auto& e : fs::directory_iterator(t.repo / "payloads")) {
            struct stat st {};
            REQUIRE(::stat(e.path().c_str(), &st) == 0);
            before[e.path().filename()] = {st.st_ino, st.st_mtim};
        }
        r = repo::publish(t.pool, t.repo, v3, key, deltas(2));
        CHECK(r.written.empty());
        CHECK(r.reused.size() == 5);
        CHECK(r.serial == 4);
        for (const auto& e : fs::directory_iterator(t.repo / "payloads")) {
            struct stat st {};
            REQUIRE(::stat(e.path().c_str(), &st) == 0);
            const auto& [ino, mtime] = before.at(e.path().filename());
            CHECK(st.st_ino == ino);
            CHECK(st.st_mtim.tv_sec == mtime.tv_sec);
            CHECK(st.st_mtim.tv_nsec == mtime.tv_nsec);
        }
        auto again = repo::read_local_index(t.repo, trusted);
        CHECK(again.serial == 4);
        again.serial = index.serial;
        again.generated = index.generated;
        CHECK(repo::render_index(again) == repo::render_index(index));

        // A payload that lost its content is written again, the others are kept.
        write_text(t.repo / (stem + "3.from-1.zst"), "garbage");
        r = repo::publish(t.pool, t.repo, v3, key, deltas(2));
        CHECK(r.written == std::vector<std::string>{stem + "3.from-1.zst"});
        CHECK(r.reused.size() == 4);
        CHECK(sums_check(t.repo));
    }

    SUBCASE("a publish killed between its renames is finished by the next one") {
        // The state after the signature was renamed into place but not the index.
        auto pending = repo::read_local_index(t.repo, trusted);
        pending.serial = 4;
        const auto text = repo::render_index(pending);
        write_text(t.repo / "index.json.new", text);
        write_text(t.repo / "index.json.minisig", sign::sign(key, text, repo::index_trusted_comment(4)));
        write_text(t.repo / "payloads/.#junk.zst.123", "left by a killed publisher");
        CHECK(!test::error_of([&] { repo::read_local_index(t.repo, trusted); }).empty());
        CHECK(repo::publish(t.pool, t.repo, v3, key).serial == 5);
        CHECK(!fs::exists(t.repo / "index.json.new"));
        CHECK(!fs::exists(t.repo / "payloads/.#junk.zst.123"));

        // Pending files whose signature never got into place are discarded.
        write_text(t.repo / "index.json.new", "{}");
        write_text(t.repo / "index.json.minisig.new", "not a signature");
        CHECK(repo::publish(t.pool, t.repo, v3, key).serial == 6);
        CHECK(!fs::exists(t.repo / "index.json.new"));
        CHECK(!fs::exists(t.repo / "index.json.minisig.new"));
        CHECK(repo::read_local_index(t.repo, trusted).serial == 6);
        CHECK(sums_check(t.repo));
    }

    SUBCASE("keep 2 prunes v1 and the payloads only it named") {
        r = repo::publish(t.pool, t.repo, v3, key, [] {
            repo::PublishOptions o;
            o.keep = 2;
            return o;
        }());
        CHECK(r.pruned == std::vector<std::string>{v1});
        CHECK(!fs::exists(t.repo / (stem + "1.full.zst")));
        CHECK(fs::exists(t.repo / (stem + "2.from-1.zst")));  // v2's delta still serves clients that have v1
        const auto pruned = repo::read_local_index(t.repo, trusted);
        REQUIRE(pruned.trees.size() == 2);
        CHECK(pruned.trees[0].name == v2);
        CHECK(sums_check(t.repo));
        CHECK(read_text(t.repo / "SHA256SUMS").find("_1.full.zst") == std::string::npos);

        // Publishing an old version that --keep would prune at once is refused.
        repo::PublishOptions keep1;
        keep1.keep = 1;
        CHECK(test::error_of([&] { repo::publish(t.pool, t.repo, v2, key, keep1); }) ==
              "publish '" + v2 + "': --keep 1 would prune '" + v2 + "' itself: newer versions of the series are published");
    }

    SUBCASE("a key announcement is signed by the current key") {
        const auto next = sign::generate_key_pair();
        repo::PublishOptions o;
        o.announce = next.public_key;
        repo::publish(t.pool, t.repo, v3, key, o);
        const auto announced = repo::read_local_index(t.repo, trusted);
        REQUIRE(announced.keys.size() == 1);
        CHECK(announced.keys[0].public_key == sign::public_key_base64(next.public_key));
        CHECK(sign::verify(trusted, announced.keys[0].public_key, announced.keys[0].signature).key == t.keys.public_key);

        // The new key takes over: the index signed by the old one is accepted with --previous-key.
        o = {};
        CHECK(!test::error_of([&] { repo::publish(t.pool, t.repo, v3, next.secret_key, o); }).empty());
        o.previous_keys = trusted;
        CHECK(repo::publish(t.pool, t.repo, v3, next.secret_key, o).serial == 5);
        const std::vector<sign::PublicKey> rotated{next.public_key};
        CHECK(repo::read_local_index(t.repo, rotated).serial == 5);
    }
}

TEST_CASE("refused publishes leave the repository unchanged") {
    test::require_root_and_btrfs();
    Versions t;
    const auto& key = t.keys.secret_key;
    {
        // A tree that is no snapshot of v1 and a writable root beside the vendor trees.
        const auto lock = t.pool.lock(std::chrono::seconds(5));
        const auto tree = t.work.path() / "unrelated";
        write_text(tree / "usr/lib/os-release", "ID=other\n");
        vendor::ImportOptions no_base;
        no_base.base.none = true;
        vendor::import_directory(t.pool, lock, naming::Name::parse("usr:org.example.Pub:x86_64:4"), tree, no_base);
    }
    btrfs::create_subvolume(Dir::open(t.scratch.mountpoint()), "root:demo:org.example.Pub:x86_64");
    repo::publish(t.pool, t.repo, v1, key);
    auto state = repo_state(t.repo);

    auto refused = [&](const std::string& name, const repo::PublishOptions& options, const sign::SecretKey& k) {
        const auto message = test::error_of([&] { repo::publish(t.pool, t.repo, name, k, options); });
        CHECK(repo_state(t.repo) == state);
        return message;
    };
    CHECK(refused("usr:org.example.Pub:x86_64:9", {}, key) ==
          "publish 'usr:org.example.Pub:x86_64:9': find 'usr:org.example.Pub:x86_64:9': no such subvolume in the pool");
    CHECK(refused("usr:org.example.Pub:x86:9", {}, key).find("field 'arch': unknown architecture 'x86'") !=
          std::string::npos);
    CHECK(refused("root:demo:org.example.Pub:x86_64", {}, key) ==
          "publish 'root:demo:org.example.Pub:x86_64': 'root:demo:org.example.Pub:x86_64' is not a vendor tree: only "
          "usr, runtime, framework and app trees are published");
    repo::PublishOptions bad_parent;
    bad_parent.parents = {"usr:org.example.Pub:x86_64:4"};
    CHECK(refused(v2, bad_parent, key) ==
          "publish '" + v2 +
              "': 'usr:org.example.Pub:x86_64:4' is not an ancestor of '" + v2 +
              "' in this pool (it was not built on it), so a delta from it would not apply; publish without it");
    bad_parent.parents = {v3};  // newer, built on v2: not an ancestor either
    CHECK(refused(v2, bad_parent, key).find("'" + v3 + "' is not an ancestor") != std::string::npos);
    repo::PublishOptions bad_level = deltas(1);
    bad_level.delta_level = 20;
    CHECK(refused(v2, bad_level, key) == "publish '" + v2 + "': the delta level must be from 1 to 19, not 20");
    bad_parent.parents = {"usr:org.example.Pub:x86_64:7"};
    CHECK(refused(v2, bad_parent, key) ==
          "publish '" + v2 + "': parent 'usr:org.example.Pub:x86_64:7': find 'usr:org.example.Pub:x86_64:7': no such "
                             "subvolume in the pool");

    {
        // Another publisher at work on the same directory.
        const auto repo_dir = Dir::open(t.repo);
        const auto held = FileLock::acquire(repo_dir, ".strata-publish.lock", std::chrono::milliseconds(0), "held");
        CHECK(refused(v2, {}, key) == "publish '" + v2 + "': lock '" + (t.repo / ".strata-publish.lock").string() +
                                          "': repository is busy: another strata publish is writing it");
    }

    // Another publisher's key.
    const auto other = sign::generate_key_pair();
    auto message = refused(v2, {}, other.secret_key);
    CHECK_MESSAGE(message.starts_with("publish '" + v2 + "': verify index '" + (t.repo / "index.json").string() +
                                      "': verify signature: signed by unknown key"),
                  message);
    CHECK(message.ends_with("it must verify with key " + sign::format_key_id(other.public_key.id) +
                            " (a repository signed by another key is not overwritten)"));

    // A modified index fails its signature.
    auto text = read_text(t.repo / "index.json");
    write_text(t.repo / "index.json", text + " ");
    state = repo_state(t.repo);
    message = refused(v2, {}, key);
    CHECK_MESSAGE(message.find("verify index") != std::string::npos, message);
    const std::vector<sign::PublicKey> trusted{t.keys.public_key};
    CHECK(!test::error_of([&] { repo::read_local_index(t.repo, trusted); }).empty());

    // A well-signed index that is not one: refused by the parser, naming the place.
    write_text(t.repo / "index.json", "{\"format\": 1}");
    write_text(t.repo / "index.json.minisig", sign::sign(key, "{\"format\": 1}", repo::index_trusted_comment(1)));
    state = repo_state(t.repo);
    CHECK(refused(v2, {}, key) == "publish '" + v2 + "': read index '" + (t.repo / "index.json").string() +
                                      "': invalid index: top level: missing field 'serial'");
    CHECK(test::error_of([&] { repo::read_local_index(t.repo / "missing", trusted); }) != "");
}

TEST_CASE("a publish that runs out of space fails with the reason and leaves the repository as it was") {
    test::require_root_and_btrfs();
    Versions t;
    const auto& key = t.keys.secret_key;
    const auto fs_root = t.work.path() / "small";
    const auto small = test::TestMount::tmpfs(fs_root, "size=4m");
    const auto repo = fs_root / "repo";
    repo::publish(t.pool, repo, v1, key);
    repo::publish(t.pool, repo, v2, key);  // v2's full stream; its deltas come below
    const auto fill = [&] {
        // Until the file system is full: dd ends with ENOSPC.
        run_process({"dd", "if=/dev/zero", "of=" + (fs_root / "filler").string(), "bs=4k", "status=none"});
    };

    SUBCASE("the incremental streams, exported by a thread, do not fit") {
        fill();
        const auto state = repo_state(repo);
        const auto message = test::error_of([&] { repo::publish(t.pool, repo, v2, key, deltas(1)); });
        CHECK_MESSAGE(message.starts_with("publish '" + v2 + "': "), message);
        CHECK_MESSAGE(message.find("No space left on device") != std::string::npos, message);
        CHECK(repo_state(repo) == state);
    }
    SUBCASE("the full stream of a new version does not fit either") {
        // Room for less than half of v3's full stream (512 KiB of random data).
        const auto room = fs::space(fs_root).available;
        REQUIRE(room > (256u << 10));
        REQUIRE(run_process({"dd", "if=/dev/zero", "of=" + (fs_root / "filler").string(), "bs=4k",
                             "count=" + std::to_string((room - (200u << 10)) / 4096), "status=none"})
                    .exit_status == 0);
        const auto state = repo_state(repo);
        const auto message = test::error_of([&] { repo::publish(t.pool, repo, v3, key, deltas(2)); });
        CHECK_MESSAGE(message.starts_with("publish '" + v3 + "': "), message);
        CHECK_MESSAGE(message.find("No space left on device") != std::string::npos, message);
        CHECK(repo_state(repo) == state);
    }
    // Space again: the same publish goes through, nothing of the failed one in the way.
    fs::remove(fs_root / "filler");
    const auto r = repo::publish(t.pool, repo, v2, key, deltas(1));
    CHECK(r.written.size() == 2);
    CHECK(sums_check(repo));
}
