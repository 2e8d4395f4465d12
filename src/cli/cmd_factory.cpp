// strata factory: make a tree stateless (prepare) and fill a root instance from a usr's factory
// defaults offline (populate). docs/factory.md.
#include "base/error.hpp"
#include "cli/context.hpp"
#include "cli/output.hpp"
#include "deploy/database.hpp"
#include "factory/populate.hpp"
#include "factory/prepare.hpp"

namespace strata::cli {
namespace {

struct PrepareOptions {
    std::filesystem::path tree;
    std::vector<std::string> exclude;
    bool json = false;
};

void run_prepare(const Context& ctx, const PrepareOptions& opts) {
    factory::PrepareOptions options;
    options.exclude = ctx.config.factory.exclude;
    options.exclude.insert(options.exclude.end(), opts.exclude.begin(), opts.exclude.end());
    const auto report = factory::prepare(opts.tree, options);
    if (opts.json) {
        auto rules = nlohmann::json::array();
        for (const auto& r : report.rules) rules.push_back(factory::render_rule(r));
        print_json({{"tree", opts.tree.string()},
                    {"rules_file", std::string(factory::rules_path)},
                    {"rules", rules},
                    {"excluded", report.excluded}});
    } else if (!ctx.quiet) {
        std::printf("Prepared '%s': %zu rules in %s, %zu paths excluded.\n", opts.tree.c_str(), report.rules.size(),
                    std::string(factory::rules_path).c_str(), report.excluded.size());
    }
}

struct PopulateOptions {
    std::string root;
    std::optional<std::string> usr;
    bool json = false;
};

void run_populate(const Context& ctx, const PopulateOptions& opts) {
    const auto root = naming::Name::parse(opts.root);
    const auto pool = ctx.open_pool();
    const auto lock = ctx.lock(pool);
    with_context("populate", root.str(), [&] {
        if (root.kind() != naming::Kind::Root)
            throw Error("", "", "not a root instance name (root:<name>:<vendor-id>:<arch>)", Fault::InvalidInput);
        if (!pool.find(root.str())) throw Error("", "", "no such root instance in the pool", Fault::NotFound);
    });
    std::string usr_name;
    if (opts.usr) {
        const auto usr = naming::Name::parse(*opts.usr);
        with_context("populate", root.str(), [&] {
            if (usr.kind() != naming::Kind::Usr)
                throw Error("", "", "'" + usr.str() + "' is not a usr tree", Fault::InvalidInput);
            if (!pool.find(usr.str()))
                throw Error("", "", "no such usr tree in the pool: '" + usr.str() + "'", Fault::NotFound);
        });
        usr_name = usr.str();
    } else {
        const auto db = deploy::load_database(pool);
        const auto record = db.roots.find(root.str());
        if (record == db.roots.end() || record->second.usr.empty() || !pool.find(record->second.usr))
            throw Error("populate", root.str(), "it has no deployment to take the usr from; name one with --usr",
                        Fault::NotFound);
        usr_name = record->second.usr;
    }
    // populate's errors name the root instance's directory already.
    const auto report = factory::populate(pool.top().open_dir(root.str()), pool.top().open_dir(usr_name));
    (void)lock;
    if (opts.json) {
        print_json({{"root", root.str()},
                    {"usr", usr_name},
                    {"copied", report.copied},
                    {"linked", report.linked},
                    {"created", report.created},
                    {"skipped", report.skipped},
                    {"missing", report.missing}});
    } else if (!ctx.quiet) {
        std::printf("Populated '%s' from '%s': %zu copied, %zu linked, %zu created, %zu present already.\n",
                    root.str().c_str(), usr_name.c_str(), report.copied.size(), report.linked.size(),
                    report.created.size(), report.skipped.size());
    }
}

}  // namespace

void register_factory(CLI::App& app, Context& ctx) {
    auto* factory = app.add_subcommand("factory", "Factory defaults: make a tree stateless, populate a root instance");
    factory->require_subcommand(1);

    auto prepare_opts = std::make_shared<PrepareOptions>();
    auto* prepare = factory->add_subcommand(
        "prepare", "Move TREE's /etc and /var into TREE/usr/share/factory and write the tmpfiles.d rules and unit "
                   "that rebuild them on first boot");
    prepare->add_option("TREE", prepare_opts->tree, "An OS tree (e.g. from debootstrap or mkosi)")->required();
    prepare->add_option("--exclude", prepare_opts->exclude,
                        "Also leave out paths matching this pattern (e.g. 'etc/hostname', 'var/lib/foo/*', "
                        "'var/spool/**'); repeatable, adds to factory.exclude and the defaults")
        ->type_name("PATTERN");
    prepare->add_flag("--json", prepare_opts->json, "Print the rules and excluded paths as JSON");
    prepare->callback([&ctx, prepare_opts] { run_prepare(ctx, *prepare_opts); });

    auto populate_opts = std::make_shared<PopulateOptions>();
    auto* populate = factory->add_subcommand(
        "populate", "Do offline what systemd-tmpfiles does on first boot: fill ROOT's /etc and /var from a usr's factory");
    populate->add_option("ROOT", populate_opts->root, "The root instance, e.g. root:web:org.example.Demo:x86_64")
        ->required();
    populate->add_option("--usr", populate_opts->usr,
                         "The usr tree whose factory to use (default: the usr of the root's default deployment)")
        ->type_name("USR");
    populate->add_flag("--json", populate_opts->json, "Print what was copied, linked, created and skipped as JSON");
    populate->callback([&ctx, populate_opts] { run_populate(ctx, *populate_opts); });
}

}  // namespace strata::cli
