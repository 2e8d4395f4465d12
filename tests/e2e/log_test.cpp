// Logging under systemd: with stderr connected to the journal (JOURNAL_STREAM), log records are
// sent as journal entries through libsystemd, which strata opens only then (base/log.cpp).
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "e2e.hpp"

namespace fs = std::filesystem;
using namespace strata;

namespace {

// Runs in a child: a private mount namespace with a tmpfs on /run, where a datagram socket
// stands in for the journal's /run/systemd/journal/socket. Returns every datagram received
// while `command` ran, or "FAIL <step>: <errno text>".
std::string journal_datagrams_of(const std::string& command) {
    const auto fail = [](const char* step) { return std::string("FAIL ") + step + ": " + std::strerror(errno); };
    if (::unshare(CLONE_NEWNS) < 0) return fail("unshare");
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) return fail("make mounts private");
    if (::mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") < 0) return fail("mount tmpfs on /run");
    if (::mkdir("/run/systemd", 0755) < 0 || ::mkdir("/run/systemd/journal", 0755) < 0) return fail("mkdir");
    const int sock = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return fail("socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, "/run/systemd/journal/socket");
    if (::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return fail("bind");
    if (std::system(command.c_str()) == -1) return fail("system");
    std::string all;
    std::string buf(1 << 16, '\0');
    for (;;) {
        const ssize_t n = ::recv(sock, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n <= 0) break;
        all.append(buf.data(), static_cast<size_t>(n));
        all += "\n--\n";
    }
    return all;
}

}  // namespace

TEST_CASE("under systemd, log records become journal entries with message, priority and identifier") {
    test::require_root_and_btrfs();
    test::ScratchPool scratch;
    test::TempDir work;
    const auto err_file = work.path() / "stderr";
    std::ofstream(err_file).flush();
    struct stat st {};
    REQUIRE(::stat(err_file.c_str(), &st) == 0);
    // -v: debug records; without --boot-dir, finding $BOOT logs one ("$BOOT under '/': ...").
    const std::string command = "JOURNAL_STREAM=" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + " '" +
                                test::strata_binary() + "' -v --pool '" + scratch.mountpoint().string() +
                                "' status 2>>'" + err_file.string() + "' >/dev/null";
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(pipe_fds[0]);
        const std::string result = journal_datagrams_of(command);
        const ssize_t written = ::write(pipe_fds[1], result.data(), result.size());
        ::_exit(written == static_cast<ssize_t>(result.size()) ? 0 : 1);
    }
    ::close(pipe_fds[1]);
    std::string received;
    char buf[4096];
    for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;) received.append(buf, static_cast<size_t>(n));
    ::close(pipe_fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CAPTURE(received);
    REQUIRE_FALSE(received.starts_with("FAIL"));
    CHECK(received.find("MESSAGE=$BOOT under '/'") != std::string::npos);
    CHECK(received.find("\nPRIORITY=7\nSYSLOG_IDENTIFIER=strata\n") != std::string::npos);
    // Log records went to the journal, not to stderr.
    std::ifstream in(err_file);
    const std::string err{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    CHECK(err.find("/boot/efi esp=") == std::string::npos);
}
