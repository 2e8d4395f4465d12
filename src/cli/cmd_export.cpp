// strata export: a vendor tree out as a btrfs send stream.
#include <unistd.h>

#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"
#include "cli/progress.hpp"
#include "vendor/export.hpp"

namespace strata::cli {
namespace {

struct ExportOptions {
    std::string name;
    std::optional<std::string> parent;
    std::string output = "-";
    std::string compress = "none";
    bool json = false;
};

void run_export(const Context& ctx, const ExportOptions& opts) {
    const bool to_stdout = opts.output == "-";
    if (to_stdout && ::isatty(STDOUT_FILENO) == 1)
        throw Error("export", opts.name, "refusing to write a binary stream to a terminal; use -o FILE or a pipe",
                    Fault::InvalidInput);
    const auto pool = ctx.open_pool();
    ProgressLine progress(!ctx.quiet);
    vendor::ExportOptions options;
    options.parent = opts.parent;
    options.compression = opts.compress == "zstd" ? vendor::Compression::Zstd : vendor::Compression::None;
    options.progress = progress.callback();
    const auto result = to_stdout ? vendor::export_stream(pool, opts.name, options, STDOUT_FILENO)
                                  : vendor::export_stream_to_file(pool, opts.name, options, opts.output);
    // With the stream on stdout, the report must not mix into it.
    std::FILE* report = to_stdout ? stderr : stdout;
    if (opts.json) {
        nlohmann::json j{{"name", result.name},
                         {"parent", result.parent ? nlohmann::json(*result.parent) : nlohmann::json(nullptr)},
                         {"compression", opts.compress},
                         {"bytes", result.bytes},
                         {"output", to_stdout ? nlohmann::json(nullptr) : nlohmann::json(opts.output)}};
        std::fprintf(report, "%s\n", j.dump(2).c_str());
    } else if (!ctx.quiet && !to_stdout) {
        std::fprintf(report, "Exported '%s'%s to '%s' (%s).\n", result.name.c_str(),
                     result.parent ? (" against '" + *result.parent + "'").c_str() : "", opts.output.c_str(),
                     human_bytes(static_cast<double>(result.bytes)).c_str());
    }
}

}  // namespace

void register_export(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<ExportOptions>();
    auto* cmd = app.add_subcommand("export", "Write a vendor tree as a btrfs send stream");
    cmd->add_option("NAME", opts->name, "The read-only subvolume to send")->required();
    cmd->add_option("--parent", opts->parent,
                    "Send only the difference to this ancestor, which the receiver must have")
        ->type_name("PARENT");
    cmd->add_option("-o,--output", opts->output, "Write to FILE (complete or not at all); - is stdout (default)")
        ->type_name("FILE");
    cmd->add_option("--compress", opts->compress, "Compress the stream")
        ->check(CLI::IsMember({"none", "zstd"}))
        ->type_name("none|zstd");
    cmd->add_flag("--json", opts->json, "Print a JSON report (to stderr when the stream goes to stdout)");
    cmd->callback([&ctx, opts] { run_export(ctx, *opts); });
}

}  // namespace strata::cli
