#include "deploy/database.hpp"

#include <nlohmann/json.hpp>

#include "base/error.hpp"

namespace strata::deploy {

Database load_database(const pool::Pool& pool) {
    const Dir hidden = pool.hidden();
    if (!hidden.stat(database_file)) return {};
    const std::string path = hidden.path_of(database_file).string();
    Database db;
    try {
        const auto j = nlohmann::json::parse(read_file(hidden, database_file));
        for (const auto& [name, r] : j.at("roots").items()) {
            RootRecord rec;
            rec.usr = r.value("usr", "");
            rec.previous = r.value("previous", "");
            rec.states = r.value("states", std::map<std::string, std::string>{});
            rec.pinned = r.value("pinned", std::set<std::string>{});
            rec.kernel_args = r.value("kernel_args", std::vector<std::string>{});
            db.roots.emplace(name, std::move(rec));
        }
    } catch (const nlohmann::json::exception& e) {
        throw Error("read deployments", path, e.what());
    }
    return db;
}

void save_database(const pool::Pool& pool, const pool::Lock&, const Database& db) {
    nlohmann::json roots = nlohmann::json::object();
    for (const auto& [name, rec] : db.roots)
        roots[name] = {{"usr", rec.usr},
                       {"previous", rec.previous},
                       {"states", rec.states},
                       {"pinned", rec.pinned},
                       {"kernel_args", rec.kernel_args}};
    const nlohmann::json j = {{"version", 1}, {"roots", roots}};
    write_file_atomic(pool.hidden(), database_file, j.dump(2) + "\n", 0600);
}

}  // namespace strata::deploy
