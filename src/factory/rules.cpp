#include "factory/rules.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

#include "base/error.hpp"
#include "base/escape.hpp"

namespace strata::factory {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

[[noreturn]] void unrepresentable(std::string_view what, std::string_view text, std::string_view why) {
    throw Error(std::string("write tmpfiles.d ") + std::string(what), text, why, Fault::InvalidInput);
}

std::string hex_escape(unsigned char byte) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", byte);
    return buf;
}

class LineParser {
public:
    LineParser(std::string_view source, size_t line) : source_(source), line_(line) {}

    [[noreturn]] void fail(std::string_view reason) const {
        throw Error("", "", "rules '" + escape(source_) + "' line " + std::to_string(line_) + ": " + std::string(reason),
                    Fault::InvalidInput);
    }

    // One field as systemd-tmpfiles 252 splits it (extract_first_word with EXTRACT_UNQUOTE):
    // quotes group, a backslash takes the next character literally. nullopt at the end of line.
    std::optional<std::string> word(std::string_view& rest) const {
        size_t i = 0;
        while (i < rest.size() && is_blank(rest[i])) ++i;
        if (i == rest.size()) {
            rest = {};
            return std::nullopt;
        }
        std::string out;
        char quote = 0;
        for (; i < rest.size(); ++i) {
            const char c = rest[i];
            if (c == '\\') {
                if (++i == rest.size()) fail("a backslash ends the line");
                out += rest[i];
            } else if (quote) {
                if (c == quote) quote = 0;
                else out += c;
            } else if (c == '"' || c == '\'') {
                quote = c;
            } else if (is_blank(c)) {
                break;
            } else {
                out += c;
            }
        }
        if (quote) fail("unterminated quote");
        rest.remove_prefix(i);
        return out;
    }

    // The specifiers tmpfiles expands in paths and arguments; strata writes only "%%".
    std::string expand(std::string_view text) const {
        std::string out;
        for (size_t i = 0; i < text.size(); ++i) {
            if (text[i] != '%') {
                out += text[i];
                continue;
            }
            if (i + 1 < text.size() && text[i + 1] == '%') {
                out += '%';
                ++i;
                continue;
            }
            fail("specifier '" + escape(text.substr(i, 2)) + "' is not supported (only %%)");
        }
        return out;
    }

    // C escapes of the argument field (tmpfiles cunescapes it).
    std::string cunescape(std::string_view text) const {
        std::string out;
        auto hex = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        for (size_t i = 0; i < text.size(); ++i) {
            if (text[i] != '\\') {
                out += text[i];
                continue;
            }
            if (++i == text.size()) fail("a backslash ends the argument");
            const char c = text[i];
            switch (c) {
            case 'a': out += '\a'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'v': out += '\v'; break;
            case 's': out += ' '; break;
            case '\\': case '"': case '\'': out += c; break;
            case 'x': {
                const int hi = i + 1 < text.size() ? hex(text[i + 1]) : -1;
                const int lo = i + 2 < text.size() ? hex(text[i + 2]) : -1;
                if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) fail("invalid \\x escape in the argument");
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                break;
            }
            default:
                if (c >= '0' && c <= '3' && i + 2 < text.size() && text[i + 1] >= '0' && text[i + 1] <= '7' &&
                    text[i + 2] >= '0' && text[i + 2] <= '7') {
                    const int value = (c - '0') * 64 + (text[i + 1] - '0') * 8 + (text[i + 2] - '0');
                    if (value == 0) fail("invalid octal escape in the argument");
                    out += static_cast<char>(value);
                    i += 2;
                    break;
                }
                fail("invalid escape '\\" + escape(std::string_view(&c, 1)) + "' in the argument");
            }
        }
        return out;
    }

    std::optional<unsigned> number(const std::optional<std::string>& field, std::string_view what, int base,
                                   unsigned long max) const {
        if (!field || field->empty() || *field == "-") return std::nullopt;
        const bool digits = std::all_of(field->begin(), field->end(), [&](char c) {
            return base == 8 ? (c >= '0' && c <= '7') : (c >= '0' && c <= '9');
        });
        if (!digits || field->size() > 10)
            fail(std::string(what) + " '" + escape(*field) + "' is not supported (strata writes " +
                 (base == 8 ? "octal modes" : "numeric ids") + ")");
        const unsigned long value = std::stoul(*field, nullptr, base);
        if (value > max) fail(std::string(what) + " '" + escape(*field) + "' is out of range");
        return static_cast<unsigned>(value);
    }

private:
    std::string_view source_;
    size_t line_;
};

}  // namespace

std::string quote_path(std::string_view path) {
    if (path.empty() || path.front() != '/') unrepresentable("path", path, "not an absolute path");
    if (!is_valid_utf8(path)) unrepresentable("path", path, "not valid UTF-8");
    bool quote = false;
    std::string body;
    for (char c : path) {
        // systemd-tmpfiles 252 does not unescape paths, so a control character has no spelling.
        if (is_control(c)) unrepresentable("path", path, "contains a control character");
        if (c == '%') {
            body += "%%";
            continue;
        }
        if (c == '"' || c == '\\') {
            body += '\\';
            quote = true;
        } else if (is_blank(c) || c == '\'') {
            quote = true;
        }
        body += c;
    }
    return quote ? "\"" + body + "\"" : body;
}

std::string escape_argument(std::string_view argument) {
    if (argument.empty()) return "-";
    if (argument.find('\0') != std::string_view::npos) unrepresentable("argument", argument, "contains NUL");
    const bool utf8 = is_valid_utf8(argument);
    std::string out;
    for (char c : argument) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '\\') out += "\\\\";
        else if (c == '%') out += "%%";
        else if (is_blank(c) || is_control(c) || c == '"' || c == '\'' || (byte >= 0x80 && !utf8)) out += hex_escape(byte);
        else out += c;
    }
    // A lone "-" means "no argument"; spelt as an escape it is the name "-".
    if (out == "-") return "\\x2d";
    return out;
}

std::string render_rule(const Rule& rule) {
    std::string line(1, static_cast<char>(rule.type));
    if (rule.boot_only) line += '!';
    line += ' ';
    line += quote_path(rule.path);
    if (rule.type == RuleType::Directory) {
        char mode[16];
        std::snprintf(mode, sizeof mode, "%04o", rule.mode ? static_cast<unsigned>(*rule.mode & 07777) : 0755u);
        line += rule.mode ? std::string(" ") + mode : std::string(" -");
        line += rule.uid ? " " + std::to_string(*rule.uid) : std::string(" -");
        line += rule.gid ? " " + std::to_string(*rule.gid) : std::string(" -");
        line += " -";
        if (!rule.argument.empty()) line += " " + escape_argument(rule.argument);
        return line;
    }
    if (!rule.argument.empty()) line += " - - - - " + escape_argument(rule.argument);
    return line;
}

std::string render_rules(const std::vector<Rule>& rules, std::string_view comment) {
    std::string out;
    while (!comment.empty()) {
        const auto nl = comment.find('\n');
        const auto line = comment.substr(0, nl);
        out += line.empty() ? "#\n" : "# " + std::string(line) + "\n";
        if (nl == std::string_view::npos) break;
        comment.remove_prefix(nl + 1);
    }
    for (const auto& rule : rules) out += render_rule(rule) + "\n";
    return out;
}

std::vector<Rule> parse_rules(std::string_view text, std::string_view source) {
    std::vector<Rule> rules;
    std::set<std::string> seen;
    size_t number = 0;
    while (!text.empty()) {
        ++number;
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        while (!line.empty() && is_blank(line.front())) line.remove_prefix(1);
        while (!line.empty() && is_blank(line.back())) line.remove_suffix(1);
        if (line.empty() || line.front() == '#') continue;

        const LineParser p(source, number);
        const auto action = p.word(line);
        const auto path = p.word(line);
        if (!path) p.fail("a line needs at least a type and a path");
        const auto mode = p.word(line), user = p.word(line), group = p.word(line), age = p.word(line);
        (void)age;  // cleanup ages do not concern a first population
        while (!line.empty() && is_blank(line.front())) line.remove_prefix(1);

        Rule rule;
        const char type = action->front();
        if (type != 'C' && type != 'L' && type != 'd')
            p.fail("unsupported type '" + escape(*action) + "' (strata reads C, L, d)");
        rule.type = static_cast<RuleType>(type);
        for (char modifier : action->substr(1)) {
            if (modifier != '!')
                p.fail("unsupported modifier '" + escape(std::string_view(&modifier, 1)) + "' in '" + escape(*action) +
                       "'");
            rule.boot_only = true;
        }
        rule.path = p.expand(*path);
        if (rule.path.empty() || rule.path.front() != '/') p.fail("path '" + escape(rule.path) + "' is not absolute");
        rule.mode = p.number(mode, "mode", 8, 07777);
        rule.uid = p.number(user, "user", 10, 0xfffffffeul);
        rule.gid = p.number(group, "group", 10, 0xfffffffeul);
        if (rule.type != RuleType::Directory && (rule.mode || rule.uid || rule.gid))
            p.fail("mode and owner are only supported on d lines");
        if (!line.empty() && line != "-") rule.argument = p.expand(p.cunescape(line));
        if (!seen.insert(rule.path).second) continue;
        rules.push_back(std::move(rule));
    }
    return rules;
}

}  // namespace strata::factory
