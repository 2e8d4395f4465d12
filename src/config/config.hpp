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

struct Config {
    PoolSettings pool;
    BootSettings boot;
    GcSettings gc;
    LogSettings log;
    FactorySettings factory;
};

// The files that make up the configuration, in the order they apply; only those that exist.
// root prefixes every path, so tests can point it at a temporary tree.
std::vector<std::filesystem::path> config_files(const std::filesystem::path& root = "/");

// Reads files in order on top of the built-in defaults; later files override earlier ones key by
// key. A listed file that cannot be read is an error, not skipped.
Config load(std::span<const std::filesystem::path> files);

// Applies one file's text on top of base. source names the file in error messages.
Config parse(std::string_view text, std::string_view source, Config base = {});

}  // namespace strata::config
