#pragma once
// The configuration: TOML files turned into plain structs. This is the only module that sees toml++;
// everything above it reads Config and never a file.
//
// Files apply in order, each overriding the keys it sets (systemd's drop-in model):
//   /usr/lib/strata/strata.toml          vendor defaults
//   /etc/strata/strata.toml              the administrator's file
//   /etc/strata/strata.toml.d/*.toml     drop-ins, by file name
// Keys and defaults are listed in docs/configuration.md. Anything unknown or malformed is an
// error (Fault::InvalidInput) naming file and line, so a typo never silently falls back to a default:
//   config '/etc/strata/strata.toml' line 3: unknown key 'pool.pth'
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata::config {

struct PoolSettings {
    std::filesystem::path path = "/var/lib/strata/pool";      // where the pool is mounted
    std::filesystem::path image = "/var/lib/strata/pool.img";  // backing file of `pool init`
    uint64_t image_size = 4ull << 30;                          // bytes, for a new image
    std::chrono::milliseconds lock_timeout{30000};             // wait for another command's lock
};

struct BootSettings {
    std::optional<std::filesystem::path> dir;  // $BOOT; unset: found as systemd does
    unsigned tries = 3;                        // boot counting for new entries; 0: off
    std::vector<std::string> kernel_args;      // appended to every entry's options
};

struct GcSettings {
    unsigned keep = 3;  // usr versions kept per vendor and arch
};

struct LogSettings {
    std::string level = "info";  // trace, debug, info, warning, error, critical or off
};

struct FactorySettings {
    // Patterns `strata factory prepare` leaves out besides its defaults (docs/factory.md).
    std::vector<std::string> exclude;
};

// A repository to update from: [remote.NAME] (docs/updates.md).
struct RemoteSettings {
    std::string url;                               // file://, http:// or https://
    std::vector<std::filesystem::path> keys;       // trusted .pub files or key dirs; empty: the system's
    bool insecure = false;                         // accept an unsigned or badly signed index (said loudly)
};

struct UpdateSettings {
    std::string remote;            // the remote `update` uses; "" : the only one configured
    std::string policy = "check";  // what strata-update.service does: none, check or stage
};

struct Config {
    PoolSettings pool;
    BootSettings boot;
    GcSettings gc;
    LogSettings log;
    FactorySettings factory;
    std::map<std::string, RemoteSettings> remotes;  // by name
    UpdateSettings update;
};

// The files that make up the configuration, in the order they apply; only those that exist.
// root prefixes every path, so tests can point it at a temporary tree.
std::vector<std::filesystem::path> config_files(const std::filesystem::path& root = "/");

// Reads files in order on top of the built-in defaults; later files override earlier ones key by
// key. A listed file that cannot be read is an error, not skipped.
Config load(std::span<const std::filesystem::path> files);

// The files `--config FILE` stands for: FILE, then its drop-ins FILE.d/*.toml by name.
std::vector<std::filesystem::path> config_files_for(const std::filesystem::path& file);

// Where `strata remote add` keeps a remote: a drop-in of its own in the drop-in directory of
// the configuration in use (/etc/strata/strata.toml.d, or FILE.d for --config FILE).
std::filesystem::path remote_dropin(const std::filesystem::path& dropin_dir, std::string_view name);
// The drop-in's text; the name must be a plain word ([A-Za-z0-9_.-]), the url file/http/https.
std::string render_remote(std::string_view name, const RemoteSettings& remote);
// Fault::InvalidInput unless name is a usable remote name.
void check_remote_name(std::string_view name);

// Applies one file's text on top of base. source names the file in error messages.
Config parse(std::string_view text, std::string_view source, Config base = {});

}  // namespace strata::config
