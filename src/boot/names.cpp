#include "boot/names.hpp"

#include <climits>
#include <cstdint>
#include <cstdio>

#include "base/error.hpp"

namespace strata::boot {
namespace {

constexpr std::string_view conf_suffix = ".conf";
constexpr unsigned max_tries = INT_MAX;  // sd-boot refuses larger counters

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_id_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '+' || c == '_' || c == '.' ||
           c == '-';
}

// Parses a run of digits at text[pos...]; nullopt if there is none. Sets overflow instead of
// failing, so that the caller can tell "not a counter" from "a counter out of range".
std::optional<unsigned> parse_digits(std::string_view text, size_t& pos, bool& overflow) {
    const size_t start = pos;
    uint64_t value = 0;
    while (pos < text.size() && is_digit(text[pos])) {
        value = value * 10 + static_cast<uint64_t>(text[pos] - '0');
        if (value > max_tries) {
            overflow = true;
            value = max_tries;
        }
        ++pos;
    }
    if (pos == start) return std::nullopt;
    return static_cast<unsigned>(value);
}

struct Counter {
    size_t plus = 0;  // position of the '+' that starts the counter
    unsigned left = 0, done = 0;
    bool overflow = false;
};

// The counter at the end of stem (a file name without ".conf"), if the last '+' starts one:
// "+LEFT" or "+LEFT-DONE" with at least one digit each and nothing after.
std::optional<Counter> split_counter(std::string_view stem) {
    const size_t plus = stem.rfind('+');
    if (plus == std::string_view::npos) return std::nullopt;
    Counter c;
    c.plus = plus;
    size_t pos = plus + 1;
    const auto left = parse_digits(stem, pos, c.overflow);
    if (!left) return std::nullopt;
    c.left = *left;
    if (pos < stem.size() && stem[pos] == '-') {
        ++pos;
        const auto done = parse_digits(stem, pos, c.overflow);
        if (!done) return std::nullopt;
        c.done = *done;
    }
    if (pos != stem.size()) return std::nullopt;
    return c;
}

uint64_t fnv1a(std::string_view text) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char c : text) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ull;
    }
    return h;
}

}  // namespace

bool valid_entry_id(std::string_view id) {
    if (id.empty() || id.size() > max_entry_id_length) return false;
    for (const char c : id)
        if (!is_id_char(c)) return false;
    if (id.front() == '.' || id.starts_with("auto-")) return false;
    return !split_counter(id).has_value();
}

std::string make_entry_id(std::initializer_list<std::string_view> parts) {
    std::string id;
    bool first = true;
    for (const auto part : parts) {
        if (!first) id += '+';
        first = false;
        for (const char c : part) id += (is_id_char(c) && c != '+') ? c : '_';
    }
    // A last part of digits ("x", "3") would read as a counter: its separator becomes '-'.
    if (split_counter(id)) id[id.rfind('+')] = '-';
    if (id.empty()) id = "_";
    if (id.front() == '.') id.front() = '_';
    if (id.starts_with("auto-")) id.insert(0, "_");
    if (id.size() > max_entry_id_length) {
        char hash[17];
        std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a(id)));
        id.resize(max_entry_id_length - 17);
        id += '-';
        id += hash;
    }
    return id;
}

namespace {
// The one string table of BootState.
constexpr std::string_view boot_state_names[] = {"good", "indeterminate", "bad"};
}  // namespace

std::string_view to_string(BootState state) { return boot_state_names[static_cast<size_t>(state)]; }

std::optional<BootState> boot_state_from_string(std::string_view text) {
    for (size_t i = 0; i < std::size(boot_state_names); ++i)
        if (boot_state_names[i] == text) return static_cast<BootState>(i);
    return std::nullopt;
}

BootState EntryFileName::state() const {
    if (!tries_left) return BootState::Good;
    return *tries_left > 0 ? BootState::Indeterminate : BootState::Bad;
}

std::optional<EntryFileName> parse_entry_file_name(std::string_view file_name) {
    if (!file_name.ends_with(conf_suffix)) return std::nullopt;
    const std::string_view stem = file_name.substr(0, file_name.size() - conf_suffix.size());
    EntryFileName out;
    if (const auto counter = split_counter(stem)) {
        if (counter->overflow) return std::nullopt;
        out.id = std::string(stem.substr(0, counter->plus));
        out.tries_left = counter->left;
        out.tries_done = counter->done;
    } else {
        out.id = std::string(stem);
    }
    if (!valid_entry_id(out.id)) return std::nullopt;
    return out;
}

std::string entry_file_name(std::string_view id, std::optional<unsigned> tries_left,
                            std::optional<unsigned> tries_done) {
    if (!valid_entry_id(id))
        throw Error("boot entry id", id,
                    "not a valid id (1-" + std::to_string(max_entry_id_length) +
                        " characters of A-Z a-z 0-9 + _ . -, not starting with '.' or 'auto-', not ending in "
                        "a boot counter like '+3')",
                    Fault::InvalidInput);
    if ((tries_left && *tries_left > max_tries) || (tries_left && tries_done && *tries_done > max_tries))
        throw Error("boot entry id", id, "boot counter larger than " + std::to_string(max_tries), Fault::InvalidInput);
    std::string name(id);
    if (tries_left) {
        name += '+';
        name += std::to_string(*tries_left);
        if (tries_done) {
            name += '-';
            name += std::to_string(*tries_done);
        }
    }
    name += conf_suffix;
    return name;
}

}  // namespace strata::boot
