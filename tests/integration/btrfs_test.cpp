#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <algorithm>
#include <cstring>
#include <unistd.h>

#include "support/errors.hpp"
#include "base/error.hpp"
#include "base/process.hpp"
#include "btrfs/subvolume.hpp"
#include "support/scratch_pool.hpp"

using namespace strata;

namespace {

void write_text(const Dir& dir, const char* name, const char* text) {
    Fd fd = dir.open_file(name, O_WRONLY | O_CREAT | O_TRUNC);
    REQUIRE(::write(fd.get(), text, std::strlen(text)) == static_cast<ssize_t>(std::strlen(text)));
}

using test::error_of;

}  // namespace

TEST_CASE("create, snapshot, read-only flag, info and delete on a real filesystem") {
    test::ScratchPool scratch;
    const Dir top = Dir::open(scratch.mountpoint());
    CHECK(btrfs::is_btrfs(top));
    CHECK(btrfs::subvolume_id(top) == btrfs::top_level_id);

    btrfs::create_subvolume(top, "a");
    const Dir a = top.open_dir("a");
    CHECK(btrfs::is_subvolume(a));
    write_text(a, "file", "hello");
    const auto info_a = btrfs::info(a);
    CHECK(info_a.id > btrfs::top_level_id);
    CHECK(info_a.parent_id == btrfs::top_level_id);
    CHECK_FALSE(info_a.read_only());
    CHECK(btrfs::is_null(info_a.parent_uuid));
    CHECK(btrfs::is_null(info_a.received_uuid));
    CHECK(info_a.otime.tv_sec > 0);

    btrfs::snapshot(top, "a", top, "a-ro", btrfs::SnapshotFlags::ReadOnly);
    const Dir ro = top.open_dir("a-ro");
    CHECK(btrfs::read_only(ro));
    const auto info_ro = btrfs::info(ro);
    CHECK(info_ro.read_only());
    CHECK(info_ro.parent_uuid == info_a.uuid);
    CHECK(read_file(ro, "file") == "hello");
    CHECK(::openat(ro.fd(), "new", O_WRONLY | O_CREAT | O_CLOEXEC, 0644) < 0);
    CHECK(errno == EROFS);

    btrfs::snapshot(top, "a-ro", top, "a-rw");
    const Dir rw = top.open_dir("a-rw");
    CHECK_FALSE(btrfs::read_only(rw));
    write_text(rw, "file", "changed");
    CHECK(read_file(a, "file") == "hello");

    btrfs::set_read_only(rw, true);
    CHECK(btrfs::read_only(rw));
    btrfs::set_read_only(rw, false);
    CHECK_FALSE(btrfs::read_only(rw));

    CHECK(btrfs::info(top, info_ro.id).uuid == info_ro.uuid);

    btrfs::delete_subvolume(top, "a-rw");
    CHECK_FALSE(top.stat("a-rw"));
    btrfs::delete_subvolume(top, "a-ro");  // read-only subvolumes are deletable too
    CHECK_FALSE(top.stat("a-ro"));
}

TEST_CASE("children lists nested subvolumes with paths relative to the iterated one") {
    test::ScratchPool scratch;
    const Dir top = Dir::open(scratch.mountpoint());
    btrfs::create_subvolume(top, "outer");
    const Dir outer = top.open_dir("outer");
    outer.make_dir("d");
    btrfs::create_subvolume(outer.open_dir("d"), "inner");
    btrfs::create_subvolume(top, "second");

    std::vector<std::string> paths;
    for (const auto& c : btrfs::children(top)) paths.push_back(c.path);
    std::sort(paths.begin(), paths.end());
    CHECK(paths == std::vector<std::string>{"outer", "outer/d/inner", "second"});

    const auto nested = btrfs::children(outer);
    REQUIRE(nested.size() == 1);
    CHECK(nested[0].path == "d/inner");

    // Recursive delete takes the nested subvolume with it.
    btrfs::delete_subvolume(top, "outer");
    CHECK_FALSE(top.stat("outer"));
}

TEST_CASE("errors name the call, the path and errno") {
    test::ScratchPool scratch;
    const Dir top = Dir::open(scratch.mountpoint());
    btrfs::create_subvolume(top, "x");

    const auto exists = error_of([&] { btrfs::create_subvolume(top, "x"); });
    CHECK(exists == "create subvolume '" + (scratch.mountpoint() / "x").string() + "': File exists");

    top.make_dir("plain");
    const auto not_subvol = error_of([&] { btrfs::delete_subvolume(top, "plain"); });
    CHECK(not_subvol.find("delete subvolume '" + (scratch.mountpoint() / "plain").string() + "'") == 0);

    const auto missing = error_of([&] { btrfs::snapshot(top, "nope", top, "y"); });
    CHECK(missing == "open directory '" + (scratch.mountpoint() / "nope").string() + "': No such file or directory");
    CHECK_FALSE(top.stat("y"));

    const Dir tmp = Dir::open(scratch.dir());
    CHECK_FALSE((btrfs::is_btrfs(tmp) && btrfs::is_subvolume(tmp)));
}

TEST_CASE("same_extents: a snapshot's or a reflink's untouched file, not a copy, a changed or an unwritten one") {
    test::ScratchPool scratch;
    const Dir top = Dir::open(scratch.mountpoint());
    btrfs::create_subvolume(top, "a");
    const Dir a = top.open_dir("a");
    std::string data(3u << 20, '\0');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
    write_file_atomic(a, "kernel", data);
    {
        const Fd f = a.open_file("kernel", O_RDONLY);
        REQUIRE(::fsync(f.get()) == 0);  // allocated, not delayed
    }
    btrfs::snapshot(top, "a", top, "b");
    const Dir b = top.open_dir("b");
    const auto open = [](const Dir& d, const char* name) { return d.open_file(name, O_RDONLY); };
    CHECK(btrfs::same_extents(open(a, "kernel").get(), open(b, "kernel").get(), "kernel"));

    // A copy of the bytes lies elsewhere: equal content is not shown by the map.
    write_file_atomic(b, "copy", data);
    {
        const Fd f = b.open_file("copy", O_RDONLY);
        REQUIRE(::fsync(f.get()) == 0);
    }
    CHECK_FALSE(btrfs::same_extents(open(a, "kernel").get(), open(b, "copy").get(), "copy"));
    // A reflink shares the extents.
    {
        const Fd src = open(a, "kernel");
        const Fd dst = b.open_file("reflink", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        REQUIRE(::ioctl(dst.get(), FICLONE, src.get()) == 0);
    }
    CHECK(btrfs::same_extents(open(a, "kernel").get(), open(b, "reflink").get(), "reflink"));

    // One byte changed in the snapshot's file: copied on write, no longer the same.
    {
        const Fd f = b.open_file("kernel", O_WRONLY);
        REQUIRE(::pwrite(f.get(), "x", 1, 1u << 20) == 1);
        // Not yet written out: the map is taken after writing it out, never from the old extent.
        CHECK_FALSE(btrfs::same_extents(open(a, "kernel").get(), f.get(), "kernel"));
    }
    CHECK_FALSE(btrfs::same_extents(open(a, "kernel").get(), open(b, "kernel").get(), "kernel"));
    // Another size, or not a regular file.
    write_file_atomic(b, "short", data.substr(0, 4096));
    CHECK_FALSE(btrfs::same_extents(open(a, "kernel").get(), open(b, "short").get(), "short"));
    CHECK_FALSE(btrfs::same_extents(open(a, "kernel").get(), a.fd(), "a"));
}

TEST_CASE("count_received_from counts the subvolumes received from one, wherever they are") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    const Dir top = Dir::open(scratch.mountpoint());
    btrfs::create_subvolume(top, "sent");
    write_text(top.open_dir("sent"), "file", "bytes");
    btrfs::set_read_only(top.open_dir("sent"), true);
    const auto uuid = btrfs::info(top.open_dir("sent")).uuid;
    CHECK(btrfs::count_received_from(top, uuid) == 0);
    const auto stream = scratch.dir() / "sent.stream";
    REQUIRE(run_process({"btrfs", "send", "-q", "-f", stream.string(), (scratch.mountpoint() / "sent").string()}).exit_status == 0);
    // Received once, then again deeper down: btrfs receive would find either.
    for (const char* into : {"first", "nested/deeper"}) {
        std::filesystem::create_directories(scratch.mountpoint() / into);
        REQUIRE(run_process({"btrfs", "receive", "-q", "-f", stream.string(), (scratch.mountpoint() / into).string()})
                    .exit_status == 0);
        CHECK(btrfs::count_received_from(top, uuid) == (std::string(into) == "first" ? 1u : 2u));
    }
    CHECK(btrfs::count_received_from(top.open_dir("nested"), uuid) == 2);
    CHECK(btrfs::count_received_from(top, btrfs::info(top.open_dir("nested/deeper/sent")).uuid) == 0);
}
