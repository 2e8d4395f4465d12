#pragma once
// Reproducible random bytes for test data: the same generator state gives the same bytes.
#include <random>
#include <string>

namespace strata::test {

inline std::string random_bytes(std::mt19937& rng, size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xff);
    return s;
}

inline std::string random_bytes(size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    return random_bytes(rng, n);
}

}  // namespace strata::test
