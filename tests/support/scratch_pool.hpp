#pragma once
// The world of a btrfs test: an image file, `mkfs.btrfs`, `losetup -f --show`, a mount in a
// private temp dir. The destructor unmounts and detaches exactly what the constructor attached,
// also when the test failed. Deliberately built on the stock tools, not on strata's own loop and
// mount code, so the fixture does not share bugs with the code under test.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/process.hpp"

namespace strata::test {

// Every scratch directory starts with this, so the leak check can find what tests left behind.
inline constexpr const char* scratch_prefix = "strata-test-";

// Returns when the test can run (root, btrfs, loop devices). Otherwise exits 77 (ctest: skipped)
// with the reason, or, under CI=true, fails the test so CI never goes green on skipped tests.
void require_root_and_btrfs();

class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

class ScratchPool {
public:
    explicit ScratchPool(uint64_t size = 256ull << 20);
    ~ScratchPool();
    ScratchPool(const ScratchPool&) = delete;
    ScratchPool& operator=(const ScratchPool&) = delete;

    const std::filesystem::path& mountpoint() const { return mountpoint_; }
    const std::filesystem::path& device() const { return device_; }
    const std::filesystem::path& image() const { return image_; }
    const std::filesystem::path& dir() const { return dir_.path(); }

private:
    TempDir dir_;
    std::filesystem::path image_;
    std::filesystem::path device_;
    std::filesystem::path mountpoint_;
    bool mounted_ = false;
};

// The backing file of a loop device, or empty if it is not attached.
std::string loop_backing_file(const std::filesystem::path& device);

// The strata binary under test.
std::string strata_binary();
// Runs the strata binary under test with args; stdin is /dev/null.
ProcessResult run_strata(const std::vector<std::string>& args);
// Runs a shell command line (for pipes and redirections into strata); $STRATA is the binary.
ProcessResult run_shell(const std::string& command_line);

// Unmounts anything mounted at or below path, for tests that let strata mount things.
void unmount_all_below(const std::filesystem::path& path);

}  // namespace strata::test
