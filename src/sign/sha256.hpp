#pragma once
// SHA-256 (libsodium), streaming, for the digests repositories publish (sha256sum-compatible).
#include <cstddef>
#include <string>
#include <string_view>

namespace strata::sign {

class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t size);
    void update(std::string_view data) { update(data.data(), data.size()); }
    std::string hex_digest();  // 64 lowercase hex digits; the object is spent afterwards
private:
    alignas(64) unsigned char state_[128];  // crypto_hash_sha256_state, opaque here
    bool spent_ = false;                    // update/hex_digest after hex_digest are bugs (assert)
};

// The digest of everything readable from fd from its current offset to the end.
std::string sha256_of_fd(int fd, std::string_view what);

}  // namespace strata::sign
