#include "sign/sha256.hpp"

#include <openssl/evp.h>
#include <sodium.h>

#include <cassert>
#include <vector>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/shared_library.hpp"

namespace strata::sign {
namespace {

struct LibCrypto {
    SharedLibrary library{"libcrypto.so.3"};
    STRATA_IMPORT(library, EVP_MD_fetch);
    STRATA_IMPORT(library, EVP_MD_CTX_new);
    STRATA_IMPORT(library, EVP_MD_CTX_free);
    STRATA_IMPORT(library, EVP_DigestInit_ex);
    STRATA_IMPORT(library, EVP_DigestUpdate);
    STRATA_IMPORT(library, EVP_DigestFinal_ex);
    // Fetched once: an implicit fetch at every init looks the algorithm up in the provider.
    EVP_MD* sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
};

const LibCrypto& libcrypto() {
    static const LibCrypto api;  // initialised once, also with concurrent callers
    if (!api.sha256) throw Error("load SHA-256", "libcrypto.so.3", "the default provider has no SHA256");
    return api;
}

}  // namespace

void Sha256::Free::operator()(EVP_MD_CTX* c) const noexcept { libcrypto().EVP_MD_CTX_free(c); }

Sha256::Sha256() {
    const auto& api = libcrypto();
    context_.reset(api.EVP_MD_CTX_new());
    if (!context_ || api.EVP_DigestInit_ex(context_.get(), api.sha256, nullptr) != 1)
        throw Error("start SHA-256", "", "libcrypto failed (out of memory?)");
}

Sha256::~Sha256() = default;

void Sha256::update(const void* data, size_t size) {
    assert(context_ && !spent_ && "Sha256 used after hex_digest() or a move");
    if (libcrypto().EVP_DigestUpdate(context_.get(), data, size) != 1)
        throw Error("compute SHA-256", "", "libcrypto failed");
}

std::string Sha256::hex_digest() {
    assert(context_ && !spent_ && "Sha256::hex_digest() called twice or after a move");
    spent_ = true;
    unsigned char digest[32];
    unsigned int length = 0;
    if (libcrypto().EVP_DigestFinal_ex(context_.get(), digest, &length) != 1 ||
        length != sizeof digest)
        throw Error("compute SHA-256", "", "libcrypto failed");
    char hex[2 * sizeof digest + 1];
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
    return hex;
}

std::string sha256_of_fd(int fd, std::string_view what) {
    Sha256 sha;
    std::vector<char> buffer(1 << 20);
    while (const size_t n = read_full(fd, buffer.data(), buffer.size(), what)) sha.update(buffer.data(), n);
    return sha.hex_digest();
}

}  // namespace strata::sign
