#include "config/config.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <system_error>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "base/error.hpp"
#include "base/escape.hpp"
#include "base/fd.hpp"
#include "base/size.hpp"

namespace strata::config {
namespace {

// Beyond this the lock's deadline (steady_clock, nanoseconds) could overflow; 31 years is forever
// for anyone who writes a large number to mean "wait as long as it takes".
constexpr int64_t max_lock_timeout_sec = 1'000'000'000;

constexpr std::array<std::string_view, 7> log_levels = {"trace", "debug",    "info", "warning",
                                                        "error", "critical", "off"};

// toml++ quotes pieces of the input in its descriptions; keep the message on one line.
std::string one_line(std::string_view text) {
    std::string out;
    for (char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f)
            out += escape(std::string_view(&c, 1));
        else
            out += c;
    }
    return out;
}

[[noreturn]] void fail(std::string_view source, toml::source_index line, std::string_view reason) {
    std::string message = "config '" + escape(source) + "'";
    if (line != 0) message += " line " + std::to_string(line);
    message += ": ";
    message += reason;
    throw Error("", "", message, Fault::InvalidInput);
}

std::string_view type_name(const toml::node& node) {
    switch (node.type()) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    case toml::node_type::none: break;
    }
    return "nothing";
}

// Shortest round-trip form, by fmt: std::to_chars(double) would link libstdc++'s floating_to_chars,
// which needs libm (see toml_string below for why strata keeps libm out).
std::string format_double(double value) { return fmt::format("{}", value); }

// One key's value as found in the file: what the setters need to check it and to complain.
class Field {
public:
    Field(const toml::node& node, std::string name, std::string_view source)
        : node_(node), name_(std::move(name)), source_(source) {}

    const toml::node& node() const { return node_; }
    const std::string& name() const { return name_; }

    // "'<key>' <what>", e.g. "'pool.path' must be an absolute path".
    [[noreturn]] void invalid(std::string_view what) const {
        fail_raw("'" + name_ + "' " + std::string(what));
    }
    [[noreturn]] void fail_raw(std::string_view reason) const {
        fail(source_, node_.source().begin.line, reason);
    }
    [[noreturn]] void wrong_type(std::string_view expected) const {
        invalid("must be " + std::string(expected) + ", got " + std::string(type_name(node_)));
    }

    const std::string& string() const {
        const auto* value = node_.as_string();
        if (!value) wrong_type("a string");
        return value->get();
    }

private:
    const toml::node& node_;
    std::string name_;
    std::string_view source_;
};

std::filesystem::path absolute_path(const Field& field) {
    const std::string& text = field.string();
    // The path goes to system calls as a C string; a NUL would silently cut it short.
    if (text.find('\0') != std::string::npos) field.invalid("must not contain NUL characters");
    std::filesystem::path path(text);
    if (!path.is_absolute()) field.invalid("must be an absolute path");
    return path;
}

uint64_t image_size(const Field& field) {
    if (const auto* number = field.node().as_integer()) {
        if (number->get() <= 0)
            field.invalid("must be greater than zero, got " + std::to_string(number->get()));
        return static_cast<uint64_t>(number->get());
    }
    const auto* value = field.node().as_string();
    if (!value) field.wrong_type("a size like '4G' or a number of bytes");
    const std::string& text = value->get();
    // parse_size quotes its input verbatim; only hand it text that keeps the message on one line.
    if (escape(text) != text)
        field.invalid("must be a size like '4G' or a number of bytes, got '" + escape(text) + "'");
    uint64_t bytes = 0;
    try {
        bytes = parse_size(text);
    } catch (const Error& e) {
        field.fail_raw("'" + field.name() + "': " + e.what());
    }
    if (bytes == 0) field.invalid("must be greater than zero, got '" + text + "'");
    return bytes;
}


std::chrono::milliseconds lock_timeout(const Field& field) {
    const auto too_large = "must be at most " + std::to_string(max_lock_timeout_sec) + ", got ";
    if (const auto* integer = field.node().as_integer()) {
        const int64_t seconds = integer->get();
        if (seconds < 0) field.invalid("must not be negative, got " + std::to_string(seconds));
        if (seconds > max_lock_timeout_sec) field.invalid(too_large + std::to_string(seconds));
        return std::chrono::seconds(seconds);
    }
    if (const auto* real = field.node().as_floating_point()) {
        const double seconds = real->get();
        if (std::isnan(seconds)) field.invalid("must be a number of seconds, got nan");
        if (seconds < 0) field.invalid("must not be negative, got " + format_double(seconds));
        if (seconds > static_cast<double>(max_lock_timeout_sec))
            field.invalid(too_large + format_double(seconds));
        return std::chrono::round<std::chrono::milliseconds>(std::chrono::duration<double>(seconds));
    }
    field.wrong_type("a number of seconds");
}

std::string log_level(const Field& field) {
    const std::string& text = field.string();
    if (std::find(log_levels.begin(), log_levels.end(), text) == log_levels.end()) {
        std::string choices;
        for (std::string_view level : log_levels) {
            if (!choices.empty()) choices += ", ";
            choices += level;
        }
        field.invalid("must be one of " + choices + ", got '" + escape(text) + "'");
    }
    return text;
}

unsigned integer_in(const Field& field, int64_t min, int64_t max) {
    const auto* integer = field.node().as_integer();
    if (!integer) field.wrong_type("an integer");
    const int64_t value = integer->get();
    if (value < min || value > max)
        field.invalid("must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                      std::to_string(value));
    return static_cast<unsigned>(value);
}

// Kernel command line words: no whitespace or control characters inside one.
std::vector<std::string> kernel_args(const Field& field) {
    const auto* array = field.node().as_array();
    if (!array) field.wrong_type("an array of strings");
    std::vector<std::string> args;
    for (const auto& element : *array) {
        const auto* value = element.as_string();
        if (!value) field.invalid("must contain only strings");
        const std::string& text = value->get();
        const bool bad = text.empty() || std::any_of(text.begin(), text.end(), [](char c) {
                             return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
                         });
        if (bad) field.invalid("must hold single words without spaces, got '" + escape(text) + "'");
        args.push_back(text);
    }
    return args;
}

// Paths in an OS tree below etc/ or var/; the glob syntax itself is factory's to check.
std::vector<std::string> exclude_patterns(const Field& field) {
    const auto* array = field.node().as_array();
    if (!array) field.wrong_type("an array of strings");
    std::vector<std::string> patterns;
    for (const auto& element : *array) {
        const auto* value = element.as_string();
        if (!value) field.invalid("must contain only strings");
        const std::string& text = value->get();
        std::string_view rest = text;
        while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
        const bool control = std::any_of(text.begin(), text.end(), [](char c) {
            return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
        });
        if (control || !(rest.starts_with("etc/") || rest.starts_with("var/")) || rest.size() == 4)
            field.invalid("must hold paths below etc/ or var/, got '" + escape(text) + "'");
        patterns.push_back(text);
    }
    return patterns;
}

std::string remote_url(const Field& field) {
    const std::string& text = field.string();
    const bool known = text.starts_with("file:///") || text.starts_with("http://") || text.starts_with("https://");
    const bool bad = std::any_of(text.begin(), text.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
    });
    if (!known || bad) field.invalid("must be a file:///, http:// or https:// URL, got '" + escape(text) + "'");
    return text;
}

std::vector<std::filesystem::path> key_paths(const Field& field) {
    const auto* array = field.node().as_array();
    if (!array) field.wrong_type("an array of absolute paths");
    std::vector<std::filesystem::path> paths;
    for (const auto& element : *array) {
        const auto* value = element.as_string();
        if (!value || value->get().empty() || value->get().front() != '/' ||
            value->get().find('\0') != std::string::npos)
            field.invalid("must hold absolute paths of .pub files or key directories");
        paths.emplace_back(value->get());
    }
    return paths;
}

std::string update_policy(const Field& field) {
    const std::string& text = field.string();
    if (text != "none" && text != "check" && text != "stage")
        field.invalid("must be one of none, check, stage, got '" + escape(text) + "'");
    return text;
}

// Every key there is; anything else in a file is a mistake worth stopping for.
struct Key {
    std::string_view section;
    std::string_view name;
    void (*apply)(const Field&, Config&);
};

constexpr Key keys[] = {
    {"pool", "path", [](const Field& f, Config& c) { c.pool.path = absolute_path(f); }},
    {"pool", "image", [](const Field& f, Config& c) { c.pool.image = absolute_path(f); }},
    {"pool", "image-size", [](const Field& f, Config& c) { c.pool.image_size = image_size(f); }},
    {"pool", "lock-timeout-sec", [](const Field& f, Config& c) { c.pool.lock_timeout = lock_timeout(f); }},
    {"boot", "dir", [](const Field& f, Config& c) { c.boot.dir = absolute_path(f); }},
    {"boot", "tries", [](const Field& f, Config& c) { c.boot.tries = integer_in(f, 0, 100); }},
    {"boot", "kernel-args", [](const Field& f, Config& c) { c.boot.kernel_args = kernel_args(f); }},
    {"gc", "keep", [](const Field& f, Config& c) { c.gc.keep = integer_in(f, 1, 1000); }},
    {"log", "level", [](const Field& f, Config& c) { c.log.level = log_level(f); }},
    {"factory", "exclude", [](const Field& f, Config& c) { c.factory.exclude = exclude_patterns(f); }},
    {"update", "remote", [](const Field& f, Config& c) { c.update.remote = f.string(); }},
    {"update", "policy", [](const Field& f, Config& c) { c.update.policy = update_policy(f); }},
};

bool is_section(std::string_view name) {
    return std::any_of(std::begin(keys), std::end(keys), [&](const Key& k) { return k.section == name; });
}

const Key* find_key(std::string_view section, std::string_view name) {
    const auto* it = std::find_if(std::begin(keys), std::end(keys),
                                  [&](const Key& k) { return k.section == section && k.name == name; });
    return it == std::end(keys) ? nullptr : it;
}

struct Entry {
    const toml::key* key;
    const toml::node* node;
    toml::source_position position() const {
        return key->source().begin.line != 0 ? key->source().begin : node->source().begin;
    }
};

// toml++ tables are ordered by key; walking them in file order makes the first mistake in the
// file the one reported, which is the one a reader fixes first.
std::vector<Entry> in_file_order(const toml::table& table) {
    std::vector<Entry> entries;
    for (auto&& [key, node] : table) entries.push_back({&key, &node});
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
        const auto pa = a.position(), pb = b.position();
        return pa.line != pb.line ? pa.line < pb.line : pa.column < pb.column;
    });
    return entries;
}

// [remote.NAME] tables: one per remote, keys of their own.
void apply_remotes(const toml::table& table, std::string_view source, Config& config) {
    for (const Entry& entry : in_file_order(table)) {
        const std::string name(entry.key->str());
        const Field remote_field(*entry.node, "remote." + name, source);
        const auto* remote = entry.node->as_table();
        if (!remote) remote_field.wrong_type("a table");
        try {
            check_remote_name(name);
        } catch (const Error& e) {
            fail(source, entry.position().line, e.what());
        }
        RemoteSettings settings = config.remotes[name];
        for (const Entry& item : in_file_order(*remote)) {
            const std::string key(item.key->str());
            const Field field(*item.node, "remote." + name + "." + key, source);
            if (key == "url") settings.url = remote_url(field);
            else if (key == "keys") settings.keys = key_paths(field);
            else if (key == "insecure") {
                const auto* flag = item.node->as_boolean();
                if (!flag) field.wrong_type("true or false");
                settings.insecure = flag->get();
            } else {
                fail(source, item.position().line, "unknown key 'remote." + escape(name) + "." + escape(key) + "'");
            }
        }
        if (settings.url.empty()) fail(source, entry.position().line, "'remote." + name + "' needs a url");
        config.remotes[name] = std::move(settings);
    }
}

void apply_section(std::string_view section, const toml::table& table, std::string_view source,
                   Config& config) {
    for (const Entry& entry : in_file_order(table)) {
        const std::string_view name = entry.key->str();
        const Key* key = find_key(section, name);
        if (!key)
            fail(source, entry.position().line,
                 "unknown key '" + std::string(section) + "." + escape(name) + "'");
        key->apply(Field(*entry.node, std::string(section) + "." + std::string(name), source), config);
    }
}

std::string read_config(const std::filesystem::path& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd) throw_errno("read config", path.string());
    std::string text;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("read config", path.string());
        }
        if (n == 0) return text;
        text.append(buf, static_cast<size_t>(n));
    }
}

}  // namespace

std::vector<std::filesystem::path> config_files(const std::filesystem::path& root) {
    namespace fs = std::filesystem;
    std::vector<fs::path> files;
    for (const char* name : {"usr/lib/strata/strata.toml", "etc/strata/strata.toml"}) {
        fs::path file = root / name;
        std::error_code ec;
        // Anything but plain absence is listed, so that load() reports why it cannot be read.
        if (fs::status(file, ec).type() != fs::file_type::not_found) files.push_back(std::move(file));
    }

    const fs::path dropin_dir = root / "etc/strata/strata.toml.d";
    std::error_code ec;
    fs::directory_iterator it(dropin_dir, ec);
    if (ec == std::errc::no_such_file_or_directory) return files;
    std::vector<fs::path> dropins;
    for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
        const std::string name = it->path().filename().native();
        // Hidden names are editors' lock and swap files (emacs' ".#x.toml"), not configuration.
        if (name.starts_with('.') || !name.ends_with(".toml")) continue;
        std::error_code status_ec;
        const auto type = it->status(status_ec).type();  // follows symlinks
        if (type == fs::file_type::not_found || type == fs::file_type::directory) continue;
        dropins.push_back(it->path());
    }
    if (ec) throw Error("read config directory", dropin_dir.string(), ec.value());
    std::sort(dropins.begin(), dropins.end(), [](const fs::path& a, const fs::path& b) {
        return a.filename().native() < b.filename().native();
    });
    files.insert(files.end(), dropins.begin(), dropins.end());
    return files;
}

Config load(std::span<const std::filesystem::path> files) {
    Config config;
    for (const auto& file : files) config = parse(read_config(file), file.string(), std::move(config));
    return config;
}

Config parse(std::string_view text, std::string_view source, Config base) {
#if TOML_EXCEPTIONS
    toml::table root;
    try {
        root = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        fail(source, e.source().begin.line, one_line(e.description()));
    }
#else
    const toml::parse_result result = toml::parse(text, source);
    if (!result) fail(source, result.error().source().begin.line, one_line(result.error().description()));
    const toml::table& root = result.table();
#endif

    for (const Entry& entry : in_file_order(root)) {
        const std::string_view name = entry.key->str();
        if (name == "remote") {
            const auto* remotes = entry.node->as_table();
            if (!remotes) Field(*entry.node, "remote", source).wrong_type("a table of remotes");
            apply_remotes(*remotes, source, base);
            continue;
        }
        if (!is_section(name))
            fail(source, entry.position().line,
                 (entry.node->is_table() ? "unknown section '" : "unknown key '") + escape(name) + "'");
        const Field field(*entry.node, std::string(name), source);
        const auto* table = entry.node->as_table();
        if (!table) field.wrong_type("a table");
        apply_section(name, *table, source, base);
    }
    return base;
}

std::vector<std::filesystem::path> config_files_for(const std::filesystem::path& file) {
    namespace fs = std::filesystem;
    std::vector<fs::path> files{file};
    const fs::path dropin_dir = file.string() + ".d";
    std::error_code ec;
    std::vector<fs::path> dropins;
    for (fs::directory_iterator it(dropin_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
        const std::string name = it->path().filename().native();
        if (!name.starts_with('.') && name.ends_with(".toml")) dropins.push_back(it->path());
    }
    std::sort(dropins.begin(), dropins.end());
    files.insert(files.end(), dropins.begin(), dropins.end());
    return files;
}

void check_remote_name(std::string_view name) {
    const bool ok = !name.empty() && name.size() <= 64 && name.front() != '.' &&
                    std::all_of(name.begin(), name.end(), [](char c) {
                        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                               c == '-' || c == '.';
                    });
    if (!ok)
        throw Error("", "", "invalid remote name '" + escape(name) + "': use letters, digits, '_', '-' and '.'",
                    Fault::InvalidInput);
}

std::filesystem::path remote_dropin(const std::filesystem::path& dropin_dir, std::string_view name) {
    check_remote_name(name);
    return dropin_dir / ("remote-" + std::string(name) + ".toml");
}

// A TOML basic string (TOML 1.0, "String"): quote, backslash and control characters escaped.
// The drop-in is written by hand rather than by toml++'s formatter, whose column counting needs
// libm's log10: that one symbol would make every strata command map libm at start-up (~2 ms of
// a cold `strata deploy`). What is written is parsed back below, so a mistake here cannot
// reach a file.
namespace {

std::string toml_string(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\t': out += "\\t"; break;
        case '\n': out += "\\n"; break;
        case '\f': out += "\\f"; break;
        case '\r': out += "\\r"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20 || c == '\x7f') {
                static constexpr char hex[] = "0123456789ABCDEF";
                const auto u = static_cast<unsigned char>(c);
                out += "\\u00";
                out += hex[u >> 4];
                out += hex[u & 0xf];
            } else {
                out += c;
            }
        }
    }
    return out + "\"";
}

}  // namespace

std::string render_remote(std::string_view name, const RemoteSettings& remote) {
    check_remote_name(name);
    std::string out = "# Written by `strata remote add`; `strata remote remove " + std::string(name) + "` deletes it.\n";
    out += "[remote." + toml_string(name) + "]\n";
    out += "url = " + toml_string(remote.url) + "\n";
    if (!remote.keys.empty()) {
        out += "keys = [";
        for (size_t i = 0; i < remote.keys.size(); ++i) out += (i ? ", " : "") + toml_string(remote.keys[i].string());
        out += "]\n";
    }
    if (remote.insecure) out += "insecure = true\n";
    // What we write must read back the same, or the remote would change behind the admin's back.
    const Config back = parse(out, "remote drop-in");
    const auto it = back.remotes.find(std::string(name));
    if (it == back.remotes.end() || it->second.url != remote.url || it->second.keys != remote.keys ||
        it->second.insecure != remote.insecure)
        throw Error("write remote", std::string(name), "the settings do not survive a round trip", Fault::InvalidInput);
    return out;
}

}  // namespace strata::config
