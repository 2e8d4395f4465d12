#pragma once
// SHA-256, streaming, for the digests repositories publish (sha256sum-compatible). OpenSSL's
// libcrypto computes it: it uses the CPU's SHA instructions (1.5 GB/s here, libsodium's portable
// code 0.34 GB/s), and every byte of an update or a publish is hashed at least once. libcrypto is
// opened on first use (base/shared_library.hpp), so commands that hash nothing do not load it.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace strata::sign {

class Sha256 {
public:
    Sha256();
    Sha256(Sha256&&) noexcept = default;
    Sha256& operator=(Sha256&&) noexcept = default;
    ~Sha256();
    void update(const void* data, size_t size);
    void update(std::string_view data) { update(data.data(), data.size()); }
    std::string hex_digest();  // 64 lowercase hex digits; the object is spent afterwards

private:
    struct Free {
        void operator()(evp_md_ctx_st* c) const noexcept;
    };
    std::unique_ptr<evp_md_ctx_st, Free> context_;
    bool spent_ = false;  // update/hex_digest after hex_digest are bugs (assert)
};

// The digest of everything readable from fd from its current offset to the end.
std::string sha256_of_fd(int fd, std::string_view what);

}  // namespace strata::sign
