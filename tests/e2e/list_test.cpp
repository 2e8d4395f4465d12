#include "btrfs/subvolume.hpp"
#include "e2e/e2e.hpp"

using namespace strata;

TEST_CASE("list on an empty pool") {
    test::ScratchPool scratch;
    auto r = test::strata_on(scratch.mountpoint(), {"list"});
    CHECK(r.exit_status == 0);
    CHECK(r.out == "No subvolumes.\n");
    CHECK(r.err.empty());
    CHECK(test::list_json(scratch.mountpoint()) == nlohmann::json::array());
}

TEST_CASE("list shows every kind sorted, as a table and as JSON") {
    test::ScratchPool scratch;
    const Dir top = Dir::open(scratch.mountpoint());
    const std::vector<std::string> made = {
        "usr:org.example.Demo:x86_64:1.10", "usr:org.example.Demo:x86_64:1.9",
        "runtime:org.example.Platform:x86_64:23.08", "framework:org.example.Sdk:x86_64:23.08",
        "app:org.example.Editor:org.example.Platform:x86_64:3.1", "root:web:org.example.Demo:x86_64",
        "home:alice:1000:1000", "scratch-untyped"};
    for (const auto& n : made) {
        btrfs::create_subvolume(top, n);
        if (n.rfind("usr:", 0) == 0 || n.rfind("runtime:", 0) == 0 || n.rfind("framework:", 0) == 0 ||
            n.rfind("app:", 0) == 0)
            btrfs::set_read_only(top.open_dir(n), true);
    }

    const auto json = test::list_json(scratch.mountpoint());
    REQUIRE(json.size() == made.size());
    std::vector<std::string> order;
    for (const auto& s : json) order.push_back(s["name"]);
    CHECK(order == std::vector<std::string>{
                       "usr:org.example.Demo:x86_64:1.9", "usr:org.example.Demo:x86_64:1.10",
                       "runtime:org.example.Platform:x86_64:23.08", "framework:org.example.Sdk:x86_64:23.08",
                       "app:org.example.Editor:org.example.Platform:x86_64:3.1",
                       "root:web:org.example.Demo:x86_64", "home:alice:1000:1000", "scratch-untyped"});

    const auto& usr = json[1];
    CHECK(usr["kind"] == "usr");
    CHECK(usr["id"] == "org.example.Demo");
    CHECK(usr["arch"] == "x86_64");
    CHECK(usr["version"] == "1.10");
    CHECK(usr["read_only"] == true);
    CHECK(usr["subvolume_id"].get<uint64_t>() > 5);
    CHECK(usr["uuid"].get<std::string>().size() == 36);
    CHECK(usr["parent_uuid"].is_null());
    CHECK(usr["received_uuid"].is_null());
    const auto& app = json[4];
    CHECK(app["runtime"] == "org.example.Platform");
    const auto& root = json[5];
    CHECK(root["kind"] == "root");
    CHECK(root["id"] == "web");
    CHECK(root["vendor_id"] == "org.example.Demo");
    CHECK(root["read_only"] == false);
    const auto& home = json[6];
    CHECK(home["uid"] == 1000);
    CHECK(home["gid"] == 1000);
    CHECK(json[7]["kind"].is_null());

    auto table = test::strata_on(scratch.mountpoint(), {"list"});
    REQUIRE(table.exit_status == 0);
    std::istringstream lines(table.out);
    std::string header, first;
    std::getline(lines, header);
    std::getline(lines, first);
    CHECK(header.rfind("NAME", 0) == 0);
    for (const char* col : {"KIND", "ID", "ARCH", "VERSION", "RO", "CREATED"})
        CHECK(header.find(col) != std::string::npos);
    CHECK(first.rfind("usr:org.example.Demo:x86_64:1.9 ", 0) == 0);
    CHECK(table.out.find("scratch-untyped") != std::string::npos);
    CHECK(table.out.find("8 subvolumes listed.") != std::string::npos);

    auto only_usr = test::strata_on(scratch.mountpoint(), {"list", "--type", "usr", "--json"});
    REQUIRE(only_usr.exit_status == 0);
    CHECK(nlohmann::json::parse(only_usr.out).size() == 2);
    auto untyped = test::strata_on(scratch.mountpoint(), {"list", "--type", "untyped", "--json"});
    REQUIRE(untyped.exit_status == 0);
    CHECK(nlohmann::json::parse(untyped.out).size() == 1);
    test::check_one_line_error(test::strata_on(scratch.mountpoint(), {"list", "--type", "usrr"}), 2,
                               "list: unknown kind 'usrr' (expected usr, runtime, framework, app, root, home or untyped)");
}

TEST_CASE("a bad --pool is refused with one line and a non-zero exit") {
    test::ScratchPool scratch;
    const auto mnt = scratch.mountpoint();
    btrfs::create_subvolume(Dir::open(mnt), "usr:org.example.Demo:x86_64:1");

    test::check_one_line_error(test::strata_on(scratch.dir(), {"list"}), 1,
                               "open pool '" + scratch.dir().string() + "': not a btrfs filesystem");
    test::check_one_line_error(test::strata_on(mnt / "usr:org.example.Demo:x86_64:1", {"list"}), 1,
                               "open pool '" + (mnt / "usr:org.example.Demo:x86_64:1").string() +
                                   "': not the top-level subvolume (this is subvolume 256; mount the filesystem "
                                   "with subvolid=5)");
    test::check_one_line_error(test::strata_on(mnt / "missing", {"list"}), 3,
                               "open pool '" + (mnt / "missing").string() + "': open directory '" +
                                   (mnt / "missing").string() + "': No such file or directory");

    // A subvolume mounted on its own looks like a filesystem root but is not the top level.
    const auto sub_mnt = scratch.dir() / "sub";
    std::filesystem::create_directory(sub_mnt);
    REQUIRE(run_process({"mount", "-o", "subvol=usr:org.example.Demo:x86_64:1", scratch.device().string(),
                         sub_mnt.string()})
                .exit_status == 0);
    auto r = test::strata_on(sub_mnt, {"list"});
    test::unmount_all_below(sub_mnt);
    test::check_one_line_error(r, 1,
                               "open pool '" + sub_mnt.string() +
                                   "': not the top-level subvolume (this is subvolume 256; mount the filesystem "
                                   "with subvolid=5)");
}

TEST_CASE("usage errors exit 2 with one line") {
    auto r = test::run_strata({"list", "--bogus"});
    CHECK(r.exit_status == 2);
    CHECK(r.out.empty());
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find("--bogus") != std::string::npos);

    auto none = test::run_strata({});
    CHECK(none.exit_status == 2);

    auto help = test::run_strata({"--help"});
    CHECK(help.exit_status == 0);
    for (const char* verb : {"list", "inspect", "pool", "import", "root"})
        CHECK(help.out.find(verb) != std::string::npos);
}
