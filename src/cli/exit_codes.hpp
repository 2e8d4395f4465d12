#pragma once
// strata's exit codes (docs/exit-codes.md). One table, used by every verb.
#include "base/error.hpp"

namespace strata::cli {

enum ExitCode : int {
    exit_ok = 0,
    exit_failure = 1,    // the operation failed
    exit_usage = 2,      // bad option, missing argument, malformed name or value
    exit_not_found = 3,  // a named object (subvolume, pool image, file) does not exist
    exit_exists = 4,     // the object to be created exists already
    exit_busy = 5,       // another strata command holds the pool lock
    exit_in_use = 6,     // the object is mounted, booted or needed by another object
    exit_update_available = 100,  // update --check: there is something to update to
};

// A verb that ends with a non-zero status which is not an error (update --check) throws this;
// main returns the code after the verb has printed its result.
struct ExitStatus {
    int code;
};

constexpr int exit_code_for(Fault fault) {
    switch (fault) {
    case Fault::Failed: return exit_failure;
    case Fault::InvalidInput: return exit_usage;
    case Fault::NotFound: return exit_not_found;
    case Fault::Exists: return exit_exists;
    case Fault::Busy: return exit_busy;
    case Fault::InUse: return exit_in_use;
    }
    return exit_failure;
}

}  // namespace strata::cli
