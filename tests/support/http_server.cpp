#include "support/http_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace strata::test {
namespace fs = std::filesystem;

namespace {

sockaddr_in loopback(uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

// A bound (not yet listening) socket on a port the kernel chose.
Fd bind_any_port(uint16_t& port) {
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) throw std::runtime_error("socket failed");
    sockaddr_in addr = loopback(0);
    if (::bind(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0)
        throw std::runtime_error("bind to 127.0.0.1:0 failed");
    socklen_t len = sizeof addr;
    if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &len) < 0)
        throw std::runtime_error("getsockname failed");
    port = ntohs(addr.sin_port);
    return s;
}

bool accepts_connections(uint16_t port) {
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) return false;
    const sockaddr_in addr = loopback(port);
    return ::connect(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
}

std::string read_text(const fs::path& path) {
    std::ifstream in(path);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::string nginx_binary() {
    // /usr/sbin is not in every PATH (a non-root shell on Debian).
    return fs::exists("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";
}

}  // namespace

uint16_t free_port() {
    uint16_t port = 0;
    bind_any_port(port);
    return port;
}

bool HttpServer::can_serve_https() {
    return run_process({"sh", "-c", "command -v openssl"}).exit_status == 0;
}

HttpServer::HttpServer(Scheme scheme) : scheme_(scheme), www_(dir_.path() / "www") {
    fs::create_directories(www_);
    fs::create_directories(dir_.path() / "tmp");
    if (scheme_ == Scheme::Https) {
        const auto r = run_process({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                                    "/CN=127.0.0.1", "-keyout", (dir_.path() / "key.pem").string(), "-out",
                                    (dir_.path() / "cert.pem").string()});
        if (r.exit_status != 0) throw std::runtime_error("openssl req failed: " + r.err);
    }
    // The port is free when chosen but another test may take it before nginx binds: choose again.
    for (int i = 0; i < 5; ++i) {
        port_ = free_port();
        if (try_start()) return;
    }
    throw std::runtime_error("nginx: no free port after 5 tries; " + read_text(dir_.path() / "error.log"));
}

HttpServer::~HttpServer() = default;  // ChildProcess kills and reaps a running nginx

std::string HttpServer::url() const {
    return std::string(scheme_ == Scheme::Https ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

void HttpServer::write_config() const {
    const std::string d = dir_.path().string();
    const std::string www = www_.string() + "/";
    std::string listen = "127.0.0.1:" + std::to_string(port_);
    std::string tls;
    if (scheme_ == Scheme::Https) {
        listen += " ssl";
        tls = "        ssl_certificate " + d + "/cert.pem;\n        ssl_certificate_key " + d + "/key.pem;\n";
    }
    std::ofstream conf(dir_.path() / "nginx.conf", std::ios::trunc);
    // One process, no daemon: the ChildProcess is nginx itself, so killing it ends every
    // connection at once. Every path nginx would write is in the private dir.
    conf << "daemon off;\nmaster_process off;\npid " << d << "/nginx.pid;\nerror_log " << d
         << "/error.log notice;\n"
         << "events { worker_connections 64; }\n"
         << "http {\n"
         << "    default_type application/octet-stream;\n"
         << "    log_format strata '$request_method $request_uri $status $body_bytes_sent $host $http_range "
            "$http_cache_control';\n"
         // Whole files slowly, so a transfer can be interrupted; a range request (a resume) at
         // full speed, so that the test of the resume does not wait.
         << "    map $http_range $strata_rate { '' 32k; default 0; }\n"
         << "    access_log " << d << "/access.log strata;\n"
         << "    client_body_temp_path " << d << "/tmp/body;\n"
         << "    proxy_temp_path " << d << "/tmp/proxy;\n"
         << "    fastcgi_temp_path " << d << "/tmp/fastcgi;\n"
         << "    uwsgi_temp_path " << d << "/tmp/uwsgi;\n"
         << "    scgi_temp_path " << d << "/tmp/scgi;\n"
         << "    server {\n"
         << "        listen " << listen << ";\n"
         << tls
         << "        root " << www << ";\n"
         << "        location / { }\n"
         << "        location /norange/ { alias " << www << "; max_ranges 0; }\n"
         << "        location /slow/ { alias " << www << "; limit_rate $strata_rate; }\n"
         // A body filter drops Content-Length (and Range support), whatever it replaces.
         << "        location /nolength/ { alias " << www
         << "; sub_filter_types *; sub_filter strata-never-there x; }\n"
         << "        location /redirect/ { rewrite ^/redirect/(.*)$ /$1 redirect; }\n"
         << "        location = /redirect-loop { return 302 /redirect-loop; }\n"
         << "        location = /redirect-file { return 302 file:///etc/hostname; }\n";
    for (int status : {403, 404, 429, 500, 503})
        conf << "        location = /status/" << status << " { return " << status << "; }\n";
    conf << "    }\n}\n";
    if (!conf.flush()) throw std::runtime_error("cannot write nginx.conf");
}

bool HttpServer::try_start() {
    write_config();
    const std::string d = dir_.path().string();
    nginx_.emplace(ChildProcess::spawn(
        {nginx_binary(), "-e", d + "/error.log", "-p", d, "-c", d + "/nginx.conf"}, -1, -1));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
        if (nginx_->try_wait(std::chrono::milliseconds(0))) {
            const ProcessResult r = nginx_->wait();
            nginx_.reset();
            const std::string log = read_text(dir_.path() / "error.log");
            if (log.find("Address already in use") != std::string::npos) return false;
            throw std::runtime_error("nginx exited with status " + std::to_string(r.exit_status) + ": " +
                                     r.err + log);
        }
        if (accepts_connections(port_)) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    nginx_.reset();
    throw std::runtime_error("nginx did not accept connections on port " + std::to_string(port_) + " within 10 s");
}

void HttpServer::stop() {
    nginx_.reset();
}

void HttpServer::start() {
    if (nginx_) return;
    if (!try_start()) throw std::runtime_error("nginx: port " + std::to_string(port_) + " was taken meanwhile");
}

std::vector<HttpRequest> HttpServer::requests() const {
    std::vector<HttpRequest> out;
    std::ifstream in(dir_.path() / "access.log");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        HttpRequest r;
        fields >> r.method >> r.uri >> r.status >> r.body_bytes >> r.host >> r.range;
        std::getline(fields >> std::ws, r.cache_control);  // the rest: it may contain spaces
        // nginx logs an empty variable as "-"
        if (r.range == "-") r.range.clear();
        if (r.cache_control == "-") r.cache_control.clear();
        out.push_back(std::move(r));
    }
    return out;
}

std::vector<HttpRequest> HttpServer::wait_for_requests(size_t count, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto found = requests();
        if (found.size() >= count || std::chrono::steady_clock::now() >= deadline) return found;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

SilentServer::SilentServer() : socket_(bind_any_port(port_)) {
    if (::listen(socket_.get(), 16) < 0) throw std::runtime_error("listen failed");
}

std::string SilentServer::url() const {
    return "http://127.0.0.1:" + std::to_string(port_);
}

}  // namespace strata::test
