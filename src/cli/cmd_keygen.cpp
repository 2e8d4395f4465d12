// strata keygen: a minisign-compatible Ed25519 key pair for signing repositories.
#include <cstdio>
#include <memory>

#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"
#include "sign/minisign.hpp"

namespace strata::cli {
namespace {

struct KeygenOptions {
    std::filesystem::path prefix;
    std::string comment;
    bool force = false;
};

void run_keygen(const Context& ctx, const KeygenOptions& opts) {
    const auto name = opts.prefix.filename().string();
    if (name.empty() || name == "." || name == "..")
        throw Error("keygen", opts.prefix.string(), "the prefix must end in a file name", Fault::InvalidInput);
    const auto parent = opts.prefix.has_parent_path() ? opts.prefix.parent_path() : std::filesystem::path(".");
    const Dir dir = Dir::open(parent);
    const auto pair = sign::generate_key_pair();
    try {
        sign::write_key_files(dir, name, pair, opts.comment, opts.force);
    } catch (Error& e) {
        if (e.fault() != Fault::Exists) throw;
        throw Error("", "", std::string(e.what()) + " (--force replaces the key pair)", Fault::Exists);
    }
    if (ctx.quiet) return;
    // The paths as the user spelled the prefix, not as the parent directory was opened.
    print_report({{"Key ID", sign::format_key_id(pair.public_key.id)},
                  {"Public key", opts.prefix.string() + ".pub"},
                  {"Secret key", opts.prefix.string() + ".key (unencrypted: keep it secret)"}});
    std::printf("\nVerify a signature with: minisign -V -P %s -m FILE\n",
                sign::public_key_base64(pair.public_key).c_str());
}

}  // namespace

void register_keygen(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<KeygenOptions>();
    auto* cmd = app.add_subcommand("keygen", "Create a key pair for signing repositories (minisign format)");
    cmd->add_option("-o,--output", opts->prefix, "Write PREFIX.pub (public, 0644) and PREFIX.key (secret, 0600)")
        ->type_name("PREFIX")
        ->required();
    cmd->add_option("--comment", opts->comment, "Untrusted comment in both files (default: 'strata public/secret key ID')")
        ->type_name("TEXT");
    cmd->add_flag("--force", opts->force, "Replace an existing key pair");
    cmd->footer("The secret key is not encrypted, so it can sign unattended; minisign -S -s PREFIX.key uses it as is.");
    cmd->callback([&ctx, opts] { run_keygen(ctx, *opts); });
}

}  // namespace strata::cli
