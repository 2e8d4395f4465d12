// The pure parts of the boot module: entry text, entry file names and boot counting, entry ids,
// loader.conf editing and the EFI string variable format.
#include <doctest/doctest.h>

#include <string>

#include "base/error.hpp"
#include "boot/entry.hpp"
#include "boot/loader.hpp"
#include "boot/names.hpp"

using namespace strata;
using namespace strata::boot;

namespace {

// The message of the strata::Error that fn throws (checking its fault), or "" when it throws none.
template <class Fn>
std::string error_of(Fn&& fn, Fault fault = Fault::InvalidInput) {
    try {
        fn();
    } catch (const Error& e) {
        CHECK(e.fault() == fault);
        return e.what();
    }
    return "";
}

Entry sample() {
    Entry e;
    e.title = "Demo 2.1 (web)";
    e.version = "2.1";
    e.machine_id = "0123456789abcdef0123456789abcdef";
    e.sort_key = "org.example.Demo";
    e.linux = "/org.example.Demo/6.1.0-test/linux";
    e.architecture = "x64";
    e.initrd = {"/org.example.Demo/6.1.0-test/initrd", "/org.example.Demo/6.1.0-test/extra"};
    e.options = {"root=UUID=1234 rootflags=subvol=root:web:org.example.Demo:x86_64",
                 "mount.usrflags=ro,subvol=usr:org.example.Demo:x86_64:2.1", "quiet"};
    return e;
}

}  // namespace

TEST_CASE("render writes the keys in a fixed order and parse reads them back") {
    const Entry e = sample();
    const std::string text = render(e);
    CHECK(text ==
          "title Demo 2.1 (web)\n"
          "version 2.1\n"
          "machine-id 0123456789abcdef0123456789abcdef\n"
          "sort-key org.example.Demo\n"
          "architecture x64\n"
          "linux /org.example.Demo/6.1.0-test/linux\n"
          "initrd /org.example.Demo/6.1.0-test/initrd\n"
          "initrd /org.example.Demo/6.1.0-test/extra\n"
          "options root=UUID=1234 rootflags=subvol=root:web:org.example.Demo:x86_64\n"
          "options mount.usrflags=ro,subvol=usr:org.example.Demo:x86_64:2.1\n"
          "options quiet\n");
    CHECK(parse_entry(text) == e);
}

TEST_CASE("render leaves out empty keys and refuses values that would not read back") {
    Entry e;
    e.linux = "/t/1/linux";
    e.options = {"", "quiet"};
    CHECK(render(e) == "linux /t/1/linux\noptions quiet\n");
    CHECK(parse_entry(render(e)).options == std::vector<std::string>{"quiet"});

    CHECK(error_of([] { render(Entry{}); }).find("no kernel") != std::string::npos);
    e.title = "two\nlines";
    CHECK(error_of([&] { render(e); }).find("'title' contains a line break") != std::string::npos);
    e.title = " padded";
    CHECK(error_of([&] { render(e); }).find("'title' starts or ends with whitespace") != std::string::npos);
    e.title = "ok";
    e.options = {"a\rb"};
    CHECK(error_of([&] { render(e); }).find("'options' contains a line break") != std::string::npos);
}

TEST_CASE("parse ignores comments, blank lines and unknown keys, and takes the last single value") {
    const Entry e = parse_entry(
        "# written by hand\n"
        "\n"
        "   title   First\t\n"
        "title\tSecond title\r\n"
        "devicetree /dtb\n"
        "efi /EFI/x.efi\n"
        "  # indented comment\n"
        "linux /k\n"
        "options a=1   b=2\n"
        "options c");
    CHECK(e.title == "Second title");
    CHECK(e.linux == "/k");
    CHECK(e.options == std::vector<std::string>{"a=1   b=2", "c"});
    CHECK(e.initrd.empty());
    CHECK(parse_entry("") == Entry{});
}

TEST_CASE("parse errors name the line") {
    CHECK(error_of([] { parse_entry("title x\nlinux\n"); }) == "parse boot entry: line 2: 'linux' has no value");
    CHECK(error_of([] { parse_entry("title x\n\n# c\nlin=ux /k\n"); }) ==
          "parse boot entry: line 4: 'lin=ux' is not a key");
    CHECK(error_of([] { parse_entry(std::string("title a\0b\n", 10)); }) ==
          "parse boot entry: line 1: contains a NUL byte");
    CHECK(error_of([] { parse_entry("title ok\ntitle \xff\xfe\n"); }) == "parse boot entry: line 2: not valid UTF-8");
}

TEST_CASE("entry file names: id, counter and state") {
    struct Case {
        const char* file;
        bool valid;
        const char* id;
        std::optional<unsigned> left, done;
        BootState state;
    };
    const Case cases[] = {
        {"a.conf", true, "a", {}, {}, BootState::Good},
        {"a+3.conf", true, "a", 3u, 0u, BootState::Indeterminate},
        {"a+2-1.conf", true, "a", 2u, 1u, BootState::Indeterminate},
        {"a+0-3.conf", true, "a", 0u, 3u, BootState::Bad},
        {"a+0.conf", true, "a", 0u, 0u, BootState::Bad},
        {"a+b+3.conf", true, "a+b", 3u, 0u, BootState::Indeterminate},
        {"a+b.conf", true, "a+b", {}, {}, BootState::Good},
        {"a+.conf", true, "a+", {}, {}, BootState::Good},          // no digits: part of the id (as bootctl)
        {"a+3-.conf", true, "a+3-", {}, {}, BootState::Good},      // "-" without digits: no counter
        {"a+1-2-3.conf", true, "a+1-2-3", {}, {}, BootState::Good},
        {"y+03.conf", true, "y", 3u, 0u, BootState::Indeterminate},
        {"org.example.Demo-web-2.1+3.conf", true, "org.example.Demo-web-2.1", 3u, 0u, BootState::Indeterminate},
        {"+3.conf", false, "", {}, {}, BootState::Good},           // empty id
        {".conf", false, "", {}, {}, BootState::Good},
        {"a.conf.bak", false, "", {}, {}, BootState::Good},
        {"a", false, "", {}, {}, BootState::Good},
        {"a.CONF", false, "", {}, {}, BootState::Good},
        {"a b.conf", false, "", {}, {}, BootState::Good},
        {"a:b.conf", false, "", {}, {}, BootState::Good},
        {".#a.conf.1234", false, "", {}, {}, BootState::Good},     // AtomicFile temporaries
        {".hidden.conf", false, "", {}, {}, BootState::Good},
        {"auto-windows.conf", false, "", {}, {}, BootState::Good}, // sd-boot skips these files
        {"w+99999999999.conf", false, "", {}, {}, BootState::Good},  // counter out of range
    };
    for (const auto& c : cases) {
        CAPTURE(c.file);
        const auto parsed = parse_entry_file_name(c.file);
        REQUIRE(parsed.has_value() == c.valid);
        if (!parsed) continue;
        CHECK(parsed->id == c.id);
        CHECK(parsed->tries_left == c.left);
        CHECK(parsed->tries_done == c.done);
        CHECK(parsed->state() == c.state);
    }
}

TEST_CASE("entry_file_name is the inverse of parse_entry_file_name") {
    CHECK(entry_file_name("a", std::nullopt) == "a.conf");
    CHECK(entry_file_name("a", 3u) == "a+3.conf");
    CHECK(entry_file_name("a", 2u, 1u) == "a+2-1.conf");
    CHECK(entry_file_name("a", std::nullopt, 1u) == "a.conf");
    CHECK(entry_file_name("a+b", 3u) == "a+b+3.conf");
    for (const char* id : {"a", "a+b", "a+", "x+3-", "org.example.Demo-web-2.1"})
        for (const auto left : {std::optional<unsigned>{}, std::optional<unsigned>{0u}, std::optional<unsigned>{5u}}) {
            const auto parsed = parse_entry_file_name(entry_file_name(id, left, left ? std::optional<unsigned>{1u} : std::nullopt));
            REQUIRE(parsed);
            CHECK(parsed->id == id);
            CHECK(parsed->tries_left == left);
        }
    CHECK(error_of([] { entry_file_name("a+3", std::nullopt); }).find("not a valid id") != std::string::npos);
    CHECK(error_of([] { entry_file_name("", 3u); }).find("not a valid id") != std::string::npos);
    CHECK(error_of([] { entry_file_name("a", 3000000000u); }).find("boot counter larger") != std::string::npos);
}

TEST_CASE("valid_entry_id") {
    for (const char* id : {"a", "A-z_0.9", "a+b", "a+", "x+3-", "org.example.Demo-web-2.1"}) {
        CAPTURE(id);
        CHECK(valid_entry_id(id));
    }
    for (const char* id : {"", "a+3", "a+2-1", "a+0", "a b", "a/b", "a:b", ".a", "auto-x", "ä", "a\n"}) {
        CAPTURE(id);
        CHECK_FALSE(valid_entry_id(id));
    }
    CHECK(valid_entry_id(std::string(max_entry_id_length, 'x')));
    CHECK_FALSE(valid_entry_id(std::string(max_entry_id_length + 1, 'x')));
    CHECK(entry_file_name(std::string(max_entry_id_length, 'x'), 2147483647u, 2147483647u).size() == 255);
}

TEST_CASE("make_entry_id sanitizes into an id that never looks like a counter") {
    CHECK(make_entry_id({"root:web:org.example.Demo:x86_64"}) == "root_web_org.example.Demo_x86_64");
    CHECK(make_entry_id({"org.example.Demo", "web", "2.1", "x86_64"}) == "org.example.Demo+web+2.1+x86_64");
    CHECK(make_entry_id({"root:web:org.example.Demo:x86_64", "usr:org.example.Demo:x86_64:1.0^post+3"}) ==
          "root_web_org.example.Demo_x86_64+usr_org.example.Demo_x86_64_1.0_post_3");
    CHECK(make_entry_id({"a/b", "c d", "e+3"}) == "a_b+c_d+e_3");
    CHECK(make_entry_id({"x", "3"}) == "x-3");  // "x+3" would be id "x" with 3 tries
    CHECK(make_entry_id({"x", "2-1"}) == "x-2-1");
    CHECK(make_entry_id({".hidden"}) == "_hidden");
    CHECK(make_entry_id({"auto-x", "y"}) == "_auto-x+y");
    CHECK(make_entry_id({}) == "_");
    CHECK(make_entry_id({"\xc3\xa4"}) == "__");
    for (const auto& id : {make_entry_id({"x+3"}), make_entry_id({"x", "+2-1"}), make_entry_id({"a", "", "b"}),
                          make_entry_id({"a", "7"}), make_entry_id({"a", "7-7"})}) {
        CAPTURE(id);
        CHECK(valid_entry_id(id));
        CHECK(parse_entry_file_name(entry_file_name(id, std::nullopt))->tries_left == std::nullopt);
    }
    // Too long: cut, with a hash of the whole so that different inputs stay different.
    const std::string a = make_entry_id({std::string(300, 'a'), "1"}), b = make_entry_id({std::string(300, 'a'), "2"});
    CHECK(a.size() == max_entry_id_length);
    CHECK(valid_entry_id(a));
    CHECK(a != b);
    CHECK(a == make_entry_id({std::string(300, 'a'), "1"}));
}

TEST_CASE("boot states round-trip through one string table") {
    for (const auto s : {BootState::Good, BootState::Indeterminate, BootState::Bad})
        CHECK(boot_state_from_string(to_string(s)) == s);
    CHECK(to_string(BootState::Indeterminate) == "indeterminate");
    CHECK_FALSE(boot_state_from_string("dirty"));
    CHECK(to_string(OneShotMethod::EfiVariable) == "efi-variable");
}

TEST_CASE("efi_architecture maps kernel names to the EFI vocabulary") {
    CHECK(efi_architecture("x86_64") == "x64");
    CHECK(efi_architecture("aarch64") == "aa64");
    CHECK(efi_architecture("i686") == "ia32");
    CHECK(efi_architecture("armv7l") == "arm");
    CHECK(efi_architecture("riscv64") == "riscv64");
    CHECK(efi_architecture("s390x").empty());
}

TEST_CASE("loader.conf: the default line is replaced, everything else kept") {
    CHECK(with_default_line("", "a.conf") == "default a.conf\n");
    CHECK(with_default_line("timeout 3", "a.conf") == "timeout 3\ndefault a.conf\n");
    CHECK(with_default_line("# my loader\ntimeout 3\n  default old*.conf  \neditor no\n#default x\ndefault later\n",
                            "a.conf") == "# my loader\ntimeout 3\ndefault a.conf\neditor no\n#default x\n");
    CHECK(with_default_line("default\told\r\nbeep yes\r\n", "a.conf") == "default a.conf\r\nbeep yes\r\n");
    CHECK(with_default_line("defaults x\n", "a.conf") == "defaults x\ndefault a.conf\n");

    CHECK(default_line("timeout 3\n") == std::nullopt);
    CHECK(default_line("default a.conf\ntimeout 3\n  default   b*.conf \n") == "b*.conf");
    CHECK(default_line("#default a.conf\n") == std::nullopt);
    CHECK(default_line(with_default_line("# c\ndefault x\n", "y.conf")) == "y.conf");
}

TEST_CASE("EFI string variables: attributes, UTF-16LE and a NUL") {
    const std::string v = encode_efi_string("ab.conf");
    CHECK(v == std::string("\x07\0\0\0a\0b\0.\0c\0o\0n\0f\0\0\0", 4 + 16));
    CHECK(decode_efi_string(v) == "ab.conf");
    CHECK(decode_efi_string(std::string("\x07\0\0\0x\0", 6)) == "x");  // no terminator
    CHECK(decode_efi_string(std::string("\x07\0\0\0\xe4\0\0\0", 8)) == "\xc3\xa4");
    CHECK(error_of([] { decode_efi_string("abc"); }).find("not a UTF-16 string") != std::string::npos);
    CHECK(error_of([] { decode_efi_string(std::string("\x07\0\0\0x", 5)); }).find("not a UTF-16") != std::string::npos);
    CHECK(error_of([] { encode_efi_string("\xc3\xa4"); }).find("only ASCII") != std::string::npos);
}

namespace {
// An entry file as list_entries would return it.
EntryFile entry_file(const std::string& file_name, const std::string& version, const std::string& sort_key = "org.x",
                     const std::string& machine_id = "") {
    EntryFile f;
    f.file_name = file_name;
    f.name = *parse_entry_file_name(file_name);
    f.entry.version = version;
    f.entry.sort_key = sort_key;
    f.entry.machine_id = machine_id;
    f.entry.linux = "/x/linux";
    return f;
}
}  // namespace

TEST_CASE("entry patterns: ids with '*' for whole fields") {
    CHECK(valid_entry_pattern("org.x+web+*+x86_64"));
    CHECK(valid_entry_pattern("org.x+web+2+x86_64"));
    CHECK_FALSE(valid_entry_pattern("*"));
    CHECK_FALSE(valid_entry_pattern("a**b"));
    CHECK_FALSE(valid_entry_pattern("a+*"));  // reads as a counter once '*' is digits
    CHECK_FALSE(valid_entry_pattern("a/*+b"));
    CHECK(loader_glob("org.x+web+*+x86_64") == "org.x+web+*+x86_64[.+]*");
}

TEST_CASE("select_entry picks as systemd-boot 252 does: newest first, entries without tries left last") {
    const auto v1 = entry_file("org.x+web+1+x86_64.conf", "1");
    const auto v2 = entry_file("org.x+web+2+x86_64+2-1.conf", "2");
    const auto v3_bad = entry_file("org.x+web+3+x86_64+0-1.conf", "3");
    const auto v10 = entry_file("org.x+web+10+x86_64+3.conf", "10");
    const auto other = entry_file("org.x+web-2+9+x86_64.conf", "9");  // root "web-2": not root web's
    const std::string root_glob = "org.x+web+*+x86_64[.+]*";

    CHECK(select_entry({v1, v2, v3_bad}, std::nullopt, root_glob) == "org.x+web+2+x86_64");
    CHECK(select_entry({v3_bad, v1, v10, v2}, std::nullopt, root_glob) == "org.x+web+10+x86_64");  // 10 > 3 > 2
    CHECK(select_entry({v1, other}, std::nullopt, root_glob) == "org.x+web+1+x86_64");
    // An exact default holds even when its entry has no tries left (the loader does the same).
    CHECK(select_entry({v1, v3_bad}, std::nullopt, "org.x+web+3+x86_64[.+]*") == "org.x+web+3+x86_64");
    // Matching is case-insensitive, the one-shot wins, and without a match the first entry boots.
    CHECK(select_entry({v1, v2}, std::nullopt, "ORG.X+WEB+1+X86_64[.+]*") == "org.x+web+1+x86_64");
    CHECK(select_entry({v1, v2}, std::string("org.x+web+1+x86_64[.+]*"), root_glob) == "org.x+web+1+x86_64");
    CHECK(select_entry({v1, v3_bad}, std::nullopt, "nothing*") == "org.x+web+1+x86_64");
    CHECK(select_entry({v3_bad}, std::nullopt, std::nullopt) == "org.x+web+3+x86_64");
    CHECK_FALSE(select_entry({}, std::nullopt, root_glob));

    // Sort-key before machine-id before version; entries with a sort-key before those without.
    const auto a = entry_file("a+1+x86_64.conf", "1", "a"), b = entry_file("b+9+x86_64.conf", "9", "b");
    const auto none = entry_file("c+9+x86_64.conf", "9", "");
    CHECK(loader_before(a, b));
    CHECK(loader_before(b, none));
    CHECK(loader_before(entry_file("x.conf", "1", "k", "0a"), entry_file("y.conf", "9", "k", "0b")));
    CHECK_FALSE(loader_before(v3_bad, v1));
}
