#pragma once
// Boot entry ids and file names, and boot counting (pure, no I/O).
//
// A Type #1 entry lives in $BOOT/loader/entries/<id>[+LEFT[-DONE]].conf. The optional suffix is the
// boot counter of systemd's automatic boot assessment: the boot loader renames "+3" to "+2-1",
// "+1-2", "+0-3" on each try; systemd-bless-boot drops the suffix once a boot reached
// boot-complete.target. The counter is the LAST "+N" or "+N-M" right before ".conf" (as sd-boot and
// bootctl parse it), so an id may contain '+' but must not end in something that looks like a counter.
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace strata::boot {

// Longest id whose file name still fits 255 bytes with the longest counter ("+N-M", 32 bit each).
inline constexpr size_t max_entry_id_length = 255 - (sizeof(".conf") - 1) - (sizeof("+4294967295-4294967295") - 1);

// Non-empty, at most max_entry_id_length bytes, only [A-Za-z0-9+_.-]; not starting with '.' (hidden
// files are skipped by loaders) or "auto-" (sd-boot skips such files; the prefix is reserved for its
// automatic entries); not ending in "+N" or "+N-M" (it would read as a boot counter).
bool valid_entry_id(std::string_view id);

// Joins parts with '+' and replaces every byte outside [A-Za-z0-9_.-] in a part (including '+',
// ':', '/') by '_', so no part holds the separator and the result is a valid id (should the last
// part make it read as a counter, "x+3", its separator becomes '-'): make_entry_id({"org.x", "web",
// "2.1", "x86_64"}) == "org.x+web+2.1+x86_64". Because parts cannot contain '+', the glob
// "org.x+web+*+x86_64" matches the ids of exactly those parts with any third part (deploy uses
// this, boot/loader.hpp). A leading '.' becomes '_', an "auto-" start gets a '_' in front; an id
// too long (max_entry_id_length) is cut and ends in '-' and 16 hex digits of a hash of the whole,
// so distinct inputs stay distinct.
std::string make_entry_id(std::initializer_list<std::string_view> parts);

// As systemd-bless-boot reports it: no counter: Good (blessed, or never counted); tries left > 0:
// Indeterminate (not yet known to boot); tries left == 0: Bad (every try failed).
enum class BootState { Good, Indeterminate, Bad };
std::string_view to_string(BootState state);                        // "good", "indeterminate", "bad"
std::optional<BootState> boot_state_from_string(std::string_view text);

struct EntryFileName {
    std::string id;
    std::optional<unsigned> tries_left, tries_done;  // tries_done is 0 when the name has "+N" only
    BootState state() const;
    bool operator==(const EntryFileName&) const = default;
};

// "<id>[+LEFT[-DONE]].conf" → its parts; nullopt if the name does not end in ".conf" or the id is
// not valid ("+3.conf" has an empty id). A '+' that does not start a well-formed counter belongs to
// the id: "a+.conf" and "a+3-.conf" are ids "a+" and "a+3-" without counter, as bootctl reads them.
std::optional<EntryFileName> parse_entry_file_name(std::string_view file_name);

// The inverse: "<id>.conf", "<id>+LEFT.conf" or "<id>+LEFT-DONE.conf" (tries_done is ignored
// without tries_left). Throws Error(InvalidInput) for an invalid id.
std::string entry_file_name(std::string_view id, std::optional<unsigned> tries_left,
                            std::optional<unsigned> tries_done = std::nullopt);

}  // namespace strata::boot
