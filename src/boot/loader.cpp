#include "boot/loader.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fnmatch.h>

#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

#include "base/error.hpp"
#include "boot/names.hpp"
#include "naming/version.hpp"

namespace strata::boot {
namespace {

constexpr uint32_t efi_attributes = 0x7;  // NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS
constexpr std::string_view conf_suffix = ".conf";

std::string variable_file(std::string_view name) { return std::string(name) + "-" + std::string(loader_vendor_guid); }

constexpr std::string_view glob_suffix = "[.+]*";

// "<pattern>[.+]*" (and "<id>.conf", which strata wrote before) → pattern; any other value (a
// glob someone else wrote) as it is.
std::string pattern_in(std::string value) {
    if (value.ends_with(glob_suffix)) {
        std::string stem = value.substr(0, value.size() - glob_suffix.size());
        if (valid_entry_pattern(stem)) return stem;
    }
    if (value.ends_with(conf_suffix)) {
        std::string stem = value.substr(0, value.size() - conf_suffix.size());
        if (valid_entry_id(stem)) return stem;
    }
    return value;
}

void check_id(std::string_view id) { (void)entry_file_name(id, std::nullopt); }

void check_pattern(std::string_view pattern) {
    if (!valid_entry_pattern(pattern))
        throw Error("", std::string(pattern),
                    "not a valid entry id or id pattern (only [A-Za-z0-9+_.-] and '*' for whole fields)",
                    Fault::InvalidInput);
}

bool is_blank(char c) { return c == ' ' || c == '\t'; }

// True if line (without '\n') is a `default` setting.
bool is_default_line(std::string_view line) {
    while (!line.empty() && is_blank(line.front())) line.remove_prefix(1);
    constexpr std::string_view key = "default";
    return line.starts_with(key) && (line.size() == key.size() || is_blank(line[key.size()]));
}

// Why EFI variables at efivars cannot be read; nullopt when they can.
std::optional<std::string> unreadable(const std::filesystem::path& efivars) {
    if (efivars.empty()) return "this is not the running system's boot loader; its EFI variables are not used";
    struct stat st {};
    if (::stat(efivars.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
        return "there are no EFI variables ('" + efivars.string() + "' does not exist: not booted with UEFI?)";
    struct statfs sfs {};
    if (::statfs(efivars.c_str(), &sfs) == 0 && static_cast<unsigned long>(sfs.f_type) == SYSFS_MAGIC)
        return "efivarfs is not mounted on '" + efivars.string() + "'";
    return std::nullopt;
}

// Why EFI variables at efivars cannot be written; nullopt when they can.
std::optional<std::string> unwritable(const std::filesystem::path& efivars) {
    if (auto why = unreadable(efivars)) return why;
    struct statvfs svfs {};
    if (::statvfs(efivars.c_str(), &svfs) == 0 && (svfs.f_flag & ST_RDONLY) != 0)
        return "efivarfs on '" + efivars.string() + "' is mounted read-only";
    if (::access(efivars.c_str(), W_OK) != 0) return "'" + efivars.string() + "' is not writable";
    return std::nullopt;
}

bool is_efivarfs(const Dir& dir) {
    struct statfs sfs {};
    return ::fstatfs(dir.fd(), &sfs) == 0 && static_cast<unsigned long>(sfs.f_type) == EFIVARFS_MAGIC;
}

// efivarfs marks some variables immutable; clear the flag before writing (as systemd does).
void clear_immutable(const Dir& dir, const std::string& name) {
    const int fd = ::openat(dir.fd(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    Fd guard(fd);
    int flags = 0;
    if (::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & FS_IMMUTABLE_FL) != 0) {
        flags &= ~FS_IMMUTABLE_FL;
        (void)::ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
}

void write_variable(const std::filesystem::path& efivars, std::string_view name, std::string_view value) {
    const Dir dir = Dir::open(efivars);
    const std::string file = variable_file(name);
    const std::string content = encode_efi_string(value);
    if (!is_efivarfs(dir)) {
        // A directory standing in for efivarfs (tests): an ordinary atomic file.
        write_file_atomic(dir, file, content);
        return;
    }
    // efivarfs cannot rename; a variable is set by one write(2) of attributes + data, which the
    // firmware applies as a whole (SetVariable).
    clear_immutable(dir, file);
    const int fd = ::openat(dir.fd(), file.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) throw_errno("open EFI variable", dir.path_of(file).string());
    Fd guard(fd);
    ssize_t n;
    do n = ::write(fd, content.data(), content.size());
    while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno("write EFI variable", dir.path_of(file).string());
    if (static_cast<size_t>(n) != content.size())
        throw Error("write EFI variable", dir.path_of(file).string(), "short write");
}

std::optional<std::string> read_variable(const std::filesystem::path& efivars, std::string_view name) {
    if (auto why = unreadable(efivars)) {
        spdlog::debug("EFI variable {}: {}", name, *why);
        return std::nullopt;
    }
    const Dir dir = Dir::open(efivars);
    const std::string file = variable_file(name);
    if (!dir.stat(file)) return std::nullopt;
    return with_context("read EFI variable", dir.path_of(file).string(), [&] {
        std::string value = decode_efi_string(read_file(dir, file));
        return value.empty() ? std::optional<std::string>{} : std::optional<std::string>{std::move(value)};
    });
}

}  // namespace

std::string with_default_line(std::string_view text, std::string_view value) {
    std::string out;
    bool done = false;
    while (!text.empty()) {
        const size_t nl = text.find('\n');
        const std::string_view line = text.substr(0, nl == std::string_view::npos ? text.size() : nl + 1);
        text.remove_prefix(line.size());
        std::string_view content = line;
        if (content.ends_with('\n')) content.remove_suffix(1);
        if (!is_default_line(content)) {
            out += line;
            continue;
        }
        if (done) continue;  // a later `default` would win over ours
        out += "default ";
        out += value;
        if (content.ends_with('\r')) out += '\r';
        out += '\n';
        done = true;
    }
    if (!done) {
        if (!out.empty() && out.back() != '\n') out += '\n';
        out += "default ";
        out += value;
        out += '\n';
    }
    return out;
}

std::optional<std::string> default_line(std::string_view text) {
    std::optional<std::string> value;
    while (!text.empty()) {
        const size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (line.ends_with('\r')) line.remove_suffix(1);
        if (!is_default_line(line)) continue;
        while (!line.empty() && is_blank(line.front())) line.remove_prefix(1);
        line.remove_prefix(std::string_view("default").size());
        while (!line.empty() && is_blank(line.front())) line.remove_prefix(1);
        while (!line.empty() && is_blank(line.back())) line.remove_suffix(1);
        value = line.empty() ? std::nullopt : std::optional<std::string>(std::string(line));
    }
    return value;
}

std::string encode_efi_string(std::string_view text) {
    std::string out;
    out.reserve(4 + 2 * text.size() + 2);
    for (int i = 0; i < 4; ++i) out += static_cast<char>((efi_attributes >> (8 * i)) & 0xff);
    for (const char c : text) {
        if (static_cast<unsigned char>(c) >= 0x80)
            throw Error("encode EFI variable", text, "only ASCII text is supported", Fault::InvalidInput);
        out += c;
        out += '\0';
    }
    out += '\0';
    out += '\0';
    return out;
}

std::string decode_efi_string(std::string_view content) {
    if (content.size() < 4 || (content.size() - 4) % 2 != 0)
        throw Error("decode EFI variable", "", "not a UTF-16 string (" + std::to_string(content.size()) + " bytes)",
                    Fault::InvalidInput);
    content.remove_prefix(4);
    std::string out;
    for (size_t i = 0; i < content.size(); i += 2) {
        const unsigned unit =
            static_cast<unsigned char>(content[i]) | (static_cast<unsigned>(static_cast<unsigned char>(content[i + 1])) << 8);
        if (unit == 0) break;  // the terminating NUL
        if (unit >= 0xd800 && unit <= 0xdfff)
            throw Error("decode EFI variable", "", "surrogate pairs are not supported", Fault::InvalidInput);
        if (unit < 0x80) {
            out += static_cast<char>(unit);
        } else if (unit < 0x800) {
            out += static_cast<char>(0xc0 | (unit >> 6));
            out += static_cast<char>(0x80 | (unit & 0x3f));
        } else {
            out += static_cast<char>(0xe0 | (unit >> 12));
            out += static_cast<char>(0x80 | ((unit >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (unit & 0x3f));
        }
    }
    return out;
}

std::string loader_glob(std::string_view pattern) { return std::string(pattern) + std::string(glob_suffix); }

bool valid_entry_pattern(std::string_view pattern) {
    if (pattern.find("**") != std::string::npos) return false;
    // A wildcard is some run of id characters: letters or digits, which must not make a counter.
    for (const char stand_in : {'x', '0'}) {
        std::string id(pattern);
        std::replace(id.begin(), id.end(), '*', stand_in);
        if (id == std::string(1, stand_in) || !valid_entry_id(id)) return false;
    }
    return true;
}

bool loader_before(const EntryFile& a, const EntryFile& b) {
    const auto cmp = [](auto x, auto y) { return (x > y) - (x < y); };
    const auto bad = [](const EntryFile& e) { return e.name.tries_left == 0u; };
    if (int r = cmp(bad(a), bad(b))) return r < 0;
    const bool a_key = !a.entry.sort_key.empty(), b_key = !b.entry.sort_key.empty();
    if (a_key != b_key) return a_key;
    if (a_key) {
        if (int r = a.entry.sort_key.compare(b.entry.sort_key)) return r < 0;
        if (int r = a.entry.machine_id.compare(b.entry.machine_id)) return r < 0;
        if (int r = naming::compare_versions(a.entry.version, b.entry.version)) return r > 0;
    }
    // sd-boot 252's id is the file name, counter included.
    if (int r = naming::compare_versions(a.file_name, b.file_name)) return r > 0;
    if (!a.name.tries_left || !b.name.tries_left) return false;
    if (int r = cmp(*a.name.tries_left, *b.name.tries_left)) return r > 0;
    return a.name.tries_done.value_or(0) < b.name.tries_done.value_or(0);
}

std::optional<std::string> select_entry(std::vector<EntryFile> entries, const std::optional<std::string>& oneshot_glob,
                                        const std::optional<std::string>& default_glob) {
    if (entries.empty()) return std::nullopt;
    std::stable_sort(entries.begin(), entries.end(), loader_before);
    for (const auto& glob : {oneshot_glob, default_glob}) {
        if (!glob) continue;
        for (const auto& e : entries)
            if (::fnmatch(glob->c_str(), e.file_name.c_str(), FNM_CASEFOLD) == 0) return e.name.id;
    }
    return entries.front().name.id;
}

void set_default_entry(const Dir& loader, std::string_view given, const std::filesystem::path& efivars) {
    check_pattern(given);
    const std::string pattern = loader_glob(given);
    with_context("set default boot entry", given, [&] {
        Dir dir = [&] {
            if (auto d = loader.try_open_dir("loader")) return std::move(*d);
            Dir d = loader.make_dir("loader");
            loader.sync();
            return d;
        }();
        std::string text;
        if (dir.stat("loader.conf")) text = read_file(dir, "loader.conf");
        const std::string updated = with_default_line(text, pattern);
        if (updated != text) write_file_atomic(dir, "loader.conf", updated);

        if (const auto why = unwritable(efivars)) {
            spdlog::debug("LoaderEntryDefault not set: {}", *why);
            return;
        }
        write_variable(efivars, "LoaderEntryDefault", pattern);
    });
}

namespace {
// The default glob as the loader reads it.
std::optional<std::string> default_glob(const Dir& loader, const std::filesystem::path& efivars) {
    if (auto value = read_variable(efivars, "LoaderEntryDefault")) return value;
    const auto dir = loader.try_open_dir("loader");
    if (!dir || !dir->stat("loader.conf")) return std::nullopt;
    return default_line(read_file(*dir, "loader.conf"));
}
}  // namespace

std::optional<std::string> default_entry(const Dir& loader, const std::filesystem::path& efivars) {
    if (auto value = default_glob(loader, efivars)) return pattern_in(std::move(*value));
    return std::nullopt;
}

std::optional<std::string> next_boot_entry(const std::vector<EntryFile>& entries, const Dir& loader,
                                           const std::filesystem::path& efivars) {
    return select_entry(entries, read_variable(efivars, "LoaderEntryOneShot"), default_glob(loader, efivars));
}

std::string_view to_string(OneShotMethod method) {
    switch (method) {
        case OneShotMethod::EfiVariable: return "efi-variable";
    }
    return "unknown";
}

OneShotMethod set_oneshot_entry(std::string_view id, const std::filesystem::path& efivars) {
    check_id(id);
    if (const auto why = unwritable(efivars))
        throw Error("set one-shot boot entry", id,
                    *why + "; a one-shot entry needs the EFI variable LoaderEntryOneShot. Without it, make the "
                           "entry the default, boot it, and set the default back (docs/boot.md)",
                    Fault::Failed);
    with_context("set one-shot boot entry", id, [&] { write_variable(efivars, "LoaderEntryOneShot", loader_glob(id)); });
    return OneShotMethod::EfiVariable;
}

std::optional<std::string> oneshot_entry(const std::filesystem::path& efivars) {
    if (auto value = read_variable(efivars, "LoaderEntryOneShot")) return pattern_in(std::move(*value));
    return std::nullopt;
}

}  // namespace strata::boot
