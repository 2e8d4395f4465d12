// strata publish: a vendor tree of the pool into a repository directory of signed static files.
#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"
#include "cli/progress.hpp"
#include "repo/publish.hpp"

namespace strata::cli {
namespace {

struct PublishOptions {
    std::filesystem::path repo_dir;
    std::string name;
    std::vector<std::string> parents;
    unsigned deltas_from = 0;
    std::optional<unsigned> keep;
    std::string changelog;
    int delta_level = repo::default_delta_level;
    std::filesystem::path key_file;
    std::filesystem::path announce_key_file;
    std::vector<std::filesystem::path> previous_key_files;
    bool json = false;
};

std::string read_key_file(const std::filesystem::path& file) {
    const auto dir = Dir::open(file.has_parent_path() ? file.parent_path() : std::filesystem::path("."));
    return read_file(dir, file.filename().string());
}

void run_publish(const Context& ctx, const PublishOptions& opts) {
    const auto key = with_context("read key", opts.key_file.string(),
                                  [&] { return sign::parse_secret_key(read_key_file(opts.key_file)); });
    repo::PublishOptions options;
    options.parents = opts.parents;
    options.deltas_from = opts.deltas_from;
    options.keep = opts.keep;
    options.changelog = opts.changelog;
    options.delta_level = opts.delta_level;
    if (!opts.announce_key_file.empty())
        options.announce = with_context("read key", opts.announce_key_file.string(), [&] {
            return sign::parse_public_key(read_key_file(opts.announce_key_file));
        });
    for (const auto& f : opts.previous_key_files)
        options.previous_keys.push_back(
            with_context("read key", f.string(), [&] { return sign::parse_public_key(read_key_file(f)); }));
    options.lock_timeout = ctx.config.pool.lock_timeout;

    const auto pool = ctx.open_pool();
    // The lock keeps the trees being sent (and the uuids the index records of them) from being
    // replaced or removed by another strata command halfway through.
    const auto lock = ctx.lock(pool);
    ProgressLine progress(!ctx.quiet && !opts.json);
    options.progress = progress.callback();
    const auto report = repo::publish(pool, opts.repo_dir, opts.name, key, options);

    if (opts.json) {
        print_json(nlohmann::json{{"name", report.tree.name},
                                  {"repository", opts.repo_dir.string()},
                                  {"serial", report.serial},
                                  {"written", report.written},
                                  {"reused", report.reused},
                                  {"pruned", report.pruned},
                                  {"tree", nlohmann::json::parse(repo::render_tree(report.tree))}});
        return;
    }
    if (ctx.quiet) return;
    std::printf("Published '%s' to '%s' (serial %llu).\n", report.tree.name.c_str(), opts.repo_dir.c_str(),
                static_cast<unsigned long long>(report.serial));
    for (const auto& p : report.tree.payloads) {
        const bool written = std::find(report.written.begin(), report.written.end(), p.file) != report.written.end();
        const bool reused = std::find(report.reused.begin(), report.reused.end(), p.file) != report.reused.end();
        if (!written && !reused) continue;
        std::printf("  %s %s (%s, stream %s%s)\n", written ? "wrote " : "reused", p.file.c_str(),
                    human_bytes(static_cast<double>(p.compressed_size)).c_str(),
                    human_bytes(static_cast<double>(p.size)).c_str(),
                    p.parent ? (", from '" + p.parent->name + "'").c_str() : "");
    }
    for (const auto& name : report.pruned) std::printf("  pruned '%s'\n", name.c_str());
}

}  // namespace

void register_publish(CLI::App& app, Context& ctx) {
    auto opts = std::make_shared<PublishOptions>();
    auto* cmd = app.add_subcommand("publish", "Publish a vendor tree into a signed repository of send streams");
    cmd->add_option("REPO-DIR", opts->repo_dir, "The repository directory (created if missing)")->required();
    cmd->add_option("NAME", opts->name, "The read-only vendor tree to publish")->required();
    auto* parent = cmd->add_option("--parent", opts->parents,
                                   "Also publish a delta from this ancestor (repeatable)")
                       ->type_name("NAME");
    auto* deltas = cmd->add_option("--deltas-from", opts->deltas_from,
                                   "Also publish deltas from the N newest older versions of the series in the pool")
                       ->type_name("N");
    parent->excludes(deltas);
    cmd->add_option("--keep", opts->keep, "Keep only the N newest versions of the series in the repository")
        ->type_name("N")
        ->check(CLI::PositiveNumber);
    cmd->add_option("--changelog", opts->changelog, "Free text recorded with the version")->type_name("TEXT");
    cmd->add_option("--delta-level", opts->delta_level,
                    "zstd level of the strata delta payloads (default " + std::to_string(repo::default_delta_level) +
                        "; 19 is ~5 % smaller and takes twice the time)")
        ->type_name("1-19")
        ->check(CLI::Range(1, 19));
    cmd->add_option("--key", opts->key_file, "The minisign secret key that signs the index (unencrypted)")
        ->type_name("SECRET-KEY-FILE")
        ->required();
    cmd->add_option("--announce-key", opts->announce_key_file,
                    "Announce this new public key in the index, signed by --key (key rotation)")
        ->type_name("PUB-FILE");
    cmd->add_option("--previous-key", opts->previous_key_files,
                    "Also accept an existing index signed by this key (after a rotation; repeatable)")
        ->type_name("PUB-FILE");
    cmd->add_flag("--json", opts->json, "Print the report and the tree's index entry as JSON");
    cmd->callback([&ctx, opts] { run_publish(ctx, *opts); });
}

}  // namespace strata::cli
