#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "naming/version.hpp"

using strata::naming::compare_versions;
using strata::naming::is_valid_version;

namespace {
int sign(int x) { return (x > 0) - (x < 0); }
}  // namespace

TEST_CASE("versions in UAPI order compare pairwise as the specification says") {
    // Oldest first; the same list systemd's own tests use for strverscmp_improved.
    const std::vector<std::string> ordered = {
        "",       "~1",      "ab",      "abb",    "abc",        "0001",  "002",     "12",
        "122",    "122.9",   "123~rc1", "123",    "123-a",      "123-a.1", "123-a1", "123-a1.1",
        "123-3",  "123-3.1", "123^patch1", "123^1", "123.a-1",  "123.1-1", "123a-1", "124",
    };
    for (size_t i = 0; i < ordered.size(); ++i) {
        CAPTURE(ordered[i]);
        CHECK(compare_versions(ordered[i], ordered[i]) == 0);
        for (size_t j = i + 1; j < ordered.size(); ++j) {
            CAPTURE(ordered[j]);
            CHECK(compare_versions(ordered[i], ordered[j]) < 0);
            CHECK(compare_versions(ordered[j], ordered[i]) > 0);
        }
    }
}

TEST_CASE("the rules the issue names") {
    struct Case {
        const char *a, *b;
        int expected;
    };
    const Case cases[] = {
        {"1.9", "1.10", -1},          {"1.0~rc1", "1.0", -1},     {"1.0", "1.0^post", -1},
        {"1.0~rc1", "1.0~rc2", -1},   {"1.0~rc2", "1.0~rc10", -1}, {"1.0^post", "1.0.1", -1},
        {"1.0-2", "1.0.1", -1},       {"1.01", "1.1", 0},         {"0001", "1", 0},
        {"a", "1", -1},               {"1.a", "1.1", -1},         {"2.0", "10.0", -1},
        {"123.45-67.88", "123.45-67.89", -1}, {"123.45-67.89", "123.45-67.89a", -1},
        {"1.2", "1_2", -1},  // '_' is skipped, so "1_2" reads as "12" after "1"
        {"v1", "v2", -1},             {"1.0", "1.0", 0},          {"99999999999999999999", "100000000000000000000", -1},
    };
    for (const auto& c : cases) {
        const std::string a = c.a, b = c.b;
        CAPTURE(a);
        CAPTURE(b);
        CHECK(sign(compare_versions(c.a, c.b)) == c.expected);
        CHECK(sign(compare_versions(c.b, c.a)) == -c.expected);
    }
}

TEST_CASE("sorting with VersionLess puts the newest last") {
    std::vector<std::string> v = {"1.10", "1.9", "1.0^p", "1.0", "1.0~rc1", "2~beta"};
    std::sort(v.begin(), v.end(), strata::naming::VersionLess{});
    CHECK(v == std::vector<std::string>{"1.0~rc1", "1.0", "1.0^p", "1.9", "1.10", "2~beta"});
}

TEST_CASE("valid versions") {
    for (const char* ok : {"1", "1.0", "1.0~rc1", "1.0^post", "2024.11_3+git", "v2", "A-1"}) {
        CAPTURE(ok);
        CHECK(is_valid_version(ok));
    }
    for (const char* bad : {"", "-1", ".1", "~1", "^1", "1 0", "1/0", "1,0", "1:0", "1\n", "é"}) {
        CAPTURE(bad);
        CHECK_FALSE(is_valid_version(bad));
    }
}
