#include "base/size.hpp"

#include <array>
#include <charconv>

#include "base/error.hpp"

namespace strata {
namespace {

constexpr std::array<char, 5> units = {'K', 'M', 'G', 'T', 'P'};

[[noreturn]] void invalid(std::string_view text, std::string_view why) {
    throw Error("", "", "invalid size '" + std::string(text) + "': " + std::string(why), Fault::InvalidInput);
}

}  // namespace

uint64_t parse_size(std::string_view text) {
    uint64_t number = 0;
    const auto* end = text.data() + text.size();
    const auto [next, ec] = std::from_chars(text.data(), end, number);
    if (ec == std::errc::result_out_of_range) invalid(text, "too large");
    if (ec != std::errc() || next == text.data()) invalid(text, "not a number");

    std::string_view suffix(next, static_cast<size_t>(end - next));
    if (suffix.empty()) return number;
    unsigned shift = 0;
    for (size_t i = 0; i < units.size(); ++i)
        if (suffix.front() == units[i] || suffix.front() == units[i] + ('a' - 'A')) shift = 10 * static_cast<unsigned>(i + 1);
    suffix.remove_prefix(1);
    if (shift == 0 || !(suffix.empty() || suffix == "B" || suffix == "iB"))
        invalid(text, "unknown unit (use K, M, G, T or P)");
    if (number > (UINT64_MAX >> shift)) invalid(text, "too large");
    return number << shift;
}

std::string format_size(uint64_t bytes) {
    size_t unit = 0;
    while (unit < units.size() && bytes != 0 && bytes % 1024 == 0) {
        bytes /= 1024;
        ++unit;
    }
    return std::to_string(bytes) + (unit == 0 ? std::string() : std::string(1, units[unit - 1]));
}

}  // namespace strata
