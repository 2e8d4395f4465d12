#include "boot/entry.hpp"

#include "base/error.hpp"
#include "base/escape.hpp"

namespace strata::boot {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

bool is_key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

void check_value(std::string_view key, std::string_view value) {
    for (const char c : value)
        if (c == '\n' || c == '\r' || c == '\0')
            throw Error("render boot entry", "", "value of '" + std::string(key) + "' contains a line break or NUL",
                        Fault::InvalidInput);
    if (!value.empty() && (is_blank(value.front()) || is_blank(value.back())))
        throw Error("render boot entry", "",
                    "value of '" + std::string(key) + "' starts or ends with whitespace: '" + escape(value) + "'",
                    Fault::InvalidInput);
}

void line(std::string& out, std::string_view key, std::string_view value) {
    if (value.empty()) return;
    check_value(key, value);
    out += key;
    out += ' ';
    out += value;
    out += '\n';
}

[[noreturn]] void malformed(size_t line_number, const std::string& reason) {
    throw Error("parse boot entry", "", "line " + std::to_string(line_number) + ": " + reason, Fault::InvalidInput);
}

}  // namespace

std::string render(const Entry& e) {
    if (e.linux.empty())
        throw Error("render boot entry", e.title, "no kernel ('linux' is empty)", Fault::InvalidInput);
    std::string out;
    line(out, "title", e.title);
    line(out, "version", e.version);
    line(out, "machine-id", e.machine_id);
    line(out, "sort-key", e.sort_key);
    line(out, "architecture", e.architecture);
    line(out, "linux", e.linux);
    for (const auto& i : e.initrd) line(out, "initrd", i);
    for (const auto& o : e.options) line(out, "options", o);
    return out;
}

Entry parse_entry(std::string_view text) {
    Entry e;
    size_t line_number = 0;
    while (!text.empty()) {
        ++line_number;
        const size_t nl = text.find('\n');
        std::string_view l = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);

        if (l.find('\0') != std::string_view::npos) malformed(line_number, "contains a NUL byte");
        if (!is_valid_utf8(l)) malformed(line_number, "not valid UTF-8");
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        while (!l.empty() && is_blank(l.front())) l.remove_prefix(1);
        while (!l.empty() && is_blank(l.back())) l.remove_suffix(1);
        if (l.empty() || l.front() == '#') continue;

        size_t k = 0;
        while (k < l.size() && !is_blank(l[k])) ++k;
        const std::string_view key = l.substr(0, k);
        std::string_view value = l.substr(k);
        while (!value.empty() && is_blank(value.front())) value.remove_prefix(1);
        for (const char c : key)
            if (!is_key_char(c)) malformed(line_number, "'" + escape(key) + "' is not a key");
        if (value.empty()) malformed(line_number, "'" + std::string(key) + "' has no value");

        const std::string v(value);
        if (key == "title") e.title = v;
        else if (key == "version") e.version = v;
        else if (key == "machine-id") e.machine_id = v;
        else if (key == "sort-key") e.sort_key = v;
        else if (key == "linux") e.linux = v;
        else if (key == "architecture") e.architecture = v;
        else if (key == "initrd") e.initrd.push_back(v);
        else if (key == "options") e.options.push_back(v);
        // Other keys (efi, devicetree, devicetree-overlay, uki, ...) are not strata's: ignored.
    }
    return e;
}

std::string_view efi_architecture(std::string_view kernel_arch) {
    static constexpr std::pair<std::string_view, std::string_view> table[] = {
        {"x86_64", "x64"},   {"aarch64", "aa64"},       {"i686", "ia32"},
        {"i386", "ia32"},    {"armv7l", "arm"},         {"riscv64", "riscv64"},
        {"loongarch64", "loongarch64"},
    };
    for (const auto& [kernel, efi] : table)
        if (kernel == kernel_arch) return efi;
    return {};
}

}  // namespace strata::boot
