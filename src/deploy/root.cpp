#include "deploy/root.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include "base/error.hpp"
#include "naming/arch.hpp"
#include "pool/staging.hpp"

namespace strata::deploy {
namespace {

struct SkeletonDir {
    const char* name;
    mode_t mode;
};

// The mount points and state directories of a merged-usr system (file-hierarchy(7)).
constexpr SkeletonDir skeleton_dirs[] = {
    {"usr", 0755}, {"etc", 0755}, {"var", 0755},  {"home", 0755}, {"root", 0700}, {"tmp", 01777},
    {"run", 0755}, {"proc", 0555}, {"sys", 0555}, {"dev", 0755},  {"boot", 0755}, {"efi", 0755},
    {"mnt", 0755}, {"srv", 0755}, {"opt", 0755},
};

void make_skeleton(const Dir& root, const naming::Name& name) {
    for (const auto& d : skeleton_dirs) {
        check_errno(::mkdirat(root.fd(), d.name, d.mode), "create directory", root.path_of(d.name).string());
        // mkdir applies the umask; the skeleton's modes must not depend on the caller's.
        check_errno(::fchmodat(root.fd(), d.name, d.mode, 0), "set mode of", root.path_of(d.name).string());
    }
    std::vector<std::pair<const char*, const char*>> links = {
        {"bin", "usr/bin"}, {"sbin", "usr/sbin"}, {"lib", "usr/lib"}};
    const auto arch = naming::find_arch(name.arch());
    if (arch && arch->has_lib64) links.emplace_back("lib64", "usr/lib64");
    for (const auto& [link, target] : links)
        check_errno(::symlinkat(target, root.fd(), link), "create symlink", root.path_of(link).string());
    check_errno(::fchmod(root.fd(), 0755), "set mode of", root.path().string());
}

}  // namespace

void create_root(const pool::Pool& pool, const pool::Lock& lock, const naming::Name& name) {
    with_context("create root", name.str(), [&] {
        if (name.kind() != naming::Kind::Root)
            throw Error("", "", "not a root instance name (root:<name>:<vendor-id>:<arch>)", Fault::InvalidInput);
        auto staged = pool.stage(lock, name);
        make_skeleton(staged.dir(), name);
        staged.publish(pool::Access::Writable);
    });
}

}  // namespace strata::deploy
