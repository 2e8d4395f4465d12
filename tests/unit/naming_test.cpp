#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "naming/arch.hpp"
#include "naming/name.hpp"

using namespace strata;
using namespace strata::naming;

namespace {

std::string parse_error(const std::string& text) {
    try {
        Name::parse(text);
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::InvalidInput);
        return e.what();
    }
    return "(parsed)";
}

}  // namespace

TEST_CASE("every kind parses and formats back to the same text") {
    struct Case {
        std::string text;
        Kind kind;
        std::string id, arch, version, runtime, vendor;
    };
    const Case cases[] = {
        {"usr:org.example.Demo:x86_64:1.0", Kind::Usr, "org.example.Demo", "x86_64", "1.0", "", "org.example.Demo"},
        {"runtime:org.gnome.Platform:aarch64:45~rc1", Kind::Runtime, "org.gnome.Platform", "aarch64", "45~rc1", "", ""},
        {"framework:org.gnome.Sdk:x86_64:45", Kind::Framework, "org.gnome.Sdk", "x86_64", "45", "", ""},
        {"app:org.example.Editor:org.gnome.Platform:riscv64:3.2^git1", Kind::App, "org.example.Editor", "riscv64",
         "3.2^git1", "org.gnome.Platform", ""},
        {"root:web-1:org.example.Demo:x86_64", Kind::Root, "web-1", "x86_64", "", "", "org.example.Demo"},
        {"home:alice:1000:1000", Kind::Home, "alice", "", "", "", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        const auto n = Name::parse(c.text);
        CHECK(n.str() == c.text);
        CHECK(n.kind() == c.kind);
        CHECK(n.id() == c.id);
        CHECK(n.arch() == c.arch);
        CHECK(n.version() == c.version);
        CHECK(n.runtime_id() == c.runtime);
        CHECK(n.vendor_id() == c.vendor);
        CHECK(Name::parse(n.str()) == n);
        CHECK(kind_from_string(kind_to_string(c.kind)) == c.kind);
    }
    const auto home = Name::parse("home:alice:1000:100");
    CHECK(home.uid() == 1000u);
    CHECK(home.gid() == 100u);
    CHECK_FALSE(Name::parse("usr:org.example.Demo:x86_64:1").uid());
}

TEST_CASE("factories validate exactly as parse does") {
    CHECK(Name::usr("org.example.Demo", "x86_64", "2").str() == "usr:org.example.Demo:x86_64:2");
    CHECK(Name::runtime("org.example.Rt", "i686", "1").str() == "runtime:org.example.Rt:i686:1");
    CHECK(Name::framework("org.example.Sdk", "i686", "1").str() == "framework:org.example.Sdk:i686:1");
    CHECK(Name::app("org.example.App", "org.example.Rt", "i686", "1").str() == "app:org.example.App:org.example.Rt:i686:1");
    CHECK(Name::root("main", "org.example.Demo", "x86_64").str() == "root:main:org.example.Demo:x86_64");
    CHECK(Name::home("bob", 1001, 1001).str() == "home:bob:1001:1001");
    CHECK(Name::home("bob", 0, 4294967294u).gid() == 4294967294u);
    CHECK_THROWS_AS(Name::root("main", "org.example.Demo", "x86"), Error);
    CHECK_THROWS_AS(Name::usr("org.example.Demo", "x86_64", "1:2"), Error);
}

TEST_CASE("hostile and malformed names are refused, saying which field and why") {
    struct Case {
        std::string text, message;
    };
    const std::string p = "invalid name '";
    const Case cases[] = {
        {"", "invalid name: the name is empty"},
        {"usr:org.example.Demo:x86:1", p + "usr:org.example.Demo:x86:1': field 'arch': unknown architecture 'x86' (known: "
                                           "x86_64, i686, aarch64, armv7l, riscv64, loongarch64, ppc64le, ppc64, s390x, mips64el)"},
        {"usr:org.example.Demo:x86_64", p + "usr:org.example.Demo:x86_64': expected 4 fields (usr:<vendor-id>:<arch>:<version>), got 3"},
        {"usr:org.example.Demo:x86_64:1:2", p + "usr:org.example.Demo:x86_64:1:2': expected 4 fields (usr:<vendor-id>:<arch>:<version>), got 5"},
        {"usr", p + "usr': expected 4 fields (usr:<vendor-id>:<arch>:<version>), got 1"},
        {"img:org.example.Demo:x86_64:1", p + "img:org.example.Demo:x86_64:1': unknown kind 'img' (expected usr, runtime, framework, app, root or home)"},
        {"USR:org.example.Demo:x86_64:1", p + "USR:org.example.Demo:x86_64:1': unknown kind 'USR' (expected usr, runtime, framework, app, root or home)"},
        {"usr::x86_64:1", p + "usr::x86_64:1': field 'vendor-id': is empty"},
        {"usr:org.example.Demo:x86_64:", p + "usr:org.example.Demo:x86_64:': field 'version': is empty"},
        {"usr:org/example:x86_64:1", p + "usr:org/example:x86_64:1': field 'vendor-id': contains '/'"},
        {"usr:org.example.Demo:x86_64:1,subvol=x", p + "usr:org.example.Demo:x86_64:1,subvol=x': field 'version': contains ',' (it would split mount options)"},
        {"usr:org..example:x86_64:1", p + "usr:org..example:x86_64:1': field 'vendor-id': contains '..'"},
        {"root:..:org.example.Demo:x86_64", p + "root:..:org.example.Demo:x86_64': field 'name': contains '..'"},
        {"usr:org.example.Demo:x86_64:1 0", p + "usr:org.example.Demo:x86_64:1 0': field 'version': contains whitespace or a control character"},
        {"usr:org.example.Demo:x86_64:1\t", p + "usr:org.example.Demo:x86_64:1\\t': field 'version': contains whitespace or a control character"},
        {"root:a\nb:org.example.Demo:x86_64", p + "root:a\\nb:org.example.Demo:x86_64': field 'name': contains whitespace or a control character"},
        {"root:a\x1b[31m:org.example.Demo:x86_64", p + "root:a\\x1b[31m:org.example.Demo:x86_64': field 'name': contains whitespace or a control character"},
        {std::string("usr:org.example.Demo:x86_64:1\0x", 31), p + "usr:org.example.Demo:x86_64:1\\x00x': field 'version': contains whitespace or a control character"},
        {"root:caf\xff:org.example.Demo:x86_64", p + "root:caf\\xff:org.example.Demo:x86_64': not valid UTF-8"},
        {"usr:Demo:x86_64:1", p + "usr:Demo:x86_64:1': field 'vendor-id': 'Demo' is not a reverse-domain id like org.example.Demo"},
        {"usr:org.-x:x86_64:1", p + "usr:org.-x:x86_64:1': field 'vendor-id': 'org.-x' is not a reverse-domain id like org.example.Demo"},
        {"usr:org.example.:x86_64:1", p + "usr:org.example.:x86_64:1': field 'vendor-id': 'org.example.' is not a reverse-domain id like org.example.Demo"},
        {"usr:org.example.Demo:x86_64:-1", p + "usr:org.example.Demo:x86_64:-1': field 'version': '-1' is not a version: use letters, digits and . ~ ^ _ + -, starting with a letter or digit"},
        {"usr:org.example.Demo:x86_64:1=2", p + "usr:org.example.Demo:x86_64:1=2': field 'version': '1=2' is not a version: use letters, digits and . ~ ^ _ + -, starting with a letter or digit"},
        {"root:-rf:org.example.Demo:x86_64", p + "root:-rf:org.example.Demo:x86_64': field 'name': '-rf' may hold only letters, digits, '_', '.' and '-', and must not start with '-' or '.'"},
        {"root:.hidden:org.example.Demo:x86_64", p + "root:.hidden:org.example.Demo:x86_64': field 'name': '.hidden' may hold only letters, digits, '_', '.' and '-', and must not start with '-' or '.'"},
        {"root:caf\xc3\xa9:org.example.Demo:x86_64", p + "root:caf\xc3\xa9:org.example.Demo:x86_64': field 'name': 'caf\xc3\xa9' may hold only letters, digits, '_', '.' and '-', and must not start with '-' or '.'"},
        {"home:alice:abc:100", p + "home:alice:abc:100': field 'uid': 'abc' is not a decimal number from 0 to 4294967294 without leading zeros"},
        {"home:alice:100:-1", p + "home:alice:100:-1': field 'gid': '-1' is not a decimal number from 0 to 4294967294 without leading zeros"},
        {"home:alice:4294967295:1", p + "home:alice:4294967295:1': field 'uid': '4294967295' is not a decimal number from 0 to 4294967294 without leading zeros"},
        {"home:alice:99999999999:1", p + "home:alice:99999999999:1': field 'uid': '99999999999' is not a decimal number from 0 to 4294967294 without leading zeros"},
        {"home:alice:0100:1", p + "home:alice:0100:1': field 'uid': '0100' is not a decimal number from 0 to 4294967294 without leading zeros"},
        {"home:alice:1e3:1", p + "home:alice:1e3:1': field 'uid': '1e3' is not a decimal number from 0 to 4294967294 without leading zeros"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CHECK(parse_error(c.text) == c.message);
        CHECK_FALSE(Name::try_parse(c.text));
    }
}

TEST_CASE("names longer than a btrfs entry are refused, 255 bytes are fine") {
    const std::string prefix = "usr:org.example.Demo:x86_64:";
    const std::string fits = prefix + std::string(max_name_bytes - prefix.size(), '1');
    CHECK(Name::parse(fits).str().size() == 255);
    const std::string too_long = fits + "1";
    CHECK(parse_error(too_long).ends_with("': longer than 255 bytes (256)"));
}

TEST_CASE("list order: kind, id, arch, then version order") {
    std::vector<Name> names;
    for (const char* s : {"home:bob:1001:1001", "root:a:org.example.Demo:x86_64", "usr:org.example.Demo:x86_64:1.10",
                          "usr:org.example.Demo:x86_64:1.9", "usr:org.example.Demo:aarch64:2",
                          "usr:org.example.Demo:x86_64:1.10~rc1", "runtime:org.example.Rt:x86_64:1",
                          "usr:com.example.Os:x86_64:9", "home:alice:1000:1000"})
        names.push_back(Name::parse(s));
    std::sort(names.begin(), names.end(), list_order);
    std::vector<std::string> got;
    for (const auto& n : names) got.push_back(n.str());
    CHECK(got == std::vector<std::string>{
                     "usr:com.example.Os:x86_64:9", "usr:org.example.Demo:aarch64:2", "usr:org.example.Demo:x86_64:1.9",
                     "usr:org.example.Demo:x86_64:1.10~rc1", "usr:org.example.Demo:x86_64:1.10",
                     "runtime:org.example.Rt:x86_64:1", "root:a:org.example.Demo:x86_64", "home:alice:1000:1000",
                     "home:bob:1001:1001"});
}

TEST_CASE("newest per series picks the newest version of each (kind, id, arch)") {
    std::vector<Name> names;
    for (const char* s : {"usr:org.example.Demo:x86_64:1.9", "usr:org.example.Demo:x86_64:1.10",
                          "usr:org.example.Demo:x86_64:1.11~rc1", "usr:org.example.Demo:aarch64:1",
                          "runtime:org.example.Demo:x86_64:0.1", "app:org.example.A:org.example.Rt:x86_64:2",
                          "app:org.example.A:org.example.Rt2:x86_64:1", "root:a:org.example.Demo:x86_64"})
        names.push_back(Name::parse(s));
    std::vector<std::string> got;
    for (const auto& n : newest_per_series(names)) got.push_back(n.str());
    CHECK(got == std::vector<std::string>{"usr:org.example.Demo:aarch64:1", "usr:org.example.Demo:x86_64:1.11~rc1",
                                          "runtime:org.example.Demo:x86_64:0.1",
                                          "app:org.example.A:org.example.Rt:x86_64:2",
                                          "app:org.example.A:org.example.Rt2:x86_64:1"});
}

TEST_CASE("architectures") {
    CHECK(find_arch("x86_64")->has_lib64);
    CHECK(find_arch("x86_64")->efi_name == "x64");
    CHECK_FALSE(find_arch("i686")->has_lib64);
    CHECK_FALSE(find_arch("amd64"));
    CHECK(find_arch(native_arch()));
}
