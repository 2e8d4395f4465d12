#include "support/scratch_pool.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace strata::test {
namespace {

bool have_btrfs() {
    std::ifstream in("/proc/filesystems");
    std::string line;
    while (std::getline(in, line))
        if (line.find("\tbtrfs") != std::string::npos) return true;
    return false;
}

std::string checked(const std::vector<std::string>& argv) {
    auto r = run_process(argv);
    if (r.exit_status != 0) throw std::runtime_error(argv[0] + " failed: " + r.err);
    return r.out;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

}  // namespace

void require_root_and_btrfs() {
    std::string why;
    if (::geteuid() != 0) why = "needs root";
    else if (!have_btrfs()) why = "the kernel has no btrfs";
    else if (::access("/dev/loop-control", R_OK | W_OK) != 0) why = "no /dev/loop-control";
    else if (run_process({"sh", "-c", "command -v mkfs.btrfs"}).exit_status != 0) why = "mkfs.btrfs is missing";
    if (why.empty()) return;
    const char* ci = std::getenv("CI");
    if (ci && std::string(ci) == "true") throw std::runtime_error("cannot run under CI=true: " + why);
    std::cerr << "skipped: " << why << "\n";
    std::exit(77);
}

TempDir::TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / (std::string(scratch_prefix) + "XXXXXX")).string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

ScratchPool::ScratchPool(uint64_t size) {
    require_root_and_btrfs();
    image_ = dir_.path() / "pool.img";
    mountpoint_ = dir_.path() / "pool";
    std::filesystem::create_directory(mountpoint_);
    checked({"truncate", "-s", std::to_string(size), image_.string()});
    checked({"mkfs.btrfs", "-q", image_.string()});
    device_ = trim(checked({"losetup", "-f", "--show", image_.string()}));
    try {
        checked({"mount", device_.string(), mountpoint_.string()});
        mounted_ = true;
    } catch (...) {
        run_process({"losetup", "-d", device_.string()});
        throw;
    }
}

ScratchPool::~ScratchPool() {
    unmount_all_below(mountpoint_);
    // Detach only if the device still backs our image: never touch someone else's loop device.
    if (!device_.empty() && loop_backing_file(device_) == image_.string())
        run_process({"losetup", "-d", device_.string()});
}

std::string loop_backing_file(const std::filesystem::path& device) {
    std::ifstream in("/sys/block/" + device.filename().string() + "/loop/backing_file");
    std::string s;
    std::getline(in, s);
    return s;
}

void unmount_all_below(const std::filesystem::path& path) {
    // Deepest first, so nested mounts go before their parents.
    std::ifstream in("/proc/self/mountinfo");
    std::vector<std::string> targets;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string id, parent, devno, root, target;
        fields >> id >> parent >> devno >> root >> target;
        if (target == path.string() || target.rfind(path.string() + "/", 0) == 0) targets.push_back(target);
    }
    for (auto it = targets.rbegin(); it != targets.rend(); ++it) {
        if (run_process({"umount", *it}).exit_status != 0) run_process({"umount", "-l", *it});
    }
}

std::string strata_binary() { return STRATA_BINARY; }

ProcessResult run_shell(const std::string& command_line) {
    return run_process({"sh", "-c", "STRATA='" STRATA_BINARY "'; " + command_line});
}

ProcessResult run_strata(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {STRATA_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv);
}

}  // namespace strata::test
