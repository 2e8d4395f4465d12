// strata: compose Linux systems out of btrfs subvolumes. This file only wires verbs together;
// each verb lives in cmd_<verb>.cpp and every operation in the library.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "base/log.hpp"
#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/exit_codes.hpp"

using namespace strata;

int main(int argc, char** argv) {
    cli::Context ctx;
    CLI::App app{"strata: an OS manager that composes Linux systems out of btrfs subvolumes"};
    app.name("strata");
    app.set_version_flag("--version", std::string("strata ") + STRATA_VERSION);
    app.require_subcommand(1);
    app.fallthrough();
    app.add_option("--pool", ctx.pool_path, "The pool: mount point of the btrfs top-level subvolume")
        ->type_name("PATH");
    app.add_option("--config", ctx.config_file,
                   "Read this configuration file and its FILE.d/*.toml drop-ins instead of /usr/lib/strata/strata.toml, /etc/strata/strata.toml and its .d drop-ins")
        ->type_name("FILE");
    app.add_option("--boot-dir", ctx.boot_dir,
                   "$BOOT for boot entries and kernels (default: boot.dir, else XBOOTLDR or the ESP as systemd finds them)")
        ->type_name("DIR");
    app.add_flag("-v,--verbose", ctx.verbose, "Log more (twice for trace)");
    app.add_flag("-q,--quiet", ctx.quiet, "Print only errors and requested data");
    app.footer(
        "Exit status: 0 ok, 1 failure, 2 usage or invalid name/value, 3 not found, 4 exists, 5 pool busy, 6 in use,\n"
        "100 update available (update --check).\n"
        "See 'strata COMMAND --help' and docs/ for details.");

    // Configuration and logging are set up before any verb runs (parse_complete_callback runs
    // after the global options are known, before the subcommand callbacks).
    app.parse_complete_callback([&] {
        if (ctx.config_file)
            ctx.config = config::load(config::config_files_for(*ctx.config_file));
        else
            ctx.config = config::load(config::config_files());
        const auto verbosity = ctx.quiet          ? log::Verbosity::Quiet
                               : ctx.verbose >= 2 ? log::Verbosity::Trace
                               : ctx.verbose == 1 ? log::Verbosity::Verbose
                                                  : log::Verbosity::Normal;
        log::setup(verbosity, ctx.config.log.level);
    });

    cli::register_list(app, ctx);
    cli::register_inspect(app, ctx);
    cli::register_pool(app, ctx);
    cli::register_import(app, ctx);
    cli::register_export(app, ctx);
    cli::register_remove(app, ctx);
    cli::register_root(app, ctx);
    cli::register_deploy(app, ctx);
    cli::register_status(app, ctx);
    cli::register_rollback(app, ctx);
    cli::register_pin(app, ctx);
    cli::register_gc(app, ctx);
    cli::register_factory(app, ctx);
    cli::register_factory_reset(app, ctx);
    cli::register_etc(app, ctx);
    cli::register_keygen(app, ctx);
    cli::register_publish(app, ctx);
    cli::register_remote(app, ctx);
    cli::register_update(app, ctx);
    cli::register_install(app, ctx);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const cli::ExitStatus& e) {
        return e.code;
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "strata: %s (see 'strata --help')\n", e.what());
        return cli::exit_usage;
    } catch (const Error& e) {
        std::fprintf(stderr, "strata: %s\n", e.what());
        return cli::exit_code_for(e.fault());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "strata: %s\n", e.what());
        return cli::exit_failure;
    }
    return cli::exit_ok;
}
