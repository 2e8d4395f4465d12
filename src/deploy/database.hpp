#pragma once
// What strata remembers about deployments beyond the boot entries: which usr each root instance
// runs by default, the state snapshots kept when it left a usr, pins and kernel arguments.
// One JSON file in the pool (.strata/deployments.json), replaced atomically under the pool lock;
// docs/deployments.md describes it. The boot entries themselves stay the truth about what can
// boot; this file never names anything the entries need to be valid.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "pool/pool.hpp"

namespace strata::deploy {

struct RootRecord {
    std::string usr;                            // usr of the root's default deployment; "" before the first
    std::string previous;                       // the usr it switched away from last (rollback's target)
    std::map<std::string, std::string> states;  // usr -> read-only state snapshot, relative to the pool
    std::set<std::string> pinned;               // usr names whose deployment gc must keep
    std::vector<std::string> kernel_args;       // this root's extra kernel arguments
};

struct Database {
    std::map<std::string, RootRecord> roots;  // by root instance name
};

inline constexpr std::string_view database_file = "deployments.json";
inline constexpr std::string_view state_dir = "state";  // .strata/state/: the state snapshots

// An absent file is an empty database; a corrupt one is an error (Fault::Failed) naming it.
Database load_database(const pool::Pool& pool);
void save_database(const pool::Pool& pool, const pool::Lock& lock, const Database& db);

}  // namespace strata::deploy
