#include "vendor/import.hpp"

#include <sys/stat.h>

#include "base/error.hpp"
#include "base/process.hpp"
#include "pool/staging.hpp"

namespace strata::vendor {

void import_directory(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name,
                      const std::filesystem::path& source) {
    with_context("import", name.str(), [&] {
        if (!name.is_vendor_tree())
            throw Error("", "", "not a vendor tree name (usr:, runtime:, framework:, app:)", Fault::InvalidInput);
        struct stat st {};
        check_errno(::stat(source.c_str(), &st), "read source directory", source.string());
        if (!S_ISDIR(st.st_mode))
            throw Error("read source directory", source.string(), "not a directory", Fault::InvalidInput);

        auto staged = pool.stage(lock, name);
        // GNU cp -a is the reference implementation of a faithful tree copy (hardlinks, xattrs,
        // ACLs, sparse files, device nodes); --reflink=auto shares extents on the same filesystem.
        run_checked({"cp", "-a", "--reflink=auto", "--no-target-directory", "--", source.string() + "/.",
                     staged.dir().path().string()});
        staged.publish(/*read_only=*/true);
    });
}

}  // namespace strata::vendor
