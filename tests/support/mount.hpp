#pragma once
// A tmpfs mounted by a test, unmounted when the object goes, also when the test fails: a small
// file system to fill ($BOOT, a repository) or to make read-only.
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/process.hpp"
#include "support/scratch_pool.hpp"

namespace strata::test {

class TestMount {
public:
    // mount -t tmpfs -o <options> tmpfs <target>
    static TestMount tmpfs(const std::filesystem::path& target, const std::string& options = "size=1m") {
        require_root_and_btrfs();
        std::filesystem::create_directories(target);
        checked({"mount", "-t", "tmpfs", "-o", options, "tmpfs", target.string()});
        return TestMount(target);
    }
    TestMount(TestMount&& other) noexcept : target_(std::move(other.target_)) { other.target_.clear(); }
    TestMount& operator=(TestMount&&) = delete;
    ~TestMount() {
        if (target_.empty()) return;
        if (run_process({"umount", target_.string()}).exit_status != 0) run_process({"umount", "-l", target_.string()});
    }
    void remount_read_only() const { checked({"mount", "-o", "remount,ro", target_.string()}); }
    void remount_read_write() const { checked({"mount", "-o", "remount,rw", target_.string()}); }
    const std::filesystem::path& path() const { return target_; }

private:
    explicit TestMount(std::filesystem::path target) : target_(std::move(target)) {}
    static void checked(const std::vector<std::string>& argv) {
        const auto r = run_process(argv);
        if (r.exit_status != 0) throw std::runtime_error(argv[0] + " " + argv.back() + " failed: " + r.err);
    }
    std::filesystem::path target_;
};

}  // namespace strata::test
