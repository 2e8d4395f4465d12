#pragma once
// Which entry boots: the default (persistent) and the one-shot (next boot only), the way
// systemd-boot takes them (loader.conf(5), systemd-boot(7), the Boot Loader Interface):
//   - LoaderEntryOneShot, an EFI variable, wins once (the loader deletes it when it reads it);
//   - then LoaderEntryDefault, an EFI variable (what `bootctl set-default` and the menu's 'd' key set);
//   - then the `default` line of loader/loader.conf on the ESP.
// All three hold a glob that sd-boot matches case-insensitively against entry ids. sd-boot 252
// (Debian 12) takes the whole file name as the id, boot counter included ("<id>+2-1.conf"); later
// versions and bootctl drop the counter ("<id>.conf"). strata writes "<pattern>[.+]*", where the
// pattern is an entry id, or one with '*' for a '+'-separated field (boot/names.hpp): that
// matches both kinds of id at every counter stage, and no other entry, as long as no other id
// starts with "<id>." or "<id>+" — which deployment ids guarantee by ending in the arch.
//
// Among the entries a glob matches, the loader takes the first in its menu order, where entries
// with no tries left come last (loader_before): a default "org.x+web+*+x86_64" follows the newest
// entry of root web that has not failed all its tries, which is how a failed new version falls
// back to the last good one (docs/boot.md).
//
// EFI variables live in efivarfs (default /sys/firmware/efi/efivars; tests pass a plain directory;
// an empty path means the loader is not the running system's, so none are read or written):
// a file "<Name>-<vendor guid>" holding 4 bytes of attributes (little endian) and the value, for
// these variables a NUL-terminated UTF-16LE string. strata writes them with attributes
// NON_VOLATILE|BOOTSERVICE_ACCESS|RUNTIME_ACCESS (0x7) and the loader's vendor GUID
// 4a67b082-0a4c-41cf-b6c7-440b29bb8c4f.
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "base/fd.hpp"
#include "boot/entries.hpp"

namespace strata::boot {

inline constexpr const char* default_efivars = "/sys/firmware/efi/efivars";
inline constexpr std::string_view loader_vendor_guid = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

// Writes "default <pattern>[.+]*" into loader/loader.conf under `loader` (the ESP: sd-boot reads
// loader.conf there only; BootDir::loader_dir()), replacing any `default` lines and keeping every
// other line as it was, atomically; creates the file if needed. When efivarfs is mounted and
// writable, also sets LoaderEntryDefault, which would otherwise override loader.conf. pattern: an
// entry id, or an id in which '*' stands for a run of id characters (valid_entry_pattern).
void set_default_entry(const Dir& loader, std::string_view pattern, const std::filesystem::path& efivars = default_efivars);

// The default strata set: LoaderEntryDefault when efivarfs has it, else the `default` line of
// loader/loader.conf; "<pattern>[.+]*" (or "<id>.conf") is returned as the pattern, any other glob
// as written; nullopt when neither is set.
std::optional<std::string> default_entry(const Dir& loader, const std::filesystem::path& efivars = default_efivars);

// The id of the entry the loader starts next, chosen as systemd-boot does: the first entry in
// menu order (loader_before) that the one-shot glob matches, else the first the default glob
// matches, else the first entry; nullopt when there are no entries.
std::optional<std::string> next_boot_entry(const std::vector<EntryFile>& entries, const Dir& loader,
                                           const std::filesystem::path& efivars = default_efivars);

// Sets LoaderEntryOneShot to "<id>.conf" for the next boot. Without writable EFI variables (not
// booted with UEFI, efivarfs not mounted or read-only) throws Error(Failed) that says so and what
// to do instead (docs/boot.md: set the default, boot, set it back).
enum class OneShotMethod { EfiVariable };
std::string_view to_string(OneShotMethod method);  // "efi-variable"
OneShotMethod set_oneshot_entry(std::string_view id, const std::filesystem::path& efivars = default_efivars);
// The pending one-shot entry (as default_entry returns it), nullopt when there is none or no EFI variables.
std::optional<std::string> oneshot_entry(const std::filesystem::path& efivars = default_efivars);

// ---- pure helpers, exposed for tests
// The glob strata writes for an entry id or pattern: "<pattern>[.+]*".
std::string loader_glob(std::string_view pattern);
// An entry id in which '*' may stand for any run of id characters (at least one other character).
bool valid_entry_pattern(std::string_view pattern);
// systemd-boot 252's menu order: entries with no tries left last; then entries with a sort-key
// before those without; by sort-key, machine-id, version (newest first, UAPI version order);
// then by file name (newest first), more tries left, fewer tries done.
bool loader_before(const EntryFile& a, const EntryFile& b);
// The id of the first entry in menu order whose file name the glob (as the loader holds it, e.g.
// "<id>[.+]*") matches case-insensitively: oneshot, else default, else the first entry.
std::optional<std::string> select_entry(std::vector<EntryFile> entries, const std::optional<std::string>& oneshot_glob,
                                        const std::optional<std::string>& default_glob);
// loader.conf text with its `default` set to value: the first `default` line is replaced, later
// ones (which would win) are dropped, everything else stays byte for byte; appended when missing.
std::string with_default_line(std::string_view loader_conf, std::string_view value);
// The value of the last `default` line (the one sd-boot uses), nullopt when there is none.
std::optional<std::string> default_line(std::string_view loader_conf);
// An EFI string variable's file content: attributes 0x7 (LE) + UTF-16LE text + NUL.
std::string encode_efi_string(std::string_view ascii);
// The inverse: the text without attributes and trailing NULs. Throws Error(InvalidInput) on a
// malformed value (shorter than the attributes, odd length, not ASCII/BMP text).
std::string decode_efi_string(std::string_view content);

}  // namespace strata::boot
