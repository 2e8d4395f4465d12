#include "base/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "base/error.hpp"
#include "base/fd.hpp"

extern char** environ;

namespace strata {
namespace {

struct Pipe {
    Fd read, write;
};

Pipe make_pipe() {
    int fds[2];
    check_errno(::pipe2(fds, O_CLOEXEC), "create pipe", "");
    return {Fd(fds[0]), Fd(fds[1])};
}

std::string last_line(std::string_view text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
    const auto pos = text.rfind('\n');
    return std::string(pos == std::string_view::npos ? text : text.substr(pos + 1));
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv) {
    if (argv.empty()) throw Error("run", "", "empty command line", Fault::Failed);
    Pipe out = make_pipe();
    Pipe err = make_pipe();

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out.write.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err.write.get(), 2);

    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);

    pid_t pid = -1;
    const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw Error("run", argv[0], rc);
    out.write = Fd();
    err.write = Fd();

    ProcessResult result;
    pollfd fds[2] = {{out.read.get(), POLLIN, 0}, {err.read.get(), POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open = 2;
    char buf[16384];
    while (open > 0) {
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            throw_errno("wait for output of", argv[0]);
        }
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                sinks[i]->append(buf, static_cast<size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                fds[i].fd = -1;
                --open;
            }
        }
    }

    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw_errno("wait for", argv[0]);
    }
    result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

ProcessResult run_checked(const std::vector<std::string>& argv) {
    ProcessResult r = run_process(argv);
    if (r.exit_status != 0) {
        std::string why = last_line(r.err);
        if (why.empty()) why = "exited with status " + std::to_string(r.exit_status);
        throw Error("run", argv[0], why);
    }
    return r;
}

}  // namespace strata
