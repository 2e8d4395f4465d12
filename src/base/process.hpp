#pragma once
// Runs helper programs (mkfs.btrfs, cp, btrfs send/receive) without a shell.
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.hpp"

namespace strata {

struct ProcessResult {
    int exit_status = -1;  // exit code, or 128+signal when killed by a signal
    std::string out;
    std::string err;
};

// Runs argv[0] (looked up in PATH) with stdin from /dev/null and collects stdout and stderr.
ProcessResult run_process(const std::vector<std::string>& argv);

// As run_process, but a non-zero exit throws Error("run", argv[0], <last line of stderr>).
ProcessResult run_checked(const std::vector<std::string>& argv);

// A helper that streams data (btrfs send, btrfs receive) through descriptors the caller wires:
// stdin_fd/stdout_fd of -1 mean /dev/null. stderr goes to an anonymous file, not a pipe, so a
// chatty child can never block while the caller is busy feeding its stdin.
class ChildProcess {
public:
    static ChildProcess spawn(const std::vector<std::string>& argv, int stdin_fd, int stdout_fd);
    ChildProcess(ChildProcess&& other) noexcept;
    ChildProcess& operator=(ChildProcess&&) = delete;
    // A child still running here is killed and reaped: an abandoned helper must not outlive
    // the operation (e.g. keep writing into a staging area that is being deleted).
    ~ChildProcess();

    pid_t pid() const { return pid_; }
    // True once the child has exited (then wait() returns at once); waits up to timeout.
    bool try_wait(std::chrono::milliseconds timeout);
    // Waits for the exit; exit status and stderr in the result (out stays empty).
    ProcessResult wait();
    // As wait(), but a non-zero exit throws like run_checked.
    ProcessResult wait_checked();

private:
    ChildProcess(pid_t pid, std::string program, Fd err) : pid_(pid), program_(std::move(program)), err_(std::move(err)) {}
    pid_t pid_ = -1;
    std::string program_;
    Fd err_;
    std::optional<int> exit_status_;  // reaped by try_wait
};

}  // namespace strata
