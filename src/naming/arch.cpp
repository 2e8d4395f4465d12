#include "naming/arch.hpp"

#include <algorithm>
#include <array>

namespace strata::naming {
namespace {

constexpr std::array arches = {
    Arch{"x86_64", "x64", true},         Arch{"i686", "ia32", false},
    Arch{"aarch64", "aa64", true},       Arch{"armv7l", "arm", false},
    Arch{"riscv64", "riscv64", true},    Arch{"loongarch64", "loongarch64", true},
    Arch{"ppc64le", "", true},           Arch{"ppc64", "", true},
    Arch{"s390x", "", true},             Arch{"mips64el", "", true},
};

}  // namespace

std::span<const Arch> known_arches() { return arches; }

std::optional<Arch> find_arch(std::string_view name) {
    const auto it = std::find_if(arches.begin(), arches.end(), [&](const Arch& a) { return a.name == name; });
    if (it == arches.end()) return std::nullopt;
    return *it;
}

std::string_view native_arch() {
#if defined(__x86_64__)
    return "x86_64";
#elif defined(__i386__)
    return "i686";
#elif defined(__aarch64__)
    return "aarch64";
#elif defined(__arm__)
    return "armv7l";
#elif defined(__riscv) && __riscv_xlen == 64
    return "riscv64";
#elif defined(__loongarch64)
    return "loongarch64";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return "ppc64le";
#elif defined(__powerpc64__)
    return "ppc64";
#elif defined(__s390x__)
    return "s390x";
#elif defined(__mips64) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return "mips64el";
#else
#error "strata does not know this architecture's name; add it to arch.cpp"
#endif
}

}  // namespace strata::naming
