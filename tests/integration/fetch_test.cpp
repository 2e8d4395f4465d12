// repo::fetch_text and repo::fetch_to_file against a real nginx on loopback (and file:// URLs):
// resume, servers that ignore Range, interrupted transfers, size checks, retries, redirects,
// proxies from the environment, TLS verification. No btrfs needed.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "repo/fetch.hpp"
#include "support/errors.hpp"
#include "support/http_server.hpp"
#include "support/scratch_pool.hpp"

namespace fs = std::filesystem;
using namespace strata;
using strata::test::error_of;
using strata::test::HttpServer;

namespace {

// Bytes that differ at every offset, so a piece in the wrong place cannot go unnoticed.
std::string pattern(size_t size, uint32_t seed = 1) {
    std::string out(size, '\0');
    uint32_t x = seed * 2654435761u + 1;
    for (auto& c : out) {
        x = x * 1664525u + 1013904223u;
        c = static_cast<char>(x >> 24);
    }
    return out;
}

void write_file(const fs::path& path, std::string_view content) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    REQUIRE(out.good());
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

// Deliberately not O_APPEND: fetch_to_file must find the end itself.
Fd open_download(const fs::path& path) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    REQUIRE(fd);
    return fd;
}

// Quick retries so that tests of retrying do not wait.
repo::FetchOptions quick(unsigned retries = 2) {
    repo::FetchOptions o;
    o.connect_timeout = std::chrono::seconds(5);
    o.stall_timeout = std::chrono::seconds(5);
    o.retries = retries;
    o.first_backoff = std::chrono::milliseconds(1);
    o.max_backoff = std::chrono::milliseconds(10);
    return o;
}

std::optional<Fault> fault_of(auto&& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.fault();
    }
    return std::nullopt;
}

// Sets or unsets environment variables for one test and restores them after.
class EnvGuard {
public:
    void set(const char* name, const char* value) {
        const char* old = std::getenv(name);
        saved_.push_back({name, old ? std::optional<std::string>(old) : std::nullopt});
        if (value) ::setenv(name, value, 1);
        else ::unsetenv(name);
    }
    ~EnvGuard() {
        for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
            if (it->second) ::setenv(it->first.c_str(), it->second->c_str(), 1);
            else ::unsetenv(it->first.c_str());
        }
    }

private:
    std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

}  // namespace

TEST_CASE("fetch_text returns a small file and refuses more than max_bytes") {
    HttpServer server;
    write_file(server.www() / "index.json", "{\"serial\": 1}\n");
    write_file(server.www() / "big", pattern(1000));

    CHECK(repo::fetch_text(server.url() + "/index.json", 1024, quick()) == "{\"serial\": 1}\n");
    CHECK(repo::fetch_text(server.url() + "/big", 1000, quick()) == pattern(1000));

    // Refused by the Content-Length before the body is read, and not retried.
    CHECK(error_of([&] { repo::fetch_text(server.url() + "/big", 999, quick()); }) ==
          "fetch '" + server.url() + "/big': the remote file has 1000 bytes, more than the limit of 999");
    // Without a Content-Length the count of received bytes stops it.
    CHECK(error_of([&] { repo::fetch_text(server.url() + "/nolength/big", 999, quick()); }) ==
          "fetch '" + server.url() + "/nolength/big': more than the limit of 999 bytes");
    const auto log = server.wait_for_requests(4);
    REQUIRE(log.size() == 4);
    CHECK(log[0].cache_control == "no-cache");  // an index must not come from a proxy's cache
    CHECK(log[2].uri == "/big");
    CHECK(log[3].uri == "/nolength/big");
}

TEST_CASE("fetch_text of a missing file names the URL and the status and is not retried") {
    HttpServer server;
    const std::string url = server.url() + "/missing.json";
    CHECK(error_of([&] { repo::fetch_text(url, 1024, quick(3)); }) ==
          "fetch '" + url + "': the server answered HTTP 404");
    CHECK(fault_of([&] { repo::fetch_text(url, 1024, quick(3)); }) == Fault::NotFound);
    CHECK(error_of([&] { repo::fetch_text(server.url() + "/status/403", 1024, quick(3)); }) ==
          "fetch '" + server.url() + "/status/403': the server answered HTTP 403");
    const auto log = server.wait_for_requests(3);
    REQUIRE(log.size() == 3);  // one request each: no retries
    CHECK(log[0].status == 404);
    CHECK(log[2].status == 403);
}

TEST_CASE("server errors 503 and 429 are retried with backoff and then reported") {
    HttpServer server;
    CHECK(error_of([&] { repo::fetch_text(server.url() + "/status/503", 1024, quick(2)); }) ==
          "fetch '" + server.url() + "/status/503': the server answered HTTP 503 (gave up after 3 attempts)");
    CHECK(error_of([&] { repo::fetch_text(server.url() + "/status/429", 1024, quick(1)); }) ==
          "fetch '" + server.url() + "/status/429': the server answered HTTP 429 (gave up after 2 attempts)");
    const auto log = server.wait_for_requests(5);
    REQUIRE(log.size() == 5);
    for (size_t i = 0; i < 3; ++i) CHECK(log[i].status == 503);
    for (size_t i = 3; i < 5; ++i) CHECK(log[i].status == 429);
}

TEST_CASE("fetch_to_file downloads a whole file and reports progress") {
    HttpServer server;
    test::TempDir tmp;
    const std::string content = pattern(300000);
    write_file(server.www() / "streams" / "v1.stream.zst", content);
    Fd fd = open_download(tmp.path() / "v1.part");

    auto options = quick();
    uint64_t last_bytes = 0, calls = 0;
    std::optional<uint64_t> last_total;
    bool monotonic = true;
    options.progress = [&](const Progress& p) {
        CHECK(p.phase == "download");
        if (p.bytes < last_bytes) monotonic = false;
        last_bytes = p.bytes;
        last_total = p.total;
        ++calls;
    };
    const auto r = repo::fetch_to_file(server.url() + "/streams/v1.stream.zst", fd.get(), content.size(), options);
    CHECK(r.resumed_from == 0);
    CHECK(r.fetched == content.size());
    CHECK(r.attempts == 1);
    CHECK(read_file(tmp.path() / "v1.part") == content);
    CHECK(calls > 0);
    CHECK(monotonic);
    CHECK(last_bytes == content.size());
    CHECK(last_total == content.size());
    const auto log = server.wait_for_requests(1);
    REQUIRE(log.size() == 1);
    CHECK(log[0].range.empty());
    CHECK(log[0].status == 200);
    CHECK(log[0].cache_control.empty());  // streams are immutable: caches may keep them
}

TEST_CASE("fetch_to_file resumes a partial file with a Range request for the rest only") {
    HttpServer server;
    test::TempDir tmp;
    const std::string content = pattern(200000, 2);
    const size_t have = 123457;
    write_file(server.www() / "v2.stream", content);
    write_file(tmp.path() / "v2.part", content.substr(0, have));
    Fd fd = open_download(tmp.path() / "v2.part");

    const auto r = repo::fetch_to_file(server.url() + "/v2.stream", fd.get(), content.size(), quick());
    CHECK(r.resumed_from == have);
    CHECK(r.fetched == content.size() - have);
    CHECK(r.attempts == 1);
    CHECK(read_file(tmp.path() / "v2.part") == content);
    const auto log = server.wait_for_requests(1);
    REQUIRE(log.size() == 1);
    CHECK(log[0].range == "bytes=" + std::to_string(have) + "-");
    CHECK(log[0].status == 206);
    CHECK(log[0].body_bytes == content.size() - have);

    // Complete already: nothing is requested again.
    const auto again = repo::fetch_to_file(server.url() + "/v2.stream", fd.get(), content.size(), quick());
    CHECK(again.resumed_from == content.size());
    CHECK(again.fetched == 0);
    CHECK(again.attempts == 0);
    CHECK(server.requests().size() == 1);

    // More than expected already there: refused, the file is left alone for the caller.
    const std::string url = server.url() + "/v2.stream";
    CHECK(error_of([&] { repo::fetch_to_file(url, fd.get(), content.size() - 1, quick()); }) ==
          "fetch '" + url + "': the partial download holds 200000 bytes, more than the expected 199999");
}

TEST_CASE("fetch_to_file starts over when the server ignores Range") {
    HttpServer server;
    test::TempDir tmp;
    const std::string content = pattern(150000, 3);
    write_file(server.www() / "v3.stream", content);
    // Wrong bytes in the partial file: only a real restart gives the right file.
    write_file(tmp.path() / "v3.part", std::string(5000, 'x'));
    Fd fd = open_download(tmp.path() / "v3.part");

    const auto r = repo::fetch_to_file(server.url() + "/norange/v3.stream", fd.get(), content.size(), quick(0));
    CHECK(r.resumed_from == 0);
    CHECK(r.fetched == content.size());
    CHECK(read_file(tmp.path() / "v3.part") == content);
    const auto log = server.wait_for_requests(2);
    REQUIRE(log.size() == 2);
    // The range request got a 200 (curl stops it before the body is used), the second asks for
    // the whole file; the restart is no failure, so it passes with retries = 0.
    CHECK(log[0].range == "bytes=5000-");
    CHECK(log[0].status == 200);
    CHECK(log[1].range.empty());
    CHECK(log[1].status == 200);
    CHECK(log[1].body_bytes == content.size());
    CHECK(r.attempts == 2);
}

TEST_CASE("an interrupted transfer is resumed by the next attempt of the same call") {
    HttpServer server;
    test::TempDir tmp;
    // Far more than /slow/ lets out before the first progress call stops the server (32 KiB/s,
    // up to two seconds' worth at once), so the first attempt cannot complete.
    const std::string content = pattern(512 * 1024 + 17, 4);
    write_file(server.www() / "v4.stream", content);
    Fd fd = open_download(tmp.path() / "v4.part");

    auto options = quick(2);
    uint64_t killed_at = 0;
    options.progress = [&](const Progress& p) {
        if (killed_at == 0 && p.bytes > 0) {
            killed_at = p.bytes;
            server.stop();   // the connection drops mid-transfer
            server.start();  // and the server is back for the retry
        }
    };
    const auto r = repo::fetch_to_file(server.url() + "/slow/v4.stream", fd.get(), content.size(), options);
    CHECK(killed_at > 0);
    CHECK(r.attempts == 2);
    CHECK(r.resumed_from == 0);
    CHECK(r.fetched == content.size());
    CHECK(read_file(tmp.path() / "v4.part") == content);
    // The killed request never reached the log; the retry asked for the rest only.
    const auto log = server.wait_for_requests(1);
    REQUIRE(log.size() == 1);
    CHECK(log[0].status == 206);
    const uint64_t from = content.size() - log[0].body_bytes;
    CHECK(from >= killed_at);
    CHECK(from < content.size());
    CHECK(log[0].range == "bytes=" + std::to_string(from) + "-");
}

TEST_CASE("an interrupted download continues in the next call byte-identical") {
    HttpServer server;
    test::TempDir tmp;
    const std::string content = pattern(512 * 1024 + 5, 5);
    write_file(server.www() / "v5.stream", content);
    Fd fd = open_download(tmp.path() / "v5.part");
    const std::string url = server.url() + "/slow/v5.stream";

    auto options = quick(0);
    options.progress = [&](const Progress& p) {
        if (p.bytes > 0 && server.running()) server.stop();
    };
    const std::string error = error_of([&] { repo::fetch_to_file(url, fd.get(), content.size(), options); });
    CHECK(error.starts_with("fetch '" + url + "': transfer closed with "));
    const uint64_t partial = fs::file_size(tmp.path() / "v5.part");
    CHECK(partial > 0);
    CHECK(partial < content.size());

    // As a second `strata update` would: a fresh call on the same file.
    server.start();
    const auto r = repo::fetch_to_file(url, fd.get(), content.size(), quick());
    CHECK(r.resumed_from == partial);
    CHECK(r.fetched == content.size() - partial);
    CHECK(read_file(tmp.path() / "v5.part") == content);
    const auto log = server.wait_for_requests(1);
    REQUIRE(log.size() == 1);
    CHECK(log[0].range == "bytes=" + std::to_string(partial) + "-");
    CHECK(log[0].body_bytes == content.size() - partial);
}

TEST_CASE("fetch_to_file refuses more or fewer bytes than expected") {
    HttpServer server;
    test::TempDir tmp;
    const std::string content = pattern(50000, 6);
    write_file(server.www() / "s", content);

    SUBCASE("by the Content-Length") {
        Fd fd = open_download(tmp.path() / "a");
        CHECK(error_of([&] { repo::fetch_to_file(server.url() + "/s", fd.get(), 49999, quick(3)); }) ==
              "fetch '" + server.url() + "/s': the remote file has 50000 bytes, expected 49999");
        CHECK(fs::file_size(tmp.path() / "a") == 0);
        CHECK(error_of([&] { repo::fetch_to_file(server.url() + "/s", fd.get(), 50001, quick(3)); }) ==
              "fetch '" + server.url() + "/s': the remote file has 50000 bytes, expected 50001");
        CHECK(server.wait_for_requests(2).size() == 2);  // not retried
    }
    SUBCASE("by counting when there is no Content-Length") {
        Fd fd = open_download(tmp.path() / "b");
        CHECK(error_of([&] { repo::fetch_to_file(server.url() + "/nolength/s", fd.get(), 49999, quick(3)); }) ==
              "fetch '" + server.url() + "/nolength/s': the server sent more than the expected 49999 bytes");
        CHECK(fs::file_size(tmp.path() / "b") <= 49999);
        CHECK(::ftruncate(fd.get(), 0) == 0);
        CHECK(error_of([&] { repo::fetch_to_file(server.url() + "/nolength/s", fd.get(), 50001, quick(3)); }) ==
              "fetch '" + server.url() + "/nolength/s': the transfer ended after 50000 of 50001 bytes");
    }
}

TEST_CASE("a refused connection is retried and then reported with the URL") {
    const uint16_t port = test::free_port();
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/index.json";
    const auto started = std::chrono::steady_clock::now();
    const std::string error = error_of([&] { repo::fetch_text(url, 1024, quick(2)); });
    CHECK(error.starts_with("fetch '" + url + "': Failed to connect to 127.0.0.1 port " + std::to_string(port)));
    CHECK(error.find("Couldn't connect to server") != std::string::npos);
    CHECK(error.ends_with(" (gave up after 3 attempts)"));
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
}

TEST_CASE("a stalled server is detected by stall_timeout and retried") {
    test::SilentServer silent;
    auto options = quick(1);
    options.stall_timeout = std::chrono::seconds(1);
    const std::string url = silent.url() + "/index.json";
    const auto started = std::chrono::steady_clock::now();
    const std::string error = error_of([&] { repo::fetch_text(url, 1024, options); });
    CHECK(error.starts_with("fetch '" + url +
                            "': Operation too slow. Less than 1 bytes/sec transferred the last 1 seconds"));
    CHECK(error.ends_with(" (gave up after 2 attempts)"));
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(took >= std::chrono::seconds(2));
    CHECK(took < std::chrono::seconds(10));
}

TEST_CASE("redirects are followed but never to file URLs and not forever") {
    HttpServer server;
    write_file(server.www() / "moved.json", "{}");
    CHECK(repo::fetch_text(server.url() + "/redirect/moved.json", 1024, quick()) == "{}");
    // A remote server must not make strata read local files; not retried either.
    CHECK(error_of([&] { repo::fetch_text(server.url() + "/redirect-file", 1 << 20, quick(3)); }) ==
          "fetch '" + server.url() + "/redirect-file': redirected to 'file:///etc/hostname', " +
              "but redirects may only lead to http:// and https://");
    CHECK(error_of([&] { repo::fetch_text("ftp://127.0.0.1/index.json", 1024, quick(3)); }) ==
          "fetch 'ftp://127.0.0.1/index.json': Protocol \"ftp\" not supported or disabled in libcurl");
    CHECK(error_of([&] { repo::fetch_text(server.url() + "/redirect-loop", 1024, quick(3)); }) ==
          "fetch '" + server.url() + "/redirect-loop': Maximum (8) redirects followed");
}

TEST_CASE("file URLs download and resume through the same code") {
    test::TempDir tmp;
    const std::string content = pattern(70000, 7);
    write_file(tmp.path() / "repo" / "v7.stream", content);
    const std::string url = "file://" + (tmp.path() / "repo" / "v7.stream").string();

    Fd whole = open_download(tmp.path() / "whole.part");
    const auto full = repo::fetch_to_file(url, whole.get(), content.size(), quick());
    CHECK(full.resumed_from == 0);
    CHECK(full.fetched == content.size());
    CHECK(read_file(tmp.path() / "whole.part") == content);

    write_file(tmp.path() / "resumed.part", content.substr(0, 40000));
    Fd resumed = open_download(tmp.path() / "resumed.part");
    const auto r = repo::fetch_to_file(url, resumed.get(), content.size(), quick());
    CHECK(r.resumed_from == 40000);
    CHECK(r.fetched == content.size() - 40000);
    CHECK(read_file(tmp.path() / "resumed.part") == content);

    CHECK(repo::fetch_text(repo::join_url("file://" + (tmp.path() / "repo").string() + "/", "/v7.stream"),
                           content.size(), quick()) == content);
    Fd small = open_download(tmp.path() / "small.part");
    CHECK(error_of([&] { repo::fetch_to_file(url, small.get(), content.size() - 1, quick()); }) ==
          "fetch '" + url + "': the remote file has 70000 bytes, expected 69999");
    const std::string missing = "file://" + (tmp.path() / "repo" / "nope").string();
    CHECK(error_of([&] { repo::fetch_text(missing, 1024, quick(3)); }) ==
          "fetch '" + missing + "': Couldn't open file " + (tmp.path() / "repo" / "nope").string());
}

TEST_CASE("the http_proxy environment variable is honoured") {
    HttpServer proxy;  // nginx serves a proxy-style request from its own files
    write_file(proxy.www() / "index.json", "via proxy");
    EnvGuard env;
    env.set("http_proxy", proxy.url().c_str());
    env.set("no_proxy", nullptr);
    env.set("NO_PROXY", nullptr);
    CHECK(repo::fetch_text("http://strata-proxy-test.invalid/index.json", 1024, quick()) == "via proxy");
    const auto log = proxy.wait_for_requests(1);
    REQUIRE(log.size() == 1);
    CHECK(log[0].host == "strata-proxy-test.invalid");

    // no_proxy is honoured too: the host is then resolved itself, which .invalid never is.
    env.set("no_proxy", "strata-proxy-test.invalid");
    const std::string error =
        error_of([&] { repo::fetch_text("http://strata-proxy-test.invalid/index.json", 1024, quick(0)); });
    CHECK(error.find("Could not resolve host: strata-proxy-test.invalid") != std::string::npos);
}

TEST_CASE("https to a server with an untrusted certificate fails at once") {
    if (!HttpServer::can_serve_https()) {
        MESSAGE("skipped: no openssl binary to make a certificate");
        return;
    }
    HttpServer server(HttpServer::Scheme::Https);
    write_file(server.www() / "index.json", "{}");
    const std::string url = server.url() + "/index.json";
    auto options = quick(3);
    options.first_backoff = std::chrono::seconds(10);  // a retry would show in the time taken
    options.max_backoff = std::chrono::seconds(10);
    const auto started = std::chrono::steady_clock::now();
    const std::string error = error_of([&] { repo::fetch_text(url, 1024, options); });
    CHECK(error.starts_with("fetch '" + url + "': SSL certificate problem: self-signed certificate"));
    CHECK(error.find("gave up") == std::string::npos);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
    CHECK(server.requests().empty());
}

TEST_CASE("join_url joins without doubling slashes") {
    CHECK(repo::join_url("https://example.org/repo/", "/index.json") == "https://example.org/repo/index.json");
    CHECK(repo::join_url("file:///srv/repo", "streams/a.zst") == "file:///srv/repo/streams/a.zst");
}
