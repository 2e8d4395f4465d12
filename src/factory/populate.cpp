#include "factory/populate.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/error.hpp"
#include "base/escape.hpp"
#include "base/process.hpp"
#include "factory/rules.hpp"

namespace strata::factory {
namespace {

std::vector<std::string> components(const std::string& path) {
    std::vector<std::string> parts;
    size_t i = 1;
    while (i <= path.size()) {
        const auto slash = path.find('/', i);
        const auto part = path.substr(i, slash == std::string::npos ? std::string::npos : slash - i);
        if (!part.empty()) parts.push_back(part);
        if (slash == std::string::npos) break;
        i = slash + 1;
    }
    return parts;
}

// The rule's path below the root instance, checked: only /etc and /var are state.
std::vector<std::string> state_path(const Rule& rule) {
    auto parts = components(rule.path);
    const bool bad = std::any_of(parts.begin(), parts.end(), [](const std::string& p) { return p == "." || p == ".."; });
    if (bad || parts.empty() || (parts.front() != "etc" && parts.front() != "var"))
        throw Error("", "", "rule for '" + escape(rule.path) + "': only paths in /etc and /var can be populated",
                    Fault::InvalidInput);
    return parts;
}

// The directory that holds the rule's target, made (0755, as tmpfiles makes parents) where
// missing. Symlinks are not followed: they could lead out of the root instance.
Dir parent_of(const Dir& root, const std::vector<std::string>& parts) {
    Dir dir = Dir::open(root.path());
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
        const auto st = dir.stat(parts[i]);
        if (!st) {
            check_errno(::mkdirat(dir.fd(), parts[i].c_str(), 0755), "create directory", dir.path_of(parts[i]).string());
            check_errno(::fchmodat(dir.fd(), parts[i].c_str(), 0755, 0), "set mode of", dir.path_of(parts[i]).string());
        } else if (!S_ISDIR(st->st_mode)) {
            throw Error("open directory", dir.path_of(parts[i]).string(), "not a directory");
        }
        dir = dir.open_dir(parts[i]);
    }
    return dir;
}

bool is_empty_dir(const Dir& parent, const std::string& name) { return parent.open_dir(name).entries().empty(); }

// The factory file a C or L line stands for, as a path into the usr tree.
std::filesystem::path usr_source(const Dir& usr, const Rule& rule) {
    const std::string source = rule.argument.empty() ? std::string(factory_dir) + rule.path : rule.argument;
    if (!source.starts_with("/usr/"))
        throw Error("", "", "rule for '" + escape(rule.path) + "': copy source '" + escape(source) + "' is not in /usr",
                    Fault::InvalidInput);
    return usr.path() / source.substr(5);
}

void copy(const Dir& usr, const Dir& parent, const std::string& name, const Rule& rule, PopulateReport& report) {
    const auto source = usr_source(usr, rule);
    struct stat source_st {};
    if (::lstat(source.c_str(), &source_st) != 0) {
        if (errno != ENOENT) throw_errno("read", source.string());
        report.missing.push_back(rule.path);
        return;
    }
    const auto target = parent.stat(name);
    const std::string target_path = parent.path_of(name).string();
    if (!target) {
        run_checked({"cp", "-a", "--reflink=auto", "--no-target-directory", "--", source.string(), target_path});
    } else if (S_ISDIR(target->st_mode) && S_ISDIR(source_st.st_mode) && is_empty_dir(parent, name)) {
        // tmpfiles merges into an empty directory and leaves that directory's own attributes
        // alone: copy the children, all in one cp so hardlinks among them stay hardlinks.
        const Dir from = Dir::open(source);
        auto children = from.entries();
        std::sort(children.begin(), children.end());
        if (children.empty()) {
            report.skipped.push_back(rule.path);
            return;
        }
        std::vector<std::string> argv = {"cp", "-a", "--reflink=auto", "-t", target_path, "--"};
        for (const auto& c : children) argv.push_back(from.path_of(c).string());
        run_checked(argv);
    } else {
        report.skipped.push_back(rule.path);
        return;
    }
    report.copied.push_back(rule.path);
}

void link(const Dir& parent, const std::string& name, const Rule& rule, PopulateReport& report) {
    if (parent.stat(name)) {
        report.skipped.push_back(rule.path);
        return;
    }
    const std::string target = rule.argument.empty() ? std::string(factory_dir) + rule.path : rule.argument;
    check_errno(::symlinkat(target.c_str(), parent.fd(), name.c_str()), "create symlink", parent.path_of(name).string());
    report.linked.push_back(rule.path);
}

void directory(const Dir& parent, const std::string& name, const Rule& rule, PopulateReport& report) {
    const std::string path = parent.path_of(name).string();
    const auto st = parent.stat(name);
    if (st && !S_ISDIR(st->st_mode)) throw Error("create directory", path, "exists and is not a directory");
    if (!st) check_errno(::mkdirat(parent.fd(), name.c_str(), rule.mode.value_or(0755)), "create directory", path);
    // As tmpfiles: mode and owner given on the line apply to an existing directory too.
    if (rule.uid || rule.gid)
        check_errno(::fchownat(parent.fd(), name.c_str(), rule.uid.value_or(static_cast<uid_t>(-1)),
                               rule.gid.value_or(static_cast<gid_t>(-1)), AT_SYMLINK_NOFOLLOW),
                    "set owner of", path);
    if (rule.mode || !st) check_errno(::fchmodat(parent.fd(), name.c_str(), rule.mode.value_or(0755), 0), "set mode of", path);
    (st ? report.skipped : report.created).push_back(rule.path);
}

}  // namespace

PopulateReport populate(const Dir& root, const Dir& usr) {
    return with_context("populate", root.path().string(), [&] {
        const auto rules_dir = usr.try_open_dir("lib");
        const auto tmpfiles = rules_dir ? rules_dir->try_open_dir("tmpfiles.d") : std::nullopt;
        if (!tmpfiles || !tmpfiles->stat(rules_name))
            throw Error("", "", "the usr tree '" + usr.path().string() + "' has no factory rules (" +
                                    std::string(usr_rules_dir) + "/" + std::string(rules_name) +
                                    "); make it with 'strata factory prepare'",
                        Fault::InvalidInput);
        const auto share = usr.try_open_dir("share");
        if (!share || !share->try_open_dir("factory"))
            throw Error("", "", "the usr tree '" + usr.path().string() + "' has no factory directory (" +
                                    std::string(usr_factory_dir) + ")",
                        Fault::InvalidInput);
        const auto rules = parse_rules(read_file(*tmpfiles, rules_name),
                                       std::string(usr_rules_dir) + "/" + std::string(rules_name));
        PopulateReport report;
        for (const auto& rule : rules) {
            const auto parts = state_path(rule);
            const Dir parent = parent_of(root, parts);
            switch (rule.type) {
            case RuleType::Copy: copy(usr, parent, parts.back(), rule, report); break;
            case RuleType::Symlink: link(parent, parts.back(), rule, report); break;
            case RuleType::Directory: directory(parent, parts.back(), rule, report); break;
            }
        }
        return report;
    });
}

}  // namespace strata::factory
