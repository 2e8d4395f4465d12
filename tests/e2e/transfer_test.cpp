// Vendor trees in and out of the pool, driven through the binary: every way in reproduces the
// fixture tree exactly, streams round-trip between pools, and bad input changes nothing.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "btrfs/subvolume.hpp"
#include "e2e/e2e.hpp"
#include "stream/crc32c.hpp"
#include "support/tree.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string v1 = "usr:org.example.Fixture:x86_64:1";
const std::string v2 = "usr:org.example.Fixture:x86_64:2";

void require_ok(const ProcessResult& r) { REQUIRE_MESSAGE(r.exit_status == 0, r.err); }

void check_same_tree(const fs::path& a, const fs::path& b) {
    const auto differences = test::compare_trees(a, b);
    std::string all;
    for (const auto& d : differences) all += d + "\n";
    CHECK_MESSAGE(differences.empty(), all);
}

// What must hold after any refused command: the same objects, and nothing left in staging.
void check_unchanged(const fs::path& mnt, const nlohmann::json& before) {
    CHECK(test::list_json(mnt) == before);
    const auto staging = mnt / ".strata/staging";
    if (fs::exists(staging)) CHECK(Dir::open(staging).entries().empty());
    for (const auto& e : fs::directory_iterator(mnt))
        CHECK_MESSAGE(!e.path().filename().string().starts_with(".strata.publish."), e.path());
}

// The second version of the fixture: a changed file, a new one, a removed one, a new mode.
void make_v2(const fs::path& tree) {
    std::ofstream(tree / "etc/hostname") << "changed\n";
    std::ofstream(tree / "usr/lib/data/new-in-v2") << "new\n";
    fs::remove(tree / test::fixture::hardlink_pair[1]);
    fs::permissions(tree / test::fixture::user_file, fs::perms(0600));
}

std::vector<std::byte> read_bytes(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(chars.size());
    std::memcpy(out.data(), chars.data(), chars.size());
    return out;
}

void write_bytes(const fs::path& file, const std::vector<std::byte>& bytes) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

uint32_t get_le32(const std::vector<std::byte>& b, size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v |= static_cast<uint32_t>(b.at(at + i)) << (8 * i);
    return v;
}

// After editing a stream's bytes, makes every command's CRC32C right again, so that only the
// edit itself is wrong (as a crafted hostile stream would be).
void fix_crcs(std::vector<std::byte>& stream) {
    size_t at = 17;
    while (at + 10 <= stream.size()) {
        const uint32_t length = get_le32(stream, at);
        for (size_t i = 6; i < 10; ++i) stream[at + i] = std::byte{0};
        const uint32_t crc = stream::crc32c_update(0, std::span(stream).subspan(at, 10 + length));
        for (size_t i = 0; i < 4; ++i) stream[at + 6 + i] = static_cast<std::byte>(crc >> (8 * i));
        at += 10 + length;
    }
}

void replace_all(std::vector<std::byte>& stream, std::string_view from, std::string_view to) {
    REQUIRE(from.size() == to.size());
    const auto* f = reinterpret_cast<const std::byte*>(from.data());
    size_t found = 0;
    for (auto it = std::search(stream.begin(), stream.end(), f, f + from.size()); it != stream.end();
         it = std::search(it + 1, stream.end(), f, f + from.size())) {
        std::memcpy(&*it, to.data(), to.size());
        ++found;
    }
    REQUIRE(found > 0);
}

struct TwoPools {
    test::ScratchPool a{512ull << 20}, b{512ull << 20};
    test::TempDir work;
    fs::path tree1 = work.path() / "v1", tree2 = work.path() / "v2";
    TwoPools() {
        fs::create_directory(tree1);
        test::make_fixture_tree(tree1);
        REQUIRE(run_process({"cp", "-a", tree1.string(), tree2.string()}).exit_status == 0);
        make_v2(tree2);
    }
};

}  // namespace

TEST_CASE("dir -> import -> export -> import on a second pool reproduces the tree, incremental v1 -> v2 too") {
    test::require_root_and_btrfs();
    TwoPools t;
    require_ok(test::strata_on(t.a.mountpoint(), {"import", v1, "--from-dir", t.tree1.string()}));
    check_same_tree(t.tree1, t.a.mountpoint() / v1);

    // v2 is built on v1 (the default base): it shares v1's extents and records it as its base.
    auto r = test::strata_on(t.a.mountpoint(), {"import", v2, "--from-dir", t.tree2.string(), "--json"});
    require_ok(r);
    const auto imported = nlohmann::json::parse(r.out);

    CHECK(imported["base"] == v1);
    CHECK(imported["read_only"] == true);
    check_same_tree(t.tree2, t.a.mountpoint() / v2);
    auto inspect = nlohmann::json::parse(test::strata_on(t.a.mountpoint(), {"inspect", v2, "--json"}).out);
    CHECK(inspect["base"] == v1);

    const auto full = t.work.path() / "v1.stream", delta = t.work.path() / "v2.stream.zst";
    require_ok(test::strata_on(t.a.mountpoint(), {"export", v1, "-o", full.string()}));
    require_ok(test::strata_on(t.a.mountpoint(),
                               {"export", v2, "--parent", v1, "-o", delta.string(), "--compress", "zstd"}));
    // Lineage: the delta carries the change, not the 1 MiB random file or the sparse file again.
    CHECK(fs::file_size(delta) < 64 * 1024);
    CHECK(fs::file_size(full) > 1024 * 1024);

    // A file another user could change between validation and receive takes the re-validating path.
    REQUIRE(::chown(full.c_str(), 65534, 65534) == 0);
    require_ok(test::strata_on(t.b.mountpoint(), {"import", v1, "--from-stream", full.string()}));
    check_same_tree(t.tree1, t.b.mountpoint() / v1);
    // Incremental, compressed, through a pipe.
    r = test::run_shell("cat '" + delta.string() + "' | \"$STRATA\" --pool '" + t.b.mountpoint().string() +
                        "' import " + v2 + " --from-stream - --json");
    require_ok(r);
    CHECK(r.err.empty());  // no progress line without a terminal
    CHECK(nlohmann::json::parse(r.out)["base"] == v1);
    check_same_tree(t.tree2, t.b.mountpoint() / v2);

    const auto info = btrfs::info(Dir::open(t.b.mountpoint() / v2));
    CHECK(info.read_only());
    CHECK(btrfs::format_uuid(info.received_uuid) == imported["uuid"]);
    check_unchanged(t.b.mountpoint(), test::list_json(t.b.mountpoint()));
}

TEST_CASE("on a terminal, import and export show a progress line") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    test::TempDir work;
    const auto mnt = scratch.mountpoint();
    REQUIRE(run_process({"dd", "if=/dev/urandom", "of=" + (work.path() / "blob").string(), "bs=1M", "count=8",
                         "status=none"})
                .exit_status == 0);
    require_ok(test::strata_on(mnt, {"import", v1, "--from-dir", work.path().string()}));
    const auto stream = work.path() / "s.stream";
    // script(1) gives strata a pseudo-terminal; what it drew lands in the output.
    auto on_terminal = [&](const std::string& args) {
        return run_process({"script", "-qec", test::strata_binary() + " --pool " + mnt.string() + " " + args, "/dev/null"});
    };
    auto r = on_terminal("export " + v1 + " -o " + stream.string());
    require_ok(r);
    CHECK_MESSAGE(r.out.find("send: ") != std::string::npos, r.out);
    r = on_terminal("import " + v2 + " --from-stream " + stream.string());
    require_ok(r);
    CHECK_MESSAGE(r.out.find("receive: ") != std::string::npos, r.out);
    CHECK_MESSAGE(r.out.find(" of 8.") != std::string::npos, r.out);  // the total is known for a file
    CHECK(r.out.find("Imported '" + v2 + "'.") != std::string::npos);
}

TEST_CASE("a stream imported by strata equals the same stream applied by btrfs receive") {
    test::require_root_and_btrfs();
    TwoPools t;
    require_ok(test::strata_on(t.a.mountpoint(), {"import", v1, "--from-dir", t.tree1.string()}));
    const auto stream = t.work.path() / "v1.stream";
    REQUIRE(run_process({"btrfs", "send", "--proto", "2", "-q", "-f", stream.string(),
                         (t.a.mountpoint() / v1).string()})
                .exit_status == 0);
    require_ok(test::strata_on(t.b.mountpoint(), {"import", v1, "--from-stream", stream.string()}));
    const auto raw = t.b.mountpoint() / "raw";
    fs::create_directory(raw);
    REQUIRE(run_process({"btrfs", "receive", "-q", "-f", stream.string(), raw.string()}).exit_status == 0);
    check_same_tree(raw / v1, t.b.mountpoint() / v1);
    btrfs::delete_subvolume(Dir::open(raw), v1);
}

TEST_CASE("tar -> import reproduces the tree, with and without a base") {
    test::require_root_and_btrfs();
    TwoPools t;
    for (const auto& [tree, name, flags] : {std::tuple{t.tree1, v1, "--zstd"}, std::tuple{t.tree2, v2, "-z"}}) {
        CAPTURE(name);
        fs::remove(tree / "run/socket");  // tar has no sockets
        const auto archive = t.work.path() / (fs::path(tree).filename().string() + ".tar");
        REQUIRE(run_process({"tar", flags, "--xattrs", "--xattrs-include=*", "--acls", "--sparse", "--numeric-owner",
                             "-C", tree.string(), "-cf", archive.string(), "."})
                    .exit_status == 0);
        auto r = test::strata_on(t.a.mountpoint(), {"import", name, "--from-tar", archive.string(), "--json"});
        require_ok(r);
        CHECK(nlohmann::json::parse(r.out)["base"] == (name == v2 ? nlohmann::json(v1) : nlohmann::json(nullptr)));
        check_same_tree(tree, t.a.mountpoint() / name);
    }
    check_unchanged(t.a.mountpoint(), test::list_json(t.a.mountpoint()));
}

TEST_CASE("hostile and broken streams are refused with one line, and the pool is unchanged") {
    test::require_root_and_btrfs();
    test::ScratchPool a, b;
    test::TempDir work;
    const auto src = a.mountpoint() / "src";
    btrfs::create_subvolume(Dir::open(a.mountpoint()), "src");
    fs::create_directories(src / "zz");
    std::ofstream(src / "zz/pwned") << "x\n";
    fs::create_symlink("/etc", src / "ab");
    btrfs::set_read_only(Dir::open(src), true);
    const auto good = work.path() / "good.stream";
    REQUIRE(run_process({"btrfs", "send", "-q", "-f", good.string(), src.string()}).exit_status == 0);
    const auto bytes = read_bytes(good);
    require_ok(test::strata_on(b.mountpoint(), {"list"}));
    const auto before = test::list_json(b.mountpoint());
    const std::string prefix = "import '" + v1 + "': validate stream '";

    auto refused = [&](const std::string& label, const std::vector<std::byte>& stream, const std::string& reason) {
        CAPTURE(label);
        const auto file = work.path() / (label + ".stream");
        write_bytes(file, stream);
        auto r = test::strata_on(b.mountpoint(), {"import", v1, "--from-stream", file.string()});
        CHECK(r.exit_status == 2);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK_MESSAGE(r.err.find(reason) != std::string::npos, r.err);
        check_unchanged(b.mountpoint(), before);
    };

    refused("truncated", std::vector<std::byte>(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size() / 2)),
            "truncated");
    auto flipped = bytes;
    flipped[flipped.size() / 2] ^= std::byte{0x40};
    refused("flipped", flipped, "CRC32C mismatch");
    auto magic = bytes;
    magic[0] = std::byte{'X'};
    refused("magic", magic, "bad magic");
    auto version = bytes;
    version[13] = std::byte{9};
    refused("version", version, "unsupported version 9");

    // Crafted: valid CRCs, but paths that leave the subvolume.
    auto dotdot = bytes;
    replace_all(dotdot, "zz/pwned", "../pwned");
    fix_crcs(dotdot);
    refused("dotdot", dotdot, "'..' component not allowed");
    auto absolute = bytes;
    replace_all(absolute, "zz/pwned", "/z/pwned");
    fix_crcs(absolute);
    refused("absolute", absolute, "absolute");

    // An incremental stream whose parent this pool does not have.
    require_ok(test::strata_on(a.mountpoint(), {"import", v1, "--from-dir", src.string()}));
    const auto tree2 = work.path() / "tree2";
    REQUIRE(run_process({"cp", "-a", src.string(), tree2.string()}).exit_status == 0);
    std::ofstream(tree2 / "zz/new") << "y\n";
    require_ok(test::strata_on(a.mountpoint(), {"import", v2, "--from-dir", tree2.string()}));
    const auto delta = work.path() / "delta.stream";
    require_ok(test::strata_on(a.mountpoint(), {"export", v2, "--parent", v1, "-o", delta.string()}));
    const auto parent_uuid =
        nlohmann::json::parse(test::strata_on(a.mountpoint(), {"inspect", v1, "--json"}).out)["uuid"].get<std::string>();
    auto r = test::strata_on(b.mountpoint(), {"import", v2, "--from-stream", delta.string()});
    test::check_one_line_error(r, 3,
                               "import '" + v2 + "': incremental stream needs parent subvolume " + parent_uuid +
                                   ", which is not in the pool: import that version first");
    check_unchanged(b.mountpoint(), before);

    // Not a stream at all, and missing files.
    r = test::strata_on(b.mountpoint(), {"import", v1, "--from-stream", (work.path() / "missing").string()});
    test::check_one_line_error(r, 3, "import '" + v1 + "': open '" + (work.path() / "missing").string() +
                                         "': No such file or directory");
    r = test::strata_on(b.mountpoint(), {"import", v1, "--from-stream", "/etc/hostname"});
    CHECK(r.exit_status == 2);
    check_unchanged(b.mountpoint(), before);
}

TEST_CASE("a stream may clone data only from read-only vendor trees of the pool") {
    test::require_root_and_btrfs();
    test::ScratchPool a, b;
    test::TempDir work;
    // v2 made from v1 with a home's data reflinked into it, sent with the home as a clone source
    // (`btrfs send -p v1 -c home`): the stream copies extents out of the home, which a vendor
    // tree must never do.
    const auto empty = work.path() / "empty";
    fs::create_directory(empty);
    require_ok(test::strata_on(a.mountpoint(), {"import", v1, "--from-dir", empty.string()}));
    const Dir top = Dir::open(a.mountpoint());
    const std::string home = "home:alice:1000:1000";
    btrfs::create_subvolume(top, home);
    REQUIRE(run_process({"dd", "if=/dev/urandom", "of=" + (a.mountpoint() / home / "secret").string(), "bs=1M",
                         "count=2", "status=none"})
                .exit_status == 0);
    REQUIRE(run_process({"btrfs", "-q", "subvolume", "snapshot", (a.mountpoint() / v1).string(),
                         (a.mountpoint() / "src").string()})
                .exit_status == 0);
    REQUIRE(run_process({"cp", "--reflink=always", (a.mountpoint() / home / "secret").string(),
                         (a.mountpoint() / "src/copy").string()})
                .exit_status == 0);
    REQUIRE(run_process({"sync"}).exit_status == 0);
    btrfs::set_read_only(Dir::open(a.mountpoint() / home), true);
    btrfs::set_read_only(Dir::open(a.mountpoint() / "src"), true);
    const auto stream = work.path() / "clones.stream";
    const auto send = run_process({"btrfs", "send", "-q", "-p", (a.mountpoint() / v1).string(), "-c",
                                   (a.mountpoint() / home).string(), "-f", stream.string(),
                                   (a.mountpoint() / "src").string()});
    REQUIRE_MESSAGE(send.exit_status == 0, send.err);
    btrfs::set_read_only(Dir::open(a.mountpoint() / home), false);
    const auto home_uuid = btrfs::format_uuid(btrfs::info(Dir::open(a.mountpoint() / home)).uuid);
    // b gets v1 by stream, so it has the parent but not the home.
    const auto v1_stream = work.path() / "v1.stream";
    require_ok(test::strata_on(a.mountpoint(), {"export", v1, "-o", v1_stream.string()}));
    require_ok(test::strata_on(b.mountpoint(), {"import", v1, "--from-stream", v1_stream.string()}));

    const auto before_a = test::list_json(a.mountpoint());
    const auto before_b = test::list_json(b.mountpoint());
    // On the pool that holds the home: found, and refused for what it is.
    auto r = test::strata_on(a.mountpoint(), {"import", v2, "--from-stream", stream.string()});
    test::check_one_line_error(r, 2, "import '" + v2 + "': the stream refers to '" + home +
                                         "', which is not a read-only vendor tree");
    check_unchanged(a.mountpoint(), before_a);
    // Elsewhere: not there at all.
    r = test::strata_on(b.mountpoint(), {"import", v2, "--from-stream", stream.string()});
    test::check_one_line_error(r, 3, "import '" + v2 + "': stream clones data from subvolume " + home_uuid +
                                         ", which is not in the pool");
    check_unchanged(b.mountpoint(), before_b);
}

TEST_CASE("hostile tar archives are refused and nothing is created") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    test::TempDir work;
    const auto mnt = scratch.mountpoint();
    require_ok(test::strata_on(mnt, {"list"}));
    const auto before = test::list_json(mnt);
    const auto make = [&](const std::string& name, const std::string& python_body) {
        const auto archive = work.path() / name;
        const std::string script = "import tarfile, io\n"
                                   "t = tarfile.open('" + archive.string() + "', 'w')\n"
                                   "def add(info, data=b''):\n"
                                   "    info.size = len(data); t.addfile(info, io.BytesIO(data))\n" +
                                   python_body + "t.close()\n";
        REQUIRE(run_process({"python3", "-c", script}).exit_status == 0);
        return archive;
    };
    const auto dotdot = make("dotdot.tar", "add(tarfile.TarInfo('../etc/passwd'), b'x')\n");
    const auto hardlink = make("hardlink.tar",
                               "s = tarfile.TarInfo('evil'); s.type = tarfile.SYMTYPE; s.linkname = '/etc/passwd'; add(s)\n"
                               "h = tarfile.TarInfo('h'); h.type = tarfile.LNKTYPE; h.linkname = '../../etc/passwd'; add(h)\n");
    for (const auto& archive : {dotdot, hardlink}) {
        CAPTURE(archive);
        auto r = test::strata_on(mnt, {"import", v1, "--from-tar", archive.string()});
        CHECK(r.exit_status == 2);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.err.find("tar entry '") != std::string::npos);
        check_unchanged(mnt, before);
    }
}

TEST_CASE("a base never hides a change: same size and second, other content or nanoseconds") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    test::TempDir work;
    const auto mnt = scratch.mountpoint();
    const auto tree = work.path() / "tree";
    fs::create_directories(tree / "dir");
    auto set_mtime = [](const fs::path& p, long ns) {
        const timespec times[2] = {{1700000000, ns}, {1700000000, ns}};
        REQUIRE(::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
    };
    std::ofstream(tree / "dir/clamped") << "aaaa\n";
    std::ofstream(tree / "dir/touched") << "same\n";
    set_mtime(tree / "dir/clamped", 0);
    set_mtime(tree / "dir/touched", 100);
    set_mtime(tree / "dir", 100);
    require_ok(test::strata_on(mnt, {"import", v1, "--from-dir", tree.string()}));
    // As a reproducible build would make them: equal size and mtime, other content; and only
    // the nanoseconds of a time changed.
    std::ofstream(tree / "dir/clamped") << "bbbb\n";
    set_mtime(tree / "dir/clamped", 0);
    set_mtime(tree / "dir/touched", 200);
    set_mtime(tree / "dir", 200);
    auto r = test::strata_on(mnt, {"import", v2, "--from-dir", tree.string(), "--json"});
    require_ok(r);
    CHECK(nlohmann::json::parse(r.out)["base"] == v1);
    check_same_tree(tree, mnt / v2);
    CHECK(read_file(Dir::open(mnt / v2 / "dir"), "clamped") == "bbbb\n");
}

TEST_CASE("--replace swaps an existing tree atomically, without it the name is refused") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    test::TempDir work;
    const auto mnt = scratch.mountpoint();
    std::ofstream(work.path() / "version") << "one\n";
    require_ok(test::strata_on(mnt, {"import", v1, "--from-dir", work.path().string()}));
    std::ofstream(work.path() / "version") << "two\n";
    test::check_one_line_error(test::strata_on(mnt, {"import", v1, "--from-dir", work.path().string()}), 4,
                               "import '" + v1 + "': it exists already");
    CHECK(read_file(Dir::open(mnt / v1), "version") == "one\n");
    require_ok(test::strata_on(mnt, {"import", v1, "--from-dir", work.path().string(), "--replace"}));
    CHECK(read_file(Dir::open(mnt / v1), "version") == "two\n");
    CHECK(btrfs::read_only(Dir::open(mnt / v1)));
    check_unchanged(mnt, test::list_json(mnt));
}

TEST_CASE("an import killed with SIGKILL leaves no named subvolume, the next command cleans up") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch(1ull << 30);
    test::TempDir work;
    const auto mnt = scratch.mountpoint();
    // Enough data that the copy is surely still running when the signal comes.
    REQUIRE(run_process({"dd", "if=/dev/urandom", "of=" + (work.path() / "blob").string(), "bs=1M", "count=400",
                         "status=none"})
                .exit_status == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        const std::string pool = mnt.string(), source = work.path().string(), binary = test::strata_binary();
        ::execl(binary.c_str(), binary.c_str(), "--pool", pool.c_str(), "import", v1.c_str(), "--from-dir",
                source.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    // Wait until the import is staging, then kill it.
    for (int i = 0; i < 200; ++i) {
        const auto staging = mnt / ".strata/staging";
        if (fs::exists(staging) && !Dir::open(staging).entries().empty()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    CHECK(WIFSIGNALED(status));
    // Its cp died with it (PR_SET_PDEATHSIG): nothing keeps writing into staging.
    bool helper_gone = false;
    for (int i = 0; i < 100 && !helper_gone; ++i) {
        helper_gone = run_process({"pgrep", "-f", "cp -a --reflink=auto --no-target-directory -- " + work.path().string()})
                          .exit_status != 0;
        if (!helper_gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(helper_gone);

    CHECK(test::listed_names(mnt).empty());
    // The next mutating command removes the debris and succeeds.
    std::ofstream(work.path() / "small") << "s\n";
    fs::remove(work.path() / "blob");
    require_ok(test::strata_on(mnt, {"import", v1, "--from-dir", work.path().string()}));
    CHECK(test::listed_names(mnt) == std::vector<std::string>{v1});
    check_unchanged(mnt, test::list_json(mnt));
}

TEST_CASE("an import into a full pool from a stream fails cleanly") {
    test::require_root_and_btrfs();
    test::ScratchPool big(1ull << 30), small(200ull << 20);
    test::TempDir work;
    REQUIRE(run_process({"dd", "if=/dev/urandom", "of=" + (work.path() / "blob").string(), "bs=1M", "count=260",
                         "status=none"})
                .exit_status == 0);
    require_ok(test::strata_on(big.mountpoint(), {"import", v1, "--from-dir", work.path().string()}));
    const auto stream = work.path() / "big.stream";
    require_ok(test::strata_on(big.mountpoint(), {"export", v1, "-o", stream.string()}));
    require_ok(test::strata_on(small.mountpoint(), {"list"}));
    const auto before = test::list_json(small.mountpoint());
    auto r = test::strata_on(small.mountpoint(), {"import", v1, "--from-stream", stream.string()});
    CHECK(r.exit_status == 1);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_MESSAGE(r.err.find("No space left on device") != std::string::npos, r.err);
    check_unchanged(small.mountpoint(), before);
}
