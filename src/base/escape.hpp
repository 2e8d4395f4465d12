#pragma once
#include <string>
#include <string_view>

namespace strata {

// Makes untrusted text safe for a one-line message: control characters, backslashes, quotes and
// bytes that are not valid UTF-8 become C escapes (\n, \x1b, \xff); valid UTF-8 stays as is.
std::string escape(std::string_view text);

// True if text is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view text);

}  // namespace strata
