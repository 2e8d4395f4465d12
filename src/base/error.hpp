#pragma once
// strata::Error is the one exception type of the library. It names the operation, the object it
// acted on and the cause (errno or a sentence), and collects context as it climbs:
//   "deploy 'root:web:org.example.Demo:x86_64': open pool '/srv/pool': not a btrfs filesystem"
#include <exception>
#include <string>
#include <string_view>

namespace strata {

// What kind of failure this is; front ends map it to an exit code (see docs/exit-codes.md).
enum class Fault {
    Failed,        // the operation could not be carried out
    InvalidInput,  // a name, argument, file or stream given by the user is malformed
    NotFound,      // a named object does not exist
    Exists,        // the object to be created exists already
    Busy,          // another strata command holds the pool
    InUse,         // the object is mounted, booted or needed by another object
};

class Error : public std::exception {
public:
    // Cause from errno: "<operation> '<object>': <strerror(errnum)>".
    Error(std::string_view operation, std::string_view object, int errnum, Fault fault = Fault::Failed);
    // Cause as a sentence: "<operation> '<object>': <reason>"; with an empty operation and
    // object just "<reason>", for errors that get their subject from with_context().
    Error(std::string_view operation, std::string_view object, std::string_view reason,
          Fault fault = Fault::Failed);

    // Prefixes "<operation> '<object>': " to the message; used while the error climbs.
    Error& within(std::string_view operation, std::string_view object);
    Error& within(std::string_view context);

    const char* what() const noexcept override { return message_.c_str(); }
    int errnum() const noexcept { return errnum_; }
    Fault fault() const noexcept { return fault_; }

private:
    std::string message_;
    int errnum_ = 0;
    Fault fault_ = Fault::Failed;
};

// Throws Error(operation, object, errno) when result is negative; passes result through otherwise.
int check_errno(int result, std::string_view operation, std::string_view object);
[[noreturn]] void throw_errno(std::string_view operation, std::string_view object);

// Runs fn and adds context to any Error it throws.
template <class Fn>
decltype(auto) with_context(std::string_view operation, std::string_view object, Fn&& fn) {
    try {
        return fn();
    } catch (Error& e) {
        e.within(operation, object);
        throw;
    }
}

}  // namespace strata
