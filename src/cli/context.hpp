#pragma once
// What every verb gets: the global options and the loaded configuration.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "deploy/deployment.hpp"
#include "pool/pool.hpp"

namespace strata::cli {

struct Context {
    std::optional<std::filesystem::path> pool_path;  // --pool, else configuration
    std::optional<std::filesystem::path> config_file; // --config replaces the system files
    std::optional<std::filesystem::path> boot_dir;    // --boot-dir, else configuration, else found
    int verbose = 0;
    bool quiet = false;
    config::Config config;

    std::filesystem::path effective_pool_path() const { return pool_path.value_or(config.pool.path); }
    pool::Pool open_pool() const { return pool::Pool::open(effective_pool_path()); }
    pool::Lock lock(const pool::Pool& p) const { return p.lock(config.pool.lock_timeout); }
    deploy::BootTarget boot_target() const;
    // As boot_target(), but nullopt when none is configured and none can be found (a build
    // host without an ESP); a configured one that is missing is still an error.
    std::optional<deploy::BootTarget> boot_target_if_any() const;
    // Where drop-ins of the configuration in use go: /etc/strata/strata.toml.d, or FILE.d.
    std::filesystem::path config_dropin_dir() const {
        return config_file ? std::filesystem::path(config_file->string() + ".d") : "/etc/strata/strata.toml.d";
    }
};

// One function per verb file registers its subcommand; the callback does the work.
void register_list(CLI::App& app, Context& ctx);
void register_inspect(CLI::App& app, Context& ctx);
void register_pool(CLI::App& app, Context& ctx);
void register_import(CLI::App& app, Context& ctx);
void register_export(CLI::App& app, Context& ctx);
void register_remove(CLI::App& app, Context& ctx);
void register_root(CLI::App& app, Context& ctx);
void register_deploy(CLI::App& app, Context& ctx);
void register_status(CLI::App& app, Context& ctx);
void register_rollback(CLI::App& app, Context& ctx);
void register_pin(CLI::App& app, Context& ctx);
void register_gc(CLI::App& app, Context& ctx);
void register_factory(CLI::App& app, Context& ctx);
void register_factory_reset(CLI::App& app, Context& ctx);
void register_etc(CLI::App& app, Context& ctx);
void register_keygen(CLI::App& app, Context& ctx);
void register_publish(CLI::App& app, Context& ctx);
void register_remote(CLI::App& app, Context& ctx);
void register_update(CLI::App& app, Context& ctx);
void register_install(CLI::App& app, Context& ctx);

}  // namespace strata::cli
