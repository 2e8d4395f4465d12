#pragma once
// Libraries that only a few commands need are opened on first use instead of by the dynamic
// linker at every start: libcurl and libarchive bring ~40 further libraries whose loading and
// relocation cost a cold `strata deploy` or `strata status` more time than its own work.
//
//   struct LibCurl {
//       SharedLibrary library{"libcurl.so.4"};
//       STRATA_IMPORT(library, curl_easy_init);   // a member curl_easy_init, typed as declared
//   };
//
// The library's header gives the types (decltype), so a call through the member is checked
// like a direct call; the soname pins the ABI the header describes.
#include <memory>

namespace strata {

class SharedLibrary {
public:
    // Throws Error("load library", soname, <dlerror text>) when it cannot be opened.
    explicit SharedLibrary(const char* soname);

    // The address of `name`; throws Error("load symbol", "<soname>:<name>", ...) if missing.
    void* address(const char* name) const;

    template <class Function>
    Function* function(const char* name) const {
        return reinterpret_cast<Function*>(address(name));
    }

private:
    struct Close {
        void operator()(void* handle) const noexcept;
    };
    const char* soname_;
    std::unique_ptr<void, Close> handle_;
};

#define STRATA_IMPORT(library, name) decltype(&::name) name = (library).function<decltype(::name)>(#name)

}  // namespace strata
