#pragma once
// Runs helper programs (mkfs.btrfs, cp) without a shell: argv in, exit status and output out.
#include <string>
#include <vector>

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

}  // namespace strata
