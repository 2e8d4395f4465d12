#pragma once
// Sizes as users write them on command lines and in configuration: "4G", "512M", "128MiB", "4096".
#include <cstdint>
#include <string>
#include <string_view>

namespace strata {

// Suffixes K, M, G, T, P (optionally followed by "iB" or "B") are powers of 1024, as in
// truncate(1) and mkfs.btrfs; no suffix means bytes. Throws Error (Fault::InvalidInput) on
// anything else, including overflow past 2^64-1.
uint64_t parse_size(std::string_view text);

// The inverse for messages: the largest exact unit, e.g. 134217728 -> "128M".
std::string format_size(uint64_t bytes);

}  // namespace strata
