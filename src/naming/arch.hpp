#pragma once
// Architectures strata knows, by the kernel's names (uname -m), which systemd also uses.
#include <optional>
#include <span>
#include <string_view>

namespace strata::naming {

struct Arch {
    std::string_view name;      // uname -m: "x86_64"
    std::string_view efi_name;  // the BLS `architecture` key: "x64"; empty where there is no UEFI
    bool has_lib64;             // the ABI's dynamic loader lives in /lib64, so roots need a lib64 link
};

std::span<const Arch> known_arches();
std::optional<Arch> find_arch(std::string_view name);
// The architecture strata runs on; what a name's arch defaults to on the command line.
std::string_view native_arch();

}  // namespace strata::naming
