#include "base/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <pthread.h>
#include <csignal>
#include <utility>
#include <unistd.h>

#include <cerrno>

#include "base/error.hpp"
#include "base/fd.hpp"

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

void throw_if_failed(const ProcessResult& r, const std::string& program) {
    if (r.exit_status == 0) return;
    std::string why = last_line(r.err);
    if (why.empty()) why = "exited with status " + std::to_string(r.exit_status);
    throw Error("run", program, why);
}

// What the child needs between clone and exec: it runs on the parent's memory and must not
// allocate.
struct ChildSetup {
    char* const* args;
    int fds[3];
    int report;  // exec failures travel back as an errno through a pipe that exec closes
    pid_t parent;
    sigset_t mask;  // the parent's signal mask, restored for the program
};

int run_child(void* arg) {
    const auto& setup = *static_cast<const ChildSetup*>(arg);
    // Handlers are the parent's code: a signal before exec must not run them on its memory.
    for (int sig = 1; sig < NSIG; ++sig) {
        struct sigaction action {};
        if (::sigaction(sig, nullptr, &action) == 0 && action.sa_handler != SIG_IGN && action.sa_handler != SIG_DFL) {
            action.sa_handler = SIG_DFL;
            ::sigaction(sig, &action, nullptr);
        }
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != setup.parent) ::_exit(127);
    int wired[3];
    for (int i = 0; i < 3; ++i)
        wired[i] = setup.fds[i] >= 0 ? ::fcntl(setup.fds[i], F_DUPFD_CLOEXEC, 3)
                                     : ::open("/dev/null", (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
    int failure = 0;
    for (int i = 0; i < 3 && failure == 0; ++i)
        if (wired[i] < 0 || ::dup2(wired[i], i) < 0) failure = errno;
    if (failure == 0) {
        ::sigprocmask(SIG_SETMASK, &setup.mask, nullptr);
        ::execvp(setup.args[0], setup.args);
        failure = errno;
    }
    (void)!::write(setup.report, &failure, sizeof failure);
    ::_exit(127);
}

// Starts argv with the three standard streams wired as given; -1 means /dev/null. Not
// posix_spawn: the child must die with strata (PR_SET_PDEATHSIG), or a killed import would
// leave cp or btrfs receive writing into a staging area the next command deletes. Not fork
// either: copying the page tables of a large decoder for every gzip child cost more than the
// child's work; the child shares strata's memory until exec (CLONE_VM | CLONE_VFORK), as
// posix_spawn does.
pid_t spawn(const std::vector<std::string>& argv, int in, int out, int err) {
    if (argv.empty()) throw Error("run", "", "empty command line", Fault::Failed);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    Pipe report = make_pipe();
    ChildSetup setup{args.data(), {in, out, err}, report.write.get(), ::getpid(), {}};
    constexpr size_t stack_bytes = 64 << 10;
    std::vector<char> stack(stack_bytes);
    sigset_t all;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &setup.mask);
    const pid_t pid = ::clone(run_child, stack.data() + stack.size(), CLONE_VM | CLONE_VFORK | SIGCHLD, &setup);
    const int clone_errno = errno;
    ::pthread_sigmask(SIG_SETMASK, &setup.mask, nullptr);
    if (pid < 0) throw Error("start", argv[0], clone_errno);
    report.write = Fd();
    int child_errno = 0;
    ssize_t n;
    while ((n = ::read(report.read.get(), &child_errno, sizeof child_errno)) < 0 && errno == EINTR) {}
    if (n == static_cast<ssize_t>(sizeof child_errno)) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        throw Error("run", argv[0], child_errno);
    }
    return pid;
}

int reap(pid_t pid, const std::string& program) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw_errno("wait for", program);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv) {
    Pipe out = make_pipe();
    Pipe err = make_pipe();
    const pid_t pid = spawn(argv, -1, out.write.get(), err.write.get());
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
    result.exit_status = reap(pid, argv[0]);
    return result;
}

ProcessResult run_checked(const std::vector<std::string>& argv) {
    ProcessResult r = run_process(argv);
    throw_if_failed(r, argv.at(0));
    return r;
}

ChildProcess ChildProcess::spawn(const std::vector<std::string>& argv, int stdin_fd, int stdout_fd) {
    Fd err(::memfd_create("strata-child-stderr", MFD_CLOEXEC));
    if (!err) throw_errno("create stderr file for", argv.empty() ? "" : argv[0]);
    const pid_t pid = strata::spawn(argv, stdin_fd, stdout_fd, err.get());
    return ChildProcess(pid, argv[0], std::move(err));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      program_(std::move(other.program_)),
      err_(std::move(other.err_)),
      exit_status_(other.exit_status_) {}

ChildProcess::~ChildProcess() {
    if (pid_ < 0 || exit_status_) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
}

bool ChildProcess::try_wait(std::chrono::milliseconds timeout) {
    if (exit_status_) return true;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r < 0 && errno != EINTR) throw_errno("wait for", program_);
        if (r == pid_) {
            exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return true;
        }
        if (std::chrono::steady_clock::now() >= deadline) return false;
        ::usleep(10000);
    }
}

ProcessResult ChildProcess::wait() {
    ProcessResult result;
    result.exit_status = exit_status_ ? *exit_status_ : reap(pid_, program_);
    pid_ = -1;
    char buf[16384];
    ssize_t n;
    while ((n = ::pread(err_.get(), buf, sizeof buf, static_cast<off_t>(result.err.size()))) > 0)
        result.err.append(buf, static_cast<size_t>(n));
    return result;
}

ProcessResult ChildProcess::wait_checked() {
    const std::string program = program_;
    ProcessResult r = wait();
    throw_if_failed(r, program);
    return r;
}

}  // namespace strata
