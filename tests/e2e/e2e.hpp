#pragma once
// Shared helpers for tests that drive the strata binary.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/scratch_pool.hpp"

namespace strata::test {

// Runs `strata --pool <pool> args...`.
inline ProcessResult strata_on(const std::filesystem::path& pool, std::vector<std::string> args) {
    args.insert(args.begin(), {"--pool", pool.string()});
    return run_strata(args);
}

// `strata list --json` on pool, parsed.
inline nlohmann::json list_json(const std::filesystem::path& pool) {
    auto r = strata_on(pool, {"list", "--json"});
    REQUIRE_MESSAGE(r.exit_status == 0, r.err);
    return nlohmann::json::parse(r.out);
}

inline std::vector<std::string> listed_names(const std::filesystem::path& pool) {
    std::vector<std::string> names;
    for (const auto& s : list_json(pool)) names.push_back(s["name"]);
    return names;
}

// A failure as users see it: exactly one line on stderr, starting with "strata: ".
inline void check_one_line_error(const ProcessResult& r, int exit_status, const std::string& message) {
    CHECK(r.exit_status == exit_status);
    CHECK(r.out.empty());
    CHECK(r.err == "strata: " + message + "\n");
}

}  // namespace strata::test
