#include "btrfs/subvolume.hpp"
#include "e2e/e2e.hpp"

using namespace strata;

TEST_CASE("inspect shows every field, as a report and as JSON") {
    test::ScratchPool scratch;
    const Dir top = Dir::open(scratch.mountpoint());
    btrfs::create_subvolume(top, "usr:org.example.Demo:x86_64:1.0");
    btrfs::snapshot(top, "usr:org.example.Demo:x86_64:1.0", top, "usr:org.example.Demo:x86_64:1.1",
                    btrfs::SnapshotFlags::ReadOnly);
    const auto parent = btrfs::info(top.open_dir("usr:org.example.Demo:x86_64:1.0"));
    const auto child = btrfs::info(top.open_dir("usr:org.example.Demo:x86_64:1.1"));

    auto r = test::strata_on(scratch.mountpoint(), {"inspect", "usr:org.example.Demo:x86_64:1.1", "--json"});
    REQUIRE_MESSAGE(r.exit_status == 0, r.err);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["name"] == "usr:org.example.Demo:x86_64:1.1");
    CHECK(j["kind"] == "usr");
    CHECK(j["version"] == "1.1");
    CHECK(j["read_only"] == true);
    CHECK(j["subvolume_id"] == child.id);
    CHECK(j["uuid"] == btrfs::format_uuid(child.uuid));
    CHECK(j["parent_uuid"] == btrfs::format_uuid(parent.uuid));
    CHECK(j["received_uuid"].is_null());
    CHECK(j["generation"] == child.generation);
    CHECK(j["created"].get<std::string>().size() == 20);

    auto text = test::strata_on(scratch.mountpoint(), {"inspect", "usr:org.example.Demo:x86_64:1.1"});
    REQUIRE(text.exit_status == 0);
    CHECK(text.out.find("Name: usr:org.example.Demo:x86_64:1.1\n") != std::string::npos);
    CHECK(text.out.find("Parent UUID: " + btrfs::format_uuid(parent.uuid) + "\n") != std::string::npos);
    CHECK(text.out.find("Read-only: yes\n") != std::string::npos);
}

TEST_CASE("inspect of a bad or missing name says why, with the right exit code") {
    test::ScratchPool scratch;
    const auto mnt = scratch.mountpoint();
    test::check_one_line_error(test::strata_on(mnt, {"inspect", "usr:org.example.Demo:x86:1"}), 2,
                               "invalid name 'usr:org.example.Demo:x86:1': field 'arch': unknown architecture 'x86' (known: x86_64, i686, "
                               "aarch64, armv7l, riscv64, loongarch64, ppc64le, ppc64, s390x, mips64el)");
    auto hostile = test::strata_on(mnt, {"inspect", "usr:org.example.Demo:x86_64:1\n\x1b[31m"});
    CHECK(hostile.exit_status == 2);
    CHECK(std::count(hostile.err.begin(), hostile.err.end(), '\n') == 1);  // control chars escaped
    CHECK(hostile.err.find('\x1b') == std::string::npos);
    test::check_one_line_error(test::strata_on(mnt, {"inspect", "usr:org.example.Demo:x86_64:9"}), 3,
                               "inspect 'usr:org.example.Demo:x86_64:9': no such subvolume in pool '" +
                                   mnt.string() + "'");
    // Path tricks never reach outside the pool's top level.
    CHECK(test::strata_on(mnt, {"inspect", "../pool"}).exit_status == 2);
    CHECK(test::strata_on(mnt, {"inspect", ".strata"}).exit_status == 2);
}

TEST_CASE("inspect shows an untyped subvolume as such") {
    test::ScratchPool scratch;
    btrfs::create_subvolume(Dir::open(scratch.mountpoint()), "legacy-@");
    auto r = test::strata_on(scratch.mountpoint(), {"inspect", "legacy-@", "--json"});
    REQUIRE(r.exit_status == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["kind"].is_null());
    CHECK(j["read_only"] == false);
}
