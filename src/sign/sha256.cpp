// SHA-256 over libsodium's streaming API. The state lives in the object's opaque buffer, so the
// header needs no libsodium include.
#include "sign/sha256.hpp"

#include <sodium.h>

#include <cassert>
#include <new>
#include <vector>

#include "base/error.hpp"
#include "base/fd.hpp"

namespace strata::sign {
namespace {

static_assert(sizeof(crypto_hash_sha256_state) <= 128, "Sha256::state_ too small for libsodium's state");
static_assert(alignof(crypto_hash_sha256_state) <= 64, "Sha256::state_ not aligned enough for libsodium's state");

crypto_hash_sha256_state* state_of(unsigned char* buffer) {
    return std::launder(reinterpret_cast<crypto_hash_sha256_state*>(buffer));
}

}  // namespace

Sha256::Sha256() {
    // sodium_init is not needed: SHA-256 uses no random numbers or CPU dispatch state.
    crypto_hash_sha256_init(new (state_) crypto_hash_sha256_state);
}

void Sha256::update(const void* data, size_t size) {
    assert(!spent_ && "Sha256 used after hex_digest()");
    crypto_hash_sha256_update(state_of(state_), static_cast<const unsigned char*>(data), size);
}

std::string Sha256::hex_digest() {
    assert(!spent_ && "Sha256::hex_digest() called twice");
    spent_ = true;
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(state_of(state_), digest);
    char hex[2 * crypto_hash_sha256_BYTES + 1];
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
