// The /etc merge decision as a table: every verdict, every type change, and the rules between
// paths (directories that must stay, added entries without a directory, an unpopulated /etc).
#include "support/errors.hpp"
#include "factory/etc_merge.hpp"

#include <doctest/doctest.h>

#include "base/error.hpp"

using namespace strata;
using namespace strata::factory;

namespace {

using FP = std::optional<Fingerprint>;

Fingerprint file(std::string content, mode_t mode = 0644) {
    Fingerprint f;
    f.type = EntryType::File;
    f.mode = mode;
    f.content = std::move(content);
    return f;
}
Fingerprint dir(mode_t mode = 0755) {
    Fingerprint f;
    f.type = EntryType::Directory;
    f.mode = mode;
    return f;
}
Fingerprint link(std::string target) {
    Fingerprint f;
    f.type = EntryType::Symlink;
    f.mode = 0777;
    f.content = std::move(target);
    return f;
}
Fingerprint owned(Fingerprint f, uid_t uid, gid_t gid) {
    f.uid = uid;
    f.gid = gid;
    return f;
}
Fingerprint with_xattr(Fingerprint f, std::string name, std::string value) {
    f.xattrs[std::move(name)] = std::move(value);
    return f;
}

struct Row {
    const char* what;
    FP a, b, e;
    Verdict verdict;
    Action action;
};

}  // namespace

TEST_CASE("decide gives every verdict for every combination of presence and change") {
    const auto x = file("x"), y = file("y"), z = file("z");
    const Row rows[] = {
        // Nothing but /etc: the admin's own file.
        {"admin created", {}, {}, x, Verdict::AdminChanged, Action::Keep},
        // Absent in /etc: never merged, boot fills it.
        {"added in B, absent in etc", {}, y, {}, Verdict::Added, Action::Add},
        {"removed in B, absent in etc", x, {}, {}, Verdict::Removed, Action::None},
        {"same in A and B, absent in etc", x, x, {}, Verdict::Unchanged, Action::None},
        {"changed in B, absent in etc", x, y, {}, Verdict::VendorChanged, Action::None},
        // Added in B.
        {"added in B, admin has the same", {}, y, y, Verdict::Unchanged, Action::None},
        {"added in B, admin has another", {}, y, z, Verdict::Conflict, Action::WriteNew},
        // Removed in B.
        {"removed in B, admin untouched", x, {}, x, Verdict::Removed, Action::Remove},
        {"removed in B, admin changed", x, {}, z, Verdict::Conflict, Action::Keep},
        // Present everywhere.
        {"nobody changed", x, x, x, Verdict::Unchanged, Action::None},
        {"admin changed", x, x, z, Verdict::AdminChanged, Action::Keep},
        {"vendor changed", x, y, x, Verdict::VendorChanged, Action::Update},
        {"both changed alike", x, y, y, Verdict::Unchanged, Action::None},
        {"both changed differently", x, y, z, Verdict::Conflict, Action::WriteNew},
        // What counts as a change: mode, owner, xattrs (ACLs are xattrs), link target.
        {"vendor changed the mode", x, file("x", 0600), x, Verdict::VendorChanged, Action::Update},
        {"admin changed the mode", x, x, file("x", 0640), Verdict::AdminChanged, Action::Keep},
        {"both changed the mode", x, file("x", 0600), file("x", 0640), Verdict::Conflict, Action::WriteNew},
        {"vendor changed the owner", x, owned(x, 0, 42), x, Verdict::VendorChanged, Action::Update},
        {"admin changed the owner", x, x, owned(x, 1000, 1000), Verdict::AdminChanged, Action::Keep},
        {"vendor added an xattr", x, with_xattr(x, "user.k", "v"), x, Verdict::VendorChanged, Action::Update},
        {"admin set an ACL", x, x, with_xattr(x, "system.posix_acl_access", "acl"), Verdict::AdminChanged,
         Action::Keep},
        {"xattr values differ", x, with_xattr(x, "user.k", "1"), with_xattr(x, "user.k", "2"),
         Verdict::Conflict, Action::WriteNew},
        {"vendor retargeted a link", link("a"), link("b"), link("a"), Verdict::VendorChanged, Action::Update},
        {"admin retargeted a link", link("a"), link("a"), link("c"), Verdict::AdminChanged, Action::Keep},
        {"both retargeted a link", link("a"), link("b"), link("c"), Verdict::Conflict, Action::WriteNew},
        // Directories: only their own attributes; a dir-vs-dir conflict writes nothing beside it.
        {"dir unchanged", dir(), dir(), dir(), Verdict::Unchanged, Action::None},
        {"vendor changed a dir mode", dir(), dir(0700), dir(), Verdict::VendorChanged, Action::Update},
        {"admin changed a dir mode", dir(), dir(), dir(0750), Verdict::AdminChanged, Action::Keep},
        {"both changed a dir", dir(), dir(0700), dir(0750), Verdict::Conflict, Action::Keep},
        {"dir added in B, admin made one too", {}, dir(0700), dir(0750), Verdict::Conflict, Action::Keep},
    };
    for (const auto& r : rows) {
        CAPTURE(r.what);
        const auto d = decide(r.a, r.b, r.e);
        CHECK(to_string(d.verdict) == to_string(r.verdict));
        CHECK(to_string(d.action) == to_string(r.action));
    }
}

TEST_CASE("decide treats every type change as a change") {
    const Fingerprint types[] = {file("x"), dir(), link("x")};
    for (const auto& from : types)
        for (const auto& to : types) {
            if (from.type == to.type) continue;
            CAPTURE(to_string(from.type));
            CAPTURE(to_string(to.type));
            // Vendor changed the type, admin did not touch it: follows the vendor.
            CHECK(decide(from, to, from) == Decision{Verdict::VendorChanged, Action::Update});
            // Admin changed the type: kept.
            CHECK(decide(from, from, to) == Decision{Verdict::AdminChanged, Action::Keep});
            // Both did, to different things: a conflict; B's entry goes beside it unless both
            // are directories.
            for (const auto& other : types) {
                if (other.type == from.type || other.type == to.type) continue;
                const auto d = decide(from, to, other);
                CHECK(d.verdict == Verdict::Conflict);
                CHECK(d.action == Action::WriteNew);
            }
            // Both changed it to the same thing: nothing to do.
            CHECK(decide(from, to, to) == Decision{Verdict::Unchanged, Action::None});
        }
    // A special file (fifo, device) is a type of its own.
    Fingerprint fifo;
    fifo.type = EntryType::Other;
    fifo.content = "4096:0:0";
    CHECK(decide(file("x"), fifo, file("x")) == Decision{Verdict::VendorChanged, Action::Update});
}

TEST_CASE("plan keeps a directory the admin still has files in") {
    const auto x = file("x");
    std::vector<PathState> states = {
        // Vendor removed conf.d; the admin added local.conf in it.
        {"conf.d", dir(), {}, dir()},
        {"conf.d/a.conf", x, {}, x},
        {"conf.d/local.conf", {}, {}, file("mine")},
        // Vendor removed old.d entirely; the admin never touched it.
        {"old.d", dir(), {}, dir()},
        {"old.d/sub", dir(), {}, dir()},
        {"old.d/sub/f", x, {}, x},
        // Vendor turned the directory fmt.d into a file; the admin changed a file in it.
        {"fmt.d", dir(), file("now a file"), dir()},
        {"fmt.d/f", x, {}, file("edited")},
        // Vendor turned a file into a directory with content; the admin did not touch the file.
        {"tree", x, dir(), x},
        {"tree/child", {}, x, {}},
    };
    const auto changes = plan(states, true);
    std::map<std::string, Change> by_path;
    for (const auto& c : changes) by_path[c.path] = c;
    CHECK(by_path["conf.d"] == Change{"conf.d", Verdict::Conflict, Action::Keep});
    CHECK(by_path["conf.d/a.conf"] == Change{"conf.d/a.conf", Verdict::Removed, Action::Remove});
    CHECK(by_path["conf.d/local.conf"] == Change{"conf.d/local.conf", Verdict::AdminChanged, Action::Keep});
    CHECK(by_path["old.d"] == Change{"old.d", Verdict::Removed, Action::Remove});
    CHECK(by_path["old.d/sub"] == Change{"old.d/sub", Verdict::Removed, Action::Remove});
    CHECK(by_path["fmt.d"] == Change{"fmt.d", Verdict::Conflict, Action::WriteNew});
    CHECK(by_path["fmt.d/f"] == Change{"fmt.d/f", Verdict::Conflict, Action::Keep});
    CHECK(by_path["tree"] == Change{"tree", Verdict::VendorChanged, Action::Update});
    CHECK(by_path["tree/child"] == Change{"tree/child", Verdict::Added, Action::Add});
    // Tree order: each directory directly before its contents.
    std::vector<std::string> order;
    for (const auto& c : changes) order.push_back(c.path);
    CHECK(order == std::vector<std::string>{"conf.d", "conf.d/a.conf", "conf.d/local.conf", "fmt.d",
                                            "fmt.d/f", "old.d", "old.d/sub", "old.d/sub/f", "tree",
                                            "tree/child"});
}

TEST_CASE("plan adds only where the directory is in etc and does nothing in an unpopulated etc") {
    const auto x = file("x");
    const std::vector<PathState> states = {
        {"gone.d", dir(), dir(), {}},  // the admin removed it (or it was never there): boot fills it
        {"gone.d/new", {}, x, {}},    {"new.d", {}, dir(), {}},  // a new directory with a file: both added
        {"new.d/f", {}, x, {}},       {"top", {}, x, {}},       {"a.conf", x, file("y"), x},
    };
    auto changes = plan(states, true);
    std::map<std::string, Change> by_path;
    for (const auto& c : changes) by_path[c.path] = c;
    CHECK(by_path["gone.d/new"] == Change{"gone.d/new", Verdict::Added, Action::None});
    CHECK(by_path["new.d"] == Change{"new.d", Verdict::Added, Action::Add});
    CHECK(by_path["new.d/f"] == Change{"new.d/f", Verdict::Added, Action::Add});
    CHECK(by_path["top"] == Change{"top", Verdict::Added, Action::Add});
    CHECK(by_path["a.conf"] == Change{"a.conf", Verdict::VendorChanged, Action::Update});

    changes = plan(states, false);
    for (const auto& c : changes) {
        CAPTURE(c.path);
        CHECK(c.action == Action::None);
    }
    const auto s = summarize(plan(states, true));
    CHECK(s.added == 4);
    CHECK(s.vendor_changed == 1);
    CHECK(s.unchanged == 1);
    CHECK(s.conflicts == 0);
}

TEST_CASE("summarize counts verdicts and lists conflicts") {
    const std::vector<Change> changes = {{"a", Verdict::Conflict, Action::WriteNew},
                                         {"b", Verdict::AdminChanged, Action::Keep},
                                         {"c", Verdict::Removed, Action::Remove},
                                         {"d", Verdict::Conflict, Action::Keep}};
    const auto s = summarize(changes);
    CHECK(s.conflicts == 2);
    CHECK(s.admin_changed == 1);
    CHECK(s.removed == 1);
    CHECK(s.conflict_paths == std::vector<std::string>{"a", "d"});
}

TEST_CASE("etc paths are taken relative to etc and refused outside it") {
    CHECK(etc_relative_path("/etc/shadow") == "shadow");
    CHECK(etc_relative_path("/etc//ssh/./sshd_config") == "ssh/sshd_config");
    CHECK(etc_relative_path("ssh/sshd_config/") == "ssh/sshd_config");
    CHECK(test::error_of([] { etc_relative_path("/tmp/x"); }) == "path '/tmp/x' is not under /etc");
    CHECK(test::error_of([] { etc_relative_path("/etcetera/x"); }) == "path '/etcetera/x' is not under /etc");
    CHECK(test::error_of([] { etc_relative_path("/etc/../root/x"); }) ==
          "path '/etc/../root/x' is not under /etc ('..' is not allowed)");
    CHECK(test::error_of([] { etc_relative_path("ssh/../../x"); }) ==
          "path 'ssh/../../x' is not under /etc ('..' is not allowed)");
    CHECK(test::error_of([] { etc_relative_path("/etc/"); }) ==
          "path '/etc/' names /etc itself, not an entry in it");
    try {
        etc_relative_path("/tmp/x");
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::InvalidInput);
    }
}
