#include "delta/predecessors.hpp"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "base/error.hpp"

namespace strata::delta {
namespace {

std::string_view file_name(std::string_view path) {
    const auto slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::vector<std::string_view> components(std::string_view path) {
    std::vector<std::string_view> parts;
    size_t start = 0;
    while (start <= path.size()) {
        const auto slash = std::min(path.find('/', start), path.size());
        parts.push_back(path.substr(start, slash - start));
        start = slash + 1;
    }
    return parts;
}

// Components equal at the same depth: a kernel module of the new version shares all of them
// but the version directory with its predecessor.
size_t closeness(std::string_view a, std::string_view b) {
    const auto x = components(a), y = components(b);
    size_t same = 0;
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) same += x[i] == y[i];
    return same;
}

std::optional<std::string> closest(const std::map<std::string, std::vector<std::string>, std::less<>>& index,
                                   std::string_view key, std::string_view new_path) {
    const auto it = index.find(key);
    if (it == index.end()) return std::nullopt;
    const std::string* best = nullptr;
    size_t best_score = 0;
    for (const auto& candidate : it->second) {  // in byte order: the first of equal scores wins
        const size_t score = closeness(candidate, new_path);
        if (!best || score > best_score) best = &candidate, best_score = score;
    }
    return *best;
}

}  // namespace

std::string digits_as_tokens(std::string_view path) {
    std::string out;
    out.reserve(path.size());
    for (size_t i = 0; i < path.size(); ++i) {
        const bool digit = path[i] >= '0' && path[i] <= '9';
        if (!digit) {
            out += path[i];
        } else if (i == 0 || !(path[i - 1] >= '0' && path[i - 1] <= '9')) {
            out += '#';
        }
    }
    return out;
}

ParentFiles ParentFiles::scan(const Dir& tree) {
    namespace fs = std::filesystem;
    std::vector<std::pair<std::string, uint64_t>> files;
    std::error_code ec;
    fs::recursive_directory_iterator it(tree.path(), fs::directory_options::none, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        const auto status = it->symlink_status(ec);
        if (ec) break;
        if (!fs::is_regular_file(status)) continue;
        const auto size = it->file_size(ec);
        if (ec) break;
        files.emplace_back(it->path().lexically_relative(tree.path()).generic_string(), size);
    }
    if (ec) throw Error("index parent tree", tree.path().string(), ec.value());
    return from_list(std::move(files));
}

ParentFiles ParentFiles::from_list(std::vector<std::pair<std::string, uint64_t>> files) {
    std::sort(files.begin(), files.end());
    ParentFiles parent;
    for (auto& [path, size] : files) {
        parent.by_token_path_[digits_as_tokens(path)].push_back(path);
        parent.by_name_[std::string(file_name(path))].push_back(path);
        parent.by_token_name_[digits_as_tokens(file_name(path))].push_back(path);
        parent.by_size_[size].push_back(path);
        parent.sizes_.emplace(std::move(path), size);
    }
    return parent;
}

std::optional<std::string> ParentFiles::predecessor(std::string_view new_path) const {
    if (sizes_.contains(new_path)) return std::string(new_path);
    if (auto p = closest(by_token_path_, digits_as_tokens(new_path), new_path)) return p;
    if (auto p = closest(by_name_, file_name(new_path), new_path)) return p;
    return closest(by_token_name_, digits_as_tokens(file_name(new_path)), new_path);
}

const std::vector<std::string>& ParentFiles::of_size(uint64_t size) const {
    static const std::vector<std::string> none;
    const auto it = by_size_.find(size);
    return it == by_size_.end() ? none : it->second;
}

std::optional<uint64_t> ParentFiles::size_of(std::string_view path) const {
    const auto it = sizes_.find(path);
    if (it == sizes_.end()) return std::nullopt;
    return it->second;
}

}  // namespace strata::delta
