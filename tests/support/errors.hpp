#pragma once
// Tests assert the message a failure gives, not just that it failed.
#include <string>

#include "base/error.hpp"

namespace strata::test {

// The message of the strata::Error that fn throws, or "" when it throws none.
std::string error_of(auto&& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace strata::test
