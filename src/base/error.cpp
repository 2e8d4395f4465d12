#include "base/error.hpp"

#include <cerrno>
#include <cstring>

#include "base/escape.hpp"

namespace strata {
namespace {

std::string subject(std::string_view operation, std::string_view object) {
    std::string s(operation);
    if (!object.empty()) {
        s += " '";
        s += escape(object);
        s += "'";
    }
    return s;
}

// "<prefix>: <rest>", or just rest when there is no prefix.
std::string join(std::string_view prefix, std::string_view rest) {
    if (prefix.empty()) return std::string(rest);
    std::string s(prefix);
    s += ": ";
    s += rest;
    return s;
}

}  // namespace

Error::Error(std::string_view operation, std::string_view object, int errnum, Fault fault)
    : message_(join(subject(operation, object), std::strerror(errnum))), errnum_(errnum), fault_(fault) {
    if (fault_ == Fault::Failed) {
        if (errnum == ENOENT) fault_ = Fault::NotFound;
        else if (errnum == EEXIST) fault_ = Fault::Exists;
    }
}

Error::Error(std::string_view operation, std::string_view object, std::string_view reason, Fault fault)
    : message_(join(subject(operation, object), reason)), fault_(fault) {}

Error& Error::within(std::string_view operation, std::string_view object) {
    message_ = join(subject(operation, object), message_);
    return *this;
}

Error& Error::within(std::string_view context) {
    message_ = join(context, message_);
    return *this;
}

int check_errno(int result, std::string_view operation, std::string_view object) {
    if (result < 0) throw_errno(operation, object);
    return result;
}

void throw_errno(std::string_view operation, std::string_view object) {
    throw Error(operation, object, errno);
}

}  // namespace strata
