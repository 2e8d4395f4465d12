#pragma once
// The entry files in $BOOT/loader/entries/. Every write is atomic (temporary file in the same
// directory, fsync, rename, fsync of the directory), so a loader or a crash sees the old or the
// new entry, never a part of one.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.hpp"
#include "boot/entry.hpp"
#include "boot/names.hpp"

namespace strata::boot {

struct EntryFile {
    std::string file_name;  // as found, with its counter: "org.example.Demo+web+2.1+x86_64+2-1.conf"
    EntryFileName name;     // id and counter parsed from file_name
    Entry entry;
};

// Every entry file, sorted by file name. Names that are not "<id>[+N[-M]].conf" with a valid id,
// hidden files (temporaries), non-regular files and files that do not parse are skipped (logged
// at debug). No entries directory: an empty list.
std::vector<EntryFile> list_entries(const Dir& boot);

// The entry with this id, whatever its counter suffix ("<id>.conf", "<id>+3.conf", "<id>+0-3.conf").
// Should several files carry the id (only after a crash inside write_entry), the first by file name.
std::optional<EntryFile> find_entry(const Dir& boot, std::string_view id);

// Writes the entry as "<id>+<tries>.conf" (tries unset or 0: "<id>.conf"), creating loader/entries/
// if needed, and then removes other files of the same id (any counter suffix): until the new file
// is in place the old one stays. Returns the new file name. Throws Error(InvalidInput) for an
// invalid id or entry (see render), other errors name the file and errno.
std::string write_entry(const Dir& boot, std::string_view id, const Entry& entry, std::optional<unsigned> tries);

// Removes every file of this id (any counter suffix); no-op when there is none.
void remove_entry(const Dir& boot, std::string_view id);

}  // namespace strata::boot
