#include "naming/version.hpp"

#include <algorithm>
#include <cstring>

namespace strata::naming {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
bool is_version_char(char c) { return is_alnum(c) || c == '~' || c == '-' || c == '^' || c == '.'; }

int sign(auto x) { return (x > 0) - (x < 0); }

// A cursor over a string_view that reads as NUL past its end, which keeps the algorithm as
// close to the specification's C text as possible.
struct Cursor {
    std::string_view s;
    size_t i = 0;
    char peek(size_t ahead = 0) const { return i + ahead < s.size() ? s[i + ahead] : '\0'; }
    bool at_end() const { return i >= s.size(); }
    std::string_view rest() const { return at_end() ? std::string_view() : s.substr(i); }
    size_t span(bool (*pred)(char)) const {
        size_t n = 0;
        while (pred(peek(n)) && peek(n) != '\0') ++n;
        return n;
    }
};

// When exactly one side starts with separator c, that side is older (result -1 or 1) and true is
// returned; when both do, both skip it.
bool separator(Cursor& a, Cursor& b, char c, int& result) {
    const bool ha = a.peek() == c, hb = b.peek() == c;
    if (!ha && !hb) return false;
    if (ha != hb) {
        result = ha ? -1 : 1;
        return true;
    }
    ++a.i;
    ++b.i;
    return false;
}

}  // namespace

int compare_versions(std::string_view as, std::string_view bs) {
    // The empty version is older than any other, even one starting with '~'.
    if (as.empty() || bs.empty()) return sign(as.compare(bs));
    Cursor a{as}, b{bs};
    for (;;) {
        while (!a.at_end() && !is_version_char(a.peek())) ++a.i;
        while (!b.at_end() && !is_version_char(b.peek())) ++b.i;

        int r = 0;
        if (separator(a, b, '~', r)) return r;
        // Past the '~' check, a string with more segments is newer; then '-' < '^' < '.' < the rest.
        if (a.at_end() || b.at_end()) return sign(a.rest().compare(b.rest()));
        if (separator(a, b, '-', r)) return r;
        if (separator(a, b, '^', r)) return r;
        if (separator(a, b, '.', r)) return r;

        if (is_digit(a.peek()) || is_digit(b.peek())) {
            const size_t la = a.span(is_digit), lb = b.span(is_digit);
            // A numeric segment is newer than an alphabetic one.
            if ((la != 0) != (lb != 0)) return la != 0 ? 1 : -1;
            std::string_view da = a.s.substr(a.i, la), db = b.s.substr(b.i, lb);
            while (!da.empty() && da.front() == '0') da.remove_prefix(1);
            while (!db.empty() && db.front() == '0') db.remove_prefix(1);
            if (da.size() != db.size()) return da.size() < db.size() ? -1 : 1;
            if (const int c = da.compare(db); c != 0) return sign(c);
            a.i += la;
            b.i += lb;
        } else {
            const size_t la = a.span(is_alpha), lb = b.span(is_alpha);
            const std::string_view sa = a.s.substr(a.i, la), sb = b.s.substr(b.i, lb);
            const size_t common = std::min(la, lb);
            if (const int c = sa.substr(0, common).compare(sb.substr(0, common)); c != 0) return sign(c);
            if (la != lb) return la < lb ? -1 : 1;
            a.i += la;
            b.i += lb;
        }
    }
}

bool is_valid_version(std::string_view version) {
    if (version.empty() || !is_alnum(version.front())) return false;
    return std::all_of(version.begin(), version.end(), [](char c) {
        return is_alnum(c) || std::strchr(".~^_+-", c) != nullptr;
    });
}

}  // namespace strata::naming
