#include "base/shared_library.hpp"

#include <dlfcn.h>

#include <string>

#include "base/error.hpp"

namespace strata {

namespace {
std::string last_dl_error() {
    const char* text = ::dlerror();
    return text ? text : "unknown dynamic loader error";
}
}  // namespace

// RTLD_NODELETE: libraries such as OpenSSL (under libcurl) register exit handlers that must
// still find their code when the process exits after the handle is gone.
SharedLibrary::SharedLibrary(const char* soname)
    : soname_(soname), handle_(::dlopen(soname, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)) {
    if (!handle_) throw Error("load library", soname, last_dl_error());
}

void* SharedLibrary::address(const char* name) const {
    ::dlerror();
    void* address = ::dlsym(handle_.get(), name);
    if (!address) throw Error("load symbol", std::string(soname_) + ":" + name, last_dl_error());
    return address;
}

void SharedLibrary::Close::operator()(void* handle) const noexcept { ::dlclose(handle); }

}  // namespace strata
