// The tmpfiles.d model of the factory rules: rendering, quoting and parsing back. What the real
// systemd-tmpfiles makes of these lines is checked in tests/integration/factory_test.cpp.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>

#include "base/error.hpp"
#include "support/errors.hpp"
#include "factory/prepare.hpp"
#include "factory/rules.hpp"

using namespace strata;
using namespace strata::factory;

namespace {

Rule copy_rule(std::string path) { return Rule{RuleType::Copy, std::move(path), {}, {}, {}, "", false}; }
Rule link_rule(std::string path, std::string target) {
    return Rule{RuleType::Symlink, std::move(path), {}, {}, {}, std::move(target), false};
}
Rule dir_rule(std::string path, mode_t mode, uid_t uid, gid_t gid) {
    return Rule{RuleType::Directory, std::move(path), mode, uid, gid, "", false};
}

}  // namespace

TEST_CASE("rules render as tmpfiles.d lines") {
    CHECK(render_rule(copy_rule("/etc/passwd")) == "C /etc/passwd");
    CHECK(render_rule(link_rule("/etc/os-release", "../usr/lib/os-release")) ==
          "L /etc/os-release - - - - ../usr/lib/os-release");
    CHECK(render_rule(dir_rule("/var/lib/x", 0755, 0, 0)) == "d /var/lib/x 0755 0 0 -");
    CHECK(render_rule(dir_rule("/var/tmp", 01777, 0, 0)) == "d /var/tmp 1777 0 0 -");
    CHECK(render_rule(dir_rule("/var/mail", 02775, 0, 8)) == "d /var/mail 2775 0 8 -");
    Rule boot = copy_rule("/etc/x");
    boot.boot_only = true;
    CHECK(render_rule(boot) == "C! /etc/x");
    Rule unset{RuleType::Directory, "/var", {}, {}, {}, "", false};
    CHECK(render_rule(unset) == "d /var - - - -");
}

TEST_CASE("render_rules writes the comment then one line per rule") {
    CHECK(render_rules({copy_rule("/etc/a"), link_rule("/etc/b", "c")}, "first\n\nsecond\n") ==
          "# first\n#\n# second\nC /etc/a\nL /etc/b - - - - c\n");
    CHECK(render_rules({}) == "");
}

TEST_CASE("paths with spaces quotes and backslashes are double-quoted") {
    CHECK(quote_path("/etc/plain-name.conf") == "/etc/plain-name.conf");
    CHECK(quote_path("/etc/with space") == "\"/etc/with space\"");
    CHECK(quote_path("/etc/it's") == "\"/etc/it's\"");
    CHECK(quote_path("/etc/say \"hi\"") == "\"/etc/say \\\"hi\\\"\"");
    CHECK(quote_path("/etc/back\\slash") == "\"/etc/back\\\\slash\"");
    CHECK(quote_path("/etc/100%") == "/etc/100%%");
    CHECK(quote_path("/etc/grüße") == "/etc/grüße");
}

TEST_CASE("paths no tmpfiles.d line can hold are refused") {
    CHECK(test::error_of([] { quote_path("etc/relative"); }) ==
          "write tmpfiles.d path 'etc/relative': not an absolute path");
    CHECK(test::error_of([] { quote_path("/etc/new\nline"); }) ==
          "write tmpfiles.d path '/etc/new\\nline': contains a control character");
    CHECK(test::error_of([] { quote_path("/etc/bad\xff"); }) == "write tmpfiles.d path '/etc/bad\\xff': not valid UTF-8");
    CHECK(test::error_of([] { quote_path("/etc/tab\there"); }) ==
          "write tmpfiles.d path '/etc/tab\\there': contains a control character");
    try {
        quote_path("/etc/x\x01");
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::InvalidInput);
    }
}

TEST_CASE("arguments are C-escaped") {
    CHECK(escape_argument("") == "-");
    CHECK(escape_argument("../usr/lib/os-release") == "../usr/lib/os-release");
    CHECK(escape_argument("a b") == "a\\x20b");
    CHECK(escape_argument(" lead") == "\\x20lead");
    CHECK(escape_argument("back\\slash") == "back\\\\slash");
    CHECK(escape_argument("50%") == "50%%");
    CHECK(escape_argument("-") == "\\x2d");
    CHECK(escape_argument("nl\n") == "nl\\x0a");
    CHECK(escape_argument("q\"'") == "q\\x22\\x27");
    CHECK(escape_argument("bin\xff") == "bin\\xff");
    CHECK(escape_argument("grüße") == "grüße");
}

TEST_CASE("rendered rules parse back to the same rules") {
    const std::vector<Rule> rules = {
        dir_rule("/etc", 0755, 0, 0),
        copy_rule("/etc/passwd"),
        copy_rule("/etc/with space"),
        copy_rule("/etc/it's \"quoted\""),
        copy_rule("/etc/back\\slash"),
        copy_rule("/etc/100%"),
        link_rule("/etc/os-release", "../usr/lib/os-release"),
        link_rule("/etc/odd", " a\\b%c\n\"'\xff-"),
        link_rule("/etc/dash", "-"),
        dir_rule("/var/tmp", 01777, 0, 0),
        dir_rule("/var/mail", 02775, 0, 8),
    };
    CHECK(parse_rules(render_rules(rules, "a comment"), "test") == rules);
}

TEST_CASE("parse reads what tmpfiles.d files contain") {
    const auto rules = parse_rules("# comment\n"
                                   "\n"
                                   "   C    /etc/a   \n"
                                   "C /etc/b - - - - /usr/share/other/b\n"
                                   "C! /etc/c\n"
                                   "L /etc/d\n"
                                   "L /etc/e - - - -    target\\x20x  \n"
                                   "d /var/f 750 1 2 10d\n"
                                   "d /var/g - - - -\n"
                                   "C /etc/sp\\ ace\n"
                                   "C '/etc/single q'\n"
                                   "C /etc/a\n",
                                   "test");
    REQUIRE(rules.size() == 9);
    CHECK(rules[0] == copy_rule("/etc/a"));
    CHECK(rules[1].argument == "/usr/share/other/b");
    CHECK(rules[2].boot_only);
    CHECK(rules[3] == link_rule("/etc/d", ""));
    CHECK(rules[4] == link_rule("/etc/e", "target x"));
    CHECK(rules[5] == dir_rule("/var/f", 0750, 1, 2));
    CHECK(rules[6] == Rule{RuleType::Directory, "/var/g", {}, {}, {}, "", false});
    CHECK(rules[7].path == "/etc/sp ace");
    CHECK(rules[8].path == "/etc/single q");
    // The second line for /etc/a is ignored, as systemd-tmpfiles ignores duplicates.
}

TEST_CASE("parse refuses what strata does not support with the line") {
    auto error = [](const std::string& text) {
        return test::error_of([&] { parse_rules(text, "usr/lib/tmpfiles.d/strata-factory.conf"); });
    };
    const std::string at = "rules 'usr/lib/tmpfiles.d/strata-factory.conf' line 2: ";
    CHECK(error("C /etc/a\nf /etc/x 0644 0 0 - hello\n") == at + "unsupported type 'f' (strata reads C, L, d)");
    CHECK(error("\nC+ /etc/x\n") == at + "unsupported modifier '+' in 'C+'");
    CHECK(error("\nC\n") == at + "a line needs at least a type and a path");
    CHECK(error("\nC etc/x\n") == at + "path 'etc/x' is not absolute");
    CHECK(error("\nC /etc/%m\n") == at + "specifier '%m' is not supported (only %%)");
    CHECK(error("\nd /var/x 0755 root root -\n") == at + "user 'root' is not supported (strata writes numeric ids)");
    CHECK(error("\nd /var/x ~0755 0 0 -\n") == at + "mode '~0755' is not supported (strata writes octal modes)");
    CHECK(error("\nd /var/x 17777 0 0 -\n") == at + "mode '17777' is out of range");
    CHECK(error("\nC /etc/x 0644 - - -\n") == at + "mode and owner are only supported on d lines");
    CHECK(error("\nC \"/etc/x\n") == at + "unterminated quote");
    CHECK(error("\nL /etc/x - - - - a\\q\n") == at + "invalid escape '\\q' in the argument");
    CHECK(error("\nL /etc/x - - - - a\\x00\n") == at + "invalid \\x escape in the argument");
    try {
        parse_rules("z /x\n", "f");
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::InvalidInput);
    }
}

TEST_CASE("exclude patterns are checked") {
    CHECK_NOTHROW(check_exclude("etc/hostname"));
    CHECK_NOTHROW(check_exclude("/var/lib/foo/*"));
    CHECK_NOTHROW(check_exclude("var/spool/**"));
    CHECK(test::error_of([] { check_exclude("usr/lib/x"); }) == "exclude pattern 'usr/lib/x': must start with etc/ or var/");
    CHECK(test::error_of([] { check_exclude("etc/"); }) == "exclude pattern 'etc/': names nothing below etc/ or var/");
    CHECK(test::error_of([] { check_exclude("etc/../usr"); }) ==
          "exclude pattern 'etc/../usr': has an empty, '.' or '..' component");
    CHECK(test::error_of([] { check_exclude("var/**/x"); }) ==
          "exclude pattern 'var/**/x': '**' is only allowed as the last component");
    const auto all = effective_excludes({"/etc/hostname"});
    REQUIRE(all.size() == std::size(default_excludes) + 1);
    CHECK(all.front() == "etc/machine-id");
    CHECK(all.back() == "etc/hostname");
}

TEST_CASE("strata's own tmpfiles.d file is in the supported subset") {
    std::ifstream in(std::string(STRATA_SOURCE_DIR) + "/factory/tmpfiles.d/strata.conf");
    REQUIRE(in);
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const auto rules = parse_rules(text, "factory/tmpfiles.d/strata.conf");
    REQUIRE(rules.size() == 2);
    CHECK(rules[0] == copy_rule("/etc/strata"));
    CHECK(rules[1] == dir_rule("/var/lib/strata", 0755, 0, 0));
}
