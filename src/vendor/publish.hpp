#pragma once
// What every way into the pool shares (internal to the vendor module).
#include <optional>
#include <string>

#include "naming/name.hpp"
#include "pool/pool.hpp"
#include "vendor/import.hpp"

namespace strata::vendor {

// Fault::InvalidInput unless name is a usr:, runtime:, framework: or app: name.
void require_vendor_tree(const naming::Name& name);

// Publishes staged read-only and describes the result.
ImportResult publish_vendor_tree(const pool::Pool& pool, pool::Staged& staged, const std::optional<pool::Subvolume>& base,
                                 std::string source_kind);

}  // namespace strata::vendor
