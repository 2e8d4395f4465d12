#pragma once
// The factory rules: the few tmpfiles.d(5) lines strata writes and reads back. A usr tree made
// stateless by `strata factory prepare` ships them as /usr/lib/tmpfiles.d/strata-factory.conf;
// at boot systemd-tmpfiles applies them, offline `strata factory populate` does (populate.hpp).
//
// Only three types are modelled, because they are all a factory needs:
//   C /etc/passwd                         copy /usr/share/factory/etc/passwd if the target is
//                                         missing or an empty directory
//   L /etc/os-release - - - - ../usr/lib/os-release   a symlink, if nothing is there
//   d /var 0755 0 0 -                     a directory with mode and owner
// Any other type, a modifier other than '!' and user or group names (populate cannot resolve
// them offline, and at boot /etc/passwd may not exist yet) are refused with the line number.
//
// Quoting follows what systemd-tmpfiles 252 (Debian 12) and later both accept: a path with
// spaces, quotes or backslashes is written in double quotes with \" and \\ inside; '%' is
// doubled (specifier expansion). A path with control characters or invalid UTF-8 has no
// spelling 252 understands and is refused. The argument (the L target) is C-escaped (\x20, \\),
// which both versions unescape.
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace strata::factory {

// Where a usr tree keeps the factory copy and its rules, as paths in the running system and
// relative to the usr tree (what is mounted at /usr).
inline constexpr std::string_view factory_dir = "/usr/share/factory";
inline constexpr std::string_view rules_path = "/usr/lib/tmpfiles.d/strata-factory.conf";
inline constexpr std::string_view usr_factory_dir = "share/factory";
inline constexpr std::string_view usr_rules_dir = "lib/tmpfiles.d";
inline constexpr std::string_view rules_name = "strata-factory.conf";

enum class RuleType : char {
    Copy = 'C',       // copy the factory's file or tree
    Symlink = 'L',    // make a symlink
    Directory = 'd',  // make a directory
};

struct Rule {
    RuleType type = RuleType::Copy;
    std::string path;                 // absolute, as the file system spells it (unquoted)
    std::optional<mode_t> mode;       // d only; nullopt: "-"
    std::optional<uid_t> uid;         // d only; nullopt: "-"
    std::optional<gid_t> gid;         // d only; nullopt: "-"
    std::string argument;             // L: the target; C: the source; "" = /usr/share/factory + path
    bool boot_only = false;           // the '!' modifier: boot-time only (populate applies it)

    bool operator==(const Rule&) const = default;
};

// One line without the newline. Throws Error(Fault::InvalidInput) for a path or argument that
// no tmpfiles.d line can express (relative path, control characters, invalid UTF-8, NUL).
std::string render_rule(const Rule& rule);
// A whole file: the comment lines (each prefixed "# "), then one line per rule.
std::string render_rules(const std::vector<Rule>& rules, std::string_view comment = {});

// The path field as written: double-quoted when needed, '%' doubled.
std::string quote_path(std::string_view path);
// The argument field as written: C escapes for whitespace, control bytes, backslash and invalid
// UTF-8, '%' doubled, "-" for an empty argument.
std::string escape_argument(std::string_view argument);

// Parses a rules file. Comments and empty lines are skipped; a later line for a path already
// seen is ignored, as tmpfiles does. Errors (Fault::InvalidInput) name source and line:
//   rules 'usr/lib/tmpfiles.d/strata-factory.conf' line 3: unsupported type 'f' (strata reads C, L, d)
std::vector<Rule> parse_rules(std::string_view text, std::string_view source);

}  // namespace strata::factory
