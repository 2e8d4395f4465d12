#pragma once
// A real web server for download tests: nginx on 127.0.0.1 with a private config, document root,
// logs and temp dirs in a TempDir, on a free port. Range requests work as on any static server;
// extra locations give the misbehaviours a client must survive. The destructor kills and reaps
// nginx, also when the test failed; nginx also dies with the test process (PR_SET_PDEATHSIG).
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "base/process.hpp"
#include "support/scratch_pool.hpp"

namespace strata::test {

// One line of the access log: what the client asked for and what it got.
struct HttpRequest {
    std::string method;
    std::string uri;
    int status = 0;
    uint64_t body_bytes = 0;  // sent, also when the client hung up early
    std::string host;         // the Host the client named (a proxied request names the origin)
    std::string range;        // the Range header, "" when none
    std::string cache_control;  // the Cache-Control header, "" when none
};

class HttpServer {
public:
    enum class Scheme { Http, Https };

    // Starts nginx and returns once it accepts connections. Https uses a fresh self-signed
    // certificate (openssl CLI), which no client trusts: for testing that TLS is verified.
    explicit HttpServer(Scheme scheme = Scheme::Http);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Where the served files go: www()/a/b is served at url() + "/a/b", and also at
    //   /norange/a/b   Range ignored (max_ranges 0): always 200 with the whole file
    //   /slow/a/b      at 32 KiB/s (nginx lets up to two seconds' worth out at once), so that a
    //                  test can interrupt the transfer; a range request, i.e. the resume, at
    //                  full speed, so that the rest does not take long
    //   /nolength/a/b  chunked, without Content-Length (a filter module drops it) and Range
    //   /redirect/a/b  302 to /a/b
    // and fixed answers: /status/403, /status/404, /status/429, /status/500, /status/503
    // (that status), /redirect-loop (302 to itself), /redirect-file (302 to file:///etc/hostname).
    const std::filesystem::path& www() const { return www_; }
    // "http://127.0.0.1:PORT" (or https), without a trailing slash.
    std::string url() const;
    uint16_t port() const { return port_; }

    // The access log so far, in order. A request is logged when nginx has finished it, which can
    // be a moment after the client saw the last byte: wait_for_requests(n) waits for n entries.
    std::vector<HttpRequest> requests() const;
    std::vector<HttpRequest> wait_for_requests(size_t count,
                                               std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

    // SIGKILL, as on a crash or a pulled cable: open transfers end without their last bytes.
    void stop();
    // Starts again on the same port, with the same files and log.
    void start();
    bool running() const { return nginx_.has_value(); }

    // Whether Scheme::Https can work here (needs the openssl binary for the certificate).
    static bool can_serve_https();

private:
    void write_config() const;
    bool try_start();  // false: the port was taken meanwhile

    Scheme scheme_;
    TempDir dir_;
    std::filesystem::path www_;
    uint16_t port_ = 0;
    std::optional<ChildProcess> nginx_;
};

// A TCP port on 127.0.0.1 that nothing listened on a moment ago (a connection to it is refused).
uint16_t free_port();

// Accepts connections (the kernel completes the handshake) and never answers: a stalled server.
class SilentServer {
public:
    SilentServer();
    std::string url() const;

private:
    uint16_t port_ = 0;  // before socket_: its initialiser sets the port
    Fd socket_;
};

}  // namespace strata::test
