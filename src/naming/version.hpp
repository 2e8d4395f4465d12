#pragma once
// Version order of the UAPI Version Format Specification: the order systemd uses for Boot Loader
// Specification `version` keys and for sysupdate (strverscmp_improved). In short:
//   1.9 < 1.10     numbers compare by value, leading zeros ignored
//   1.0~rc1 < 1.0  '~' sorts before everything, even the end of the string
//   1.0 < 1.0^p1   '^' sorts after the end, before '.'
//   1.0-2 < 1.0.1  '-' sorts before '.'
//   a < 1          a numeric segment is newer than an alphabetic one
#include <string_view>

namespace strata::naming {

// <0, 0 or >0 as a is older than, as old as, or newer than b.
int compare_versions(std::string_view a, std::string_view b);

// A version strata accepts in a name: non-empty, only [A-Za-z0-9.~^_+-], starting with an
// alphanumeric (so it can never be mistaken for an option or a hidden file).
bool is_valid_version(std::string_view version);

struct VersionLess {
    bool operator()(std::string_view a, std::string_view b) const { return compare_versions(a, b) < 0; }
};

}  // namespace strata::naming
