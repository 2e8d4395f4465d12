#pragma once
// Binary diffs of one file against its predecessor, as bsdiff makes them (Colin Percival, "Naive
// differences of executable code", 2003): the target is cut into runs, each a stretch that is
// *added bytewise* to an equally long stretch of the source, followed by bytes taken literally.
// Code that moved keeps its instructions and changes only the addresses inside them, so the
// added-bytes ("diff") block is mostly zeros and small differences: it compresses far better than
// the target itself, or than zstd's patch mode on relocated machine code (issue 8 measured 12.6 MB
// against 21.9 MB for a kernel's modules). The source's suffix array comes from libdivsufsort.
//
// A Patch keeps its three blocks apart (controls, diff bytes, extra bytes) because they compress
// very differently; the payload format (docs/delta.md) concatenates them over many files into one
// solid compressed stream.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata::delta {

// One run: `add` bytes of diff added to the source from the current source position, then
// `copy` bytes of extra taken literally; then the source position moves by `seek` (after the
// `add` bytes it read).
struct Control {
    uint64_t add = 0;
    uint64_t copy = 0;
    int64_t seek = 0;
    bool operator==(const Control&) const = default;
};

struct Patch {
    uint64_t target_size = 0;  // what apply must produce, exactly
    std::vector<Control> controls;
    std::string diff;   // the sum of all `add` lengths
    std::string extra;  // the sum of all `copy` lengths
    bool operator==(const Patch&) const = default;
};

// The patch that turns source into target. Deterministic: the same inputs give the same patch.
// Memory: the source's suffix array, 4 bytes per source byte. Sources of 2 GiB or more are
// refused (Error, InvalidInput): files that large are shipped literally.
Patch make_patch(std::string_view source, std::string_view target);

// The patch for a target that is the source with one stretch in the middle replaced (appended
// lines, an edited setting): the common prefix and suffix taken from source, the stretch between
// them literally; nullopt when that stretch is more than a 16th of the target or 64 KiB. Linear:
// make_patch tries it before sorting the source's suffixes.
std::optional<Patch> edit_in_place(std::string_view source, std::string_view target);

// The patch that takes from source every stretch of target (32 bytes or more) that contains
// one of shared_content's windows found in source, extended both ways, and the rest literally.
// Linear: for data a suffix search gains nothing on, compressed files, whose only shared bytes are
// stretches of the compressed stream that did not change (a gzip initrd whose new header, with its
// time and name, is followed by a megabyte that is the same).
Patch shared_stretches(std::string_view source, std::string_view target);

// The share (0 to 1) of target's content that also occurs in source, estimated from 8-byte
// windows picked by their content (about one in 32 positions), so that a shift does not change
// which windows are picked. Linear and cheap next to make_patch, whose search runs at every
// position of target that matches nothing: a file diffed against an unrelated predecessor
// (random or differently compressed bytes) costs it the most and gains nothing.
double shared_content(std::string_view source, std::string_view target);

// A patch's parts where they already are (in a payload record), so applying it copies nothing.
struct PatchView {
    uint64_t target_size = 0;
    std::span<const Control> controls;
    std::string_view diff, extra;
};

// target from source and patch. A patch that reads outside source, whose blocks do not hold what
// its controls need (or hold more), or whose result would not be target_size bytes, is refused
// with Error(InvalidInput) before more than target_size bytes are produced.
std::string apply_patch(std::string_view source, const PatchView& patch);
inline std::string apply_patch(std::string_view source, const Patch& patch) {
    return apply_patch(source, PatchView{patch.target_size, patch.controls, patch.diff, patch.extra});
}

}  // namespace strata::delta
