#pragma once
// Which file of the parent tree a changed file of the new tree is diffed against. Package
// updates replace files under the same path (most of them), under a path whose version token
// changed (`lib/modules/6.1.0-50/kernel/…/e1000.ko` → `lib/modules/6.1.0-56/…`) or rarely under
// a new directory. A wrong guess costs only payload size, never correctness: the client checks
// every file's digest. Rules, first match wins:
//   1. the same path;
//   2. the same path once every run of digits is read as one token ('#'): the closest such
//      path (most equal components, then the first in byte order, so results are reproducible);
//   3. the same file name anywhere: the closest one;
//   4. the same file name with digit runs as tokens: the closest one.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.hpp"

namespace strata::delta {

// Every run of ASCII digits replaced by '#': "lib/modules/6.1.0-56/x.ko" → "lib/modules/#.#.#-#/x.ko".
std::string digits_as_tokens(std::string_view path);

class ParentFiles {
public:
    // Indexes the regular files of a tree (paths relative to it, '/'-separated, no leading '/').
    static ParentFiles scan(const Dir& tree);
    // The same from a list of (path, size), for tests and for callers that walked already.
    static ParentFiles from_list(std::vector<std::pair<std::string, uint64_t>> files);

    std::optional<std::string> predecessor(std::string_view new_path) const;
    // Paths of the regular files of exactly this size, in byte order.
    const std::vector<std::string>& of_size(uint64_t size) const;
    std::optional<uint64_t> size_of(std::string_view path) const;
    size_t count() const noexcept { return sizes_.size(); }

private:
    std::map<std::string, uint64_t, std::less<>> sizes_;
    std::map<std::string, std::vector<std::string>, std::less<>> by_token_path_, by_name_, by_token_name_;
    std::map<uint64_t, std::vector<std::string>> by_size_;
};

}  // namespace strata::delta
