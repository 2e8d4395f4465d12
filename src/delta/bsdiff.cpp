#include "delta/bsdiff.hpp"

#include <divsufsort.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

#include "base/error.hpp"
#include "base/shared_library.hpp"

namespace strata::delta {
namespace {

// Opened on first use: only a publisher makes patches. Applying them (every client, strata inside
// a booted guest) needs no suffix array, so strata does not load the library at every start and
// runs where it is not installed.
struct LibDivsufsort {
    SharedLibrary library{"libdivsufsort.so.3"};
    STRATA_IMPORT(library, divsufsort);
};

const LibDivsufsort& libdivsufsort() {
    static const LibDivsufsort api;  // initialised once, also with concurrent callers
    return api;
}

using Index = int64_t;

// Length of the common prefix of a and b.
Index common_prefix(std::string_view a, std::string_view b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return static_cast<Index>(i);
}

struct Match {
    Index position = 0, length = 0;
};

// The longest match of `wanted`'s prefix among the source's suffixes, by binary search over the
// suffix array: the two neighbours where `wanted` would sort hold the longest common prefix.
Match longest_match(const std::vector<saidx_t>& suffixes, std::string_view source, std::string_view wanted) {
    Index lo = 0, hi = static_cast<Index>(suffixes.size()) - 1;
    const auto suffix = [&](Index i) { return source.substr(static_cast<size_t>(suffixes[static_cast<size_t>(i)])); };
    while (hi - lo > 1) {
        const Index mid = lo + (hi - lo) / 2;
        const auto s = suffix(mid);
        const size_t n = std::min(s.size(), wanted.size());
        if (std::memcmp(s.data(), wanted.data(), n) < 0) lo = mid;
        else hi = mid;
    }
    const Index at_lo = common_prefix(suffix(lo), wanted), at_hi = common_prefix(suffix(hi), wanted);
    if (at_lo >= at_hi) return {suffixes[static_cast<size_t>(lo)], at_lo};
    return {suffixes[static_cast<size_t>(hi)], at_hi};
}

[[noreturn]] void refuse(const std::string& why) { throw Error("apply binary patch", "", why, Fault::InvalidInput); }

// The patch that takes target's common prefix and suffix with source from source and the
// stretch between them literally.
Patch keep_ends(std::string_view source, std::string_view target) {
    const auto prefix = static_cast<size_t>(common_prefix(source, target));
    const size_t room = std::min(source.size(), target.size()) - prefix;
    size_t suffix = 0;
    while (suffix < room && source[source.size() - 1 - suffix] == target[target.size() - 1 - suffix]) ++suffix;
    const size_t stretch = target.size() - prefix - suffix;
    Patch patch;
    patch.target_size = target.size();
    patch.diff.assign(prefix + suffix, '\0');
    patch.extra.assign(target.substr(prefix, stretch));
    const auto resume = static_cast<int64_t>(source.size() - suffix);  // where the suffix starts in source
    patch.controls.push_back({prefix, stretch, resume - static_cast<int64_t>(prefix)});
    if (suffix > 0) patch.controls.push_back({suffix, 0, 0});
    return patch;
}

}  // namespace

std::optional<Patch> edit_in_place(std::string_view source, std::string_view target) {
    // A larger stretch may well be found elsewhere in the source by make_patch's search.
    constexpr size_t max_stretch = 64u << 10;
    auto patch = keep_ends(source, target);
    const size_t stretch = patch.extra.size();
    if (stretch > max_stretch || stretch * 16 > target.size()) return std::nullopt;
    return patch;
}

Patch make_patch(std::string_view source, std::string_view target) {
    if (source.size() >= static_cast<size_t>(std::numeric_limits<saidx_t>::max()))
        throw Error("make binary patch", "", "the source is too large (2 GiB or more)", Fault::InvalidInput);
    if (auto quick = edit_in_place(source, target)) return std::move(*quick);
    Patch patch;
    patch.target_size = target.size();
    const Index old_size = static_cast<Index>(source.size()), new_size = static_cast<Index>(target.size());
    const auto at = [](std::string_view s, Index i) { return s[static_cast<size_t>(i)]; };

    std::vector<saidx_t> suffixes(source.size());
    if (!source.empty() &&
        libdivsufsort().divsufsort(reinterpret_cast<const sauchar_t*>(source.data()), suffixes.data(),
                                   static_cast<saidx_t>(old_size)) != 0)
        throw Error("make binary patch", "", "suffix sorting failed");

    Index scan = 0, length = 0, position = 0;
    Index last_scan = 0, last_position = 0, last_offset = 0;
    while (scan < new_size) {
        // Find the next place where a match in the source is clearly better (by more than 8
        // bytes) than just continuing the previous alignment.
        Index old_score = 0;
        Index scored = scan += length;
        for (; scan < new_size; ++scan) {
            const Match m = old_size == 0 ? Match{} : longest_match(suffixes, source, target.substr(static_cast<size_t>(scan)));
            position = m.position;
            length = m.length;
            for (; scored < scan + length; ++scored)
                if (scored + last_offset < old_size && at(source, scored + last_offset) == at(target, scored)) ++old_score;
            if ((length == old_score && length != 0) || length > old_score + 8) break;
            if (scan + last_offset < old_size && at(source, scan + last_offset) == at(target, scan)) --old_score;
        }
        if (length == old_score && scan != new_size) continue;

        // Extend the previous alignment forward and this one backward as far as they match more
        // often than not; where they overlap, split at the best point.
        Index forward = 0;
        for (Index i = 0, same = 0, best = 0; last_scan + i < scan && last_position + i < old_size;) {
            if (at(source, last_position + i) == at(target, last_scan + i)) ++same;
            ++i;
            if (same * 2 - i > best * 2 - forward) {
                best = same;
                forward = i;
            }
        }
        Index backward = 0;
        if (scan < new_size) {
            for (Index i = 1, same = 0, best = 0; scan >= last_scan + i && position >= i; ++i) {
                if (at(source, position - i) == at(target, scan - i)) ++same;
                if (same * 2 - i > best * 2 - backward) {
                    best = same;
                    backward = i;
                }
            }
        }
        if (last_scan + forward > scan - backward) {
            const Index overlap = (last_scan + forward) - (scan - backward);
            Index split = 0;
            for (Index i = 0, score = 0, best = 0; i < overlap; ++i) {
                if (at(target, last_scan + forward - overlap + i) == at(source, last_position + forward - overlap + i)) ++score;
                if (at(target, scan - backward + i) == at(source, position - backward + i)) --score;
                if (score > best) {
                    best = score;
                    split = i + 1;
                }
            }
            forward += split - overlap;
            backward -= split;
        }

        for (Index i = 0; i < forward; ++i)
            patch.diff += static_cast<char>(at(target, last_scan + i) - at(source, last_position + i));
        const Index extra_begin = last_scan + forward, extra_end = scan - backward;
        patch.extra.append(target.substr(static_cast<size_t>(extra_begin), static_cast<size_t>(extra_end - extra_begin)));
        patch.controls.push_back({static_cast<uint64_t>(forward), static_cast<uint64_t>(extra_end - extra_begin),
                                  (position - backward) - (last_position + forward)});
        last_scan = scan - backward;
        last_position = position - backward;
        last_offset = position - scan;
    }
    return patch;
}

namespace {

constexpr size_t window_bytes = 8;
constexpr uint64_t pick_mask = 31;

// Calls f with every picked window of data and its position.
template <class F>
void for_each_window(std::string_view data, F&& f) {
    for (size_t i = 0; i + window_bytes <= data.size(); ++i) {
        uint64_t w = 0;
        std::memcpy(&w, data.data() + i, window_bytes);
        if (((w * 0x9E3779B97F4A7C15ull) >> 58 & pick_mask) == 0) f(w, i);
    }
}

}  // namespace

Patch shared_stretches(std::string_view source, std::string_view target) {
    constexpr size_t min_stretch = 32;
    // The first position of every picked window of the source, by window.
    std::vector<std::pair<uint64_t, size_t>> anchors;
    for_each_window(source, [&](uint64_t w, size_t i) { anchors.emplace_back(w, i); });
    std::stable_sort(anchors.begin(), anchors.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    Patch patch;
    patch.target_size = target.size();
    uint64_t add = 0;             // the pending control's add: the stretch found last
    size_t source_after = 0;      // where that stretch ends in source
    size_t target_at = 0;         // and in target
    const auto take = [&](size_t in_target, size_t in_source, size_t length) {
        const size_t copy = in_target - target_at;
        patch.extra.append(target.substr(target_at, copy));
        patch.controls.push_back({add, copy, static_cast<int64_t>(in_source) - static_cast<int64_t>(source_after)});
        patch.diff.append(length, '\0');
        add = length;
        source_after = in_source + length;
        target_at = in_target + length;
    };
    for (size_t i = 0; i + window_bytes <= target.size();) {
        uint64_t w = 0;
        std::memcpy(&w, target.data() + i, window_bytes);
        if (((w * 0x9E3779B97F4A7C15ull) >> 58 & pick_mask) == 0) {
            const auto it = std::lower_bound(anchors.begin(), anchors.end(), std::pair{w, size_t{0}});
            if (it != anchors.end() && it->first == w) {
                const size_t at = it->second;
                const auto forward = static_cast<size_t>(common_prefix(source.substr(at), target.substr(i)));
                size_t backward = 0;
                while (backward < i - target_at && backward < at && source[at - backward - 1] == target[i - backward - 1])
                    ++backward;
                if (forward + backward >= min_stretch) {
                    take(i - backward, at - backward, forward + backward);
                    i += forward;
                    continue;
                }
            }
        }
        ++i;
    }
    patch.extra.append(target.substr(target_at));
    patch.controls.push_back({add, target.size() - target_at, 0});
    return patch;
}

double shared_content(std::string_view source, std::string_view target) {
    std::vector<uint64_t> picked;
    for_each_window(source, [&](uint64_t w, size_t) { picked.push_back(w); });
    std::sort(picked.begin(), picked.end());
    size_t found = 0, all = 0;
    for_each_window(target, [&](uint64_t w, size_t) {
        ++all;
        if (std::binary_search(picked.begin(), picked.end(), w)) ++found;
    });
    return all == 0 ? 1.0 : static_cast<double>(found) / static_cast<double>(all);
}

namespace {

// out[i] = a[i] + b[i] (mod 256), sixteen bytes at a time (a vector add of bytes wraps as the
// sum must): the diff block of a kernel update is hundreds of megabytes, and a byte loop was the
// largest part of applying it.
void add_bytes(char* out, const char* a, const char* b, size_t n) {
    using Bytes = unsigned char __attribute__((vector_size(16)));
    size_t i = 0;
    for (; i + sizeof(Bytes) <= n; i += sizeof(Bytes)) {
        Bytes x, y;
        std::memcpy(&x, a + i, sizeof x);
        std::memcpy(&y, b + i, sizeof y);
        const Bytes sum = x + y;
        std::memcpy(out + i, &sum, sizeof sum);
    }
    for (; i < n; ++i) out[i] = static_cast<char>(a[i] + b[i]);
}

}  // namespace

std::string apply_patch(std::string_view source, const PatchView& patch) {
    std::string out;
    if (patch.target_size > (uint64_t{1} << 40)) refuse("the target size is implausible");
    out.reserve(static_cast<size_t>(patch.target_size));
    uint64_t diff_at = 0, extra_at = 0;
    int64_t source_at = 0;
    char sums[16384];
    for (const auto& c : patch.controls) {
        if (c.add > patch.target_size - out.size() || c.copy > patch.target_size - out.size() - c.add)
            refuse("the patch makes more than its target size");
        if (c.add > patch.diff.size() - diff_at || c.copy > patch.extra.size() - extra_at)
            refuse("the patch's blocks are shorter than its controls say");
        if (c.add > 0 && (source_at < 0 || static_cast<uint64_t>(source_at) > source.size() ||
                          c.add > source.size() - static_cast<uint64_t>(source_at)))
            refuse("the patch reads outside its source");
        // Added through a buffer that stays in cache and appended: growing out first would
        // zero it, a pass over memory as large as the target.
        for (uint64_t done = 0; done < c.add;) {
            const auto n = static_cast<size_t>(std::min<uint64_t>(c.add - done, sizeof(sums)));
            add_bytes(sums, patch.diff.data() + diff_at + done, source.data() + static_cast<size_t>(source_at) + done, n);
            out.append(sums, n);
            done += n;
        }
        diff_at += c.add;
        out.append(patch.extra.substr(extra_at, c.copy));
        extra_at += c.copy;
        const int64_t moved = static_cast<int64_t>(c.add) + c.seek;
        if ((moved > 0 && source_at > std::numeric_limits<int64_t>::max() - moved) ||
            (moved < 0 && source_at < std::numeric_limits<int64_t>::min() - moved))
            refuse("the patch seeks out of range");
        source_at += moved;
    }
    if (out.size() != patch.target_size) refuse("the patch makes fewer bytes than its target size");
    if (diff_at != patch.diff.size() || extra_at != patch.extra.size()) refuse("the patch has bytes no control uses");
    return out;
}

}  // namespace strata::delta
