#include "vendor/publish.hpp"

#include "base/error.hpp"
#include "pool/staging.hpp"

namespace strata::vendor {

void require_vendor_tree(const naming::Name& name) {
    if (!name.is_vendor_tree())
        throw Error("", "", "not a vendor tree name (usr:, runtime:, framework:, app:)", Fault::InvalidInput);
}

ImportResult publish_vendor_tree(const pool::Pool& pool, pool::Staged& staged, const std::optional<pool::Subvolume>& base,
                                 std::string source_kind) {
    const std::string name = staged.target().str();
    staged.publish(pool::Access::ReadOnly);
    auto published = pool.find(name);
    if (!published) throw Error("find", name, "published subvolume vanished");
    return {std::move(*published), base ? std::optional(base->name) : std::nullopt, std::move(source_kind)};
}

}  // namespace strata::vendor
