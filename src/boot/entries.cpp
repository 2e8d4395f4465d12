#include "boot/entries.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "base/error.hpp"

namespace strata::boot {
namespace {

std::optional<Dir> open_entries(const Dir& boot) {
    auto loader = boot.try_open_dir("loader");
    if (!loader) return std::nullopt;
    return loader->try_open_dir("entries");
}

// Creates name in parent if missing and makes the new directory entry durable.
Dir make_dir_durable(const Dir& parent, std::string_view name) {
    if (auto d = parent.try_open_dir(name)) return std::move(*d);
    Dir d = parent.make_dir(name);
    parent.sync();
    return d;
}

// The file names in dir that belong to id, sorted.
std::vector<std::string> files_of(const Dir& dir, std::string_view id) {
    std::vector<std::string> out;
    for (auto& name : dir.entries()) {
        if (name.starts_with('.')) continue;
        const auto parsed = parse_entry_file_name(name);
        if (parsed && parsed->id == id) out.push_back(std::move(name));
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::optional<EntryFile> read_entry_file(const Dir& dir, std::string name) {
    if (name.starts_with('.')) return std::nullopt;
    auto parsed = parse_entry_file_name(name);
    if (!parsed) {
        spdlog::debug("boot entries: '{}' is not an entry file name, ignoring", dir.path_of(name).string());
        return std::nullopt;
    }
    const auto st = dir.stat(name);
    if (!st || !S_ISREG(st->st_mode)) {
        spdlog::debug("boot entries: '{}' is not a regular file, ignoring", dir.path_of(name).string());
        return std::nullopt;
    }
    try {
        Entry entry = parse_entry(read_file(dir, name));
        return EntryFile{std::move(name), std::move(*parsed), std::move(entry)};
    } catch (const Error& e) {
        spdlog::debug("boot entries: '{}': {}, ignoring", dir.path_of(name).string(), e.what());
        return std::nullopt;
    }
}

void check_id(std::string_view id) {
    (void)entry_file_name(id, std::nullopt);  // throws Error(InvalidInput) naming the id
}

}  // namespace

std::vector<EntryFile> list_entries(const Dir& boot) {
    std::vector<EntryFile> out;
    const auto dir = open_entries(boot);
    if (!dir) return out;
    auto names = dir->entries();
    std::sort(names.begin(), names.end());
    for (auto& name : names)
        if (auto e = read_entry_file(*dir, std::move(name))) out.push_back(std::move(*e));
    return out;
}

std::optional<EntryFile> find_entry(const Dir& boot, std::string_view id) {
    check_id(id);
    const auto dir = open_entries(boot);
    if (!dir) return std::nullopt;
    for (auto& name : files_of(*dir, id))
        if (auto e = read_entry_file(*dir, std::move(name))) return e;
    return std::nullopt;
}

std::string write_entry(const Dir& boot, std::string_view id, const Entry& entry, std::optional<unsigned> tries) {
    if (tries == 0u) tries.reset();
    const std::string name = entry_file_name(id, tries);
    const std::string text = render(entry);
    return with_context("write boot entry", boot.path_of("loader/entries/" + name).string(), [&] {
        const Dir loader = make_dir_durable(boot, "loader");
        const Dir dir = make_dir_durable(loader, "entries");
        const auto old = files_of(dir, id);
        write_file_atomic(dir, name, text);
        bool removed = false;
        for (const auto& o : old) {
            if (o == name) continue;
            dir.unlink(o);
            removed = true;
        }
        if (removed) dir.sync();
        spdlog::debug("boot entries: wrote '{}'", dir.path_of(name).string());
        return name;
    });
}

void remove_entry(const Dir& boot, std::string_view id) {
    check_id(id);
    const auto dir = open_entries(boot);
    if (!dir) return;
    const auto files = files_of(*dir, id);
    if (files.empty()) return;
    for (const auto& f : files) dir->unlink(f);
    dir->sync();
}

}  // namespace strata::boot
