#pragma once
// A Boot Loader Specification Type #1 entry (UAPI.1, "$BOOT/loader/entries/*.conf"): the model,
// its text form and its parser. Pure: no I/O.
#include <string>
#include <string_view>
#include <vector>

namespace strata::boot {

struct Entry {
    std::string title;         // shown in the menu
    std::string version;       // sorted newest first among entries with the same sort-key and machine-id
    std::string machine_id;    // 32 lowercase hex digits
    std::string sort_key;      // groups entries in the menu (e.g. the OS id)
    std::string linux;         // kernel, a path relative to $BOOT: "/<token>/<version>/linux"
    std::string architecture;  // EFI vocabulary ("x64", "aa64", ...): see efi_architecture(); loaders
                               // hide entries whose architecture is not their own
    std::vector<std::string> initrd, options;  // repeatable keys, in order
    bool operator==(const Entry&) const = default;
};

// "key value\n" lines in a fixed order (title, version, machine-id, sort-key, architecture, linux,
// initrd..., options...), only non-empty keys; a value is written after one space. Throws
// Error(InvalidInput) when a value contains a line break or a NUL, or has leading or trailing
// whitespace (it would not read back the same), or when linux is empty (an entry without linux
// or efi is invalid per the specification).
std::string render(const Entry& entry);

// The inverse, as sd-boot and bootctl read entries: lines split at '\n' (a trailing '\r' is
// dropped), blank lines and lines starting with '#' ignored, the key is the first word and the value
// the rest of the line after the whitespace that follows it; unknown keys (efi, devicetree, ...)
// are ignored; a single-valued key given twice keeps the last value. A line that is a key without
// value, a key with characters other than [A-Za-z0-9_-], a NUL, or invalid UTF-8 throws
// Error(InvalidInput) "parse boot entry: line N: ...".
Entry parse_entry(std::string_view text);

// The EFI architecture name sd-boot compares the architecture key with, for a kernel architecture
// name as strata's names use them: "x86_64" → "x64", "aarch64" → "aa64", "i686" → "ia32",
// "armv7l" → "arm", "riscv64" → "riscv64", "loongarch64" → "loongarch64"; "" when there is none (leave
// the key out then: an entry without architecture is shown everywhere).
std::string_view efi_architecture(std::string_view kernel_arch);

}  // namespace strata::boot
