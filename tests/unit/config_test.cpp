#include <doctest/doctest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "config/config.hpp"

using namespace strata;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// A private directory under /tmp, removed with everything in it when the test ends.
class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/strata-config-XXXXXX";
        REQUIRE(::mkdtemp(tmpl));
        path_ = tmpl;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }

    // Writes text to path (relative to the directory), creating parent directories.
    fs::path write(const fs::path& relative, std::string_view text) const {
        const fs::path file = path_ / relative;
        fs::create_directories(file.parent_path());
        std::ofstream(file) << text;
        return file;
    }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

// The message of the error parse() throws, checking that it is an input error.
std::string parse_error(std::string_view text, std::string_view source = "F") {
    try {
        config::parse(text, source);
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::InvalidInput);
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("defaults apply when no file sets anything") {
    for (const config::Config& c : {config::Config{}, config::parse("", "F"), config::load({})}) {
        CHECK(c.pool.path == "/var/lib/strata/pool");
        CHECK(c.pool.image == "/var/lib/strata/pool.img");
        CHECK(c.pool.image_size == 4ull << 30);
        CHECK(c.pool.lock_timeout == 30s);
        CHECK(c.log.level == "info");
    }
}

TEST_CASE("every key is read") {
    const auto c = config::parse(R"(
# comment
[pool]
path = "/srv/pool"
image = "/srv/pool.img"
image-size = "512M"
lock-timeout-sec = 5

[log]
level = "debug"
)",
                                 "F");
    CHECK(c.pool.path == "/srv/pool");
    CHECK(c.pool.image == "/srv/pool.img");
    CHECK(c.pool.image_size == 512ull << 20);
    CHECK(c.pool.lock_timeout == 5s);
    CHECK(c.log.level == "debug");
}

TEST_CASE("dotted keys and inline tables are the same keys") {
    const auto c = config::parse("pool.path = \"/a\"\nlog = { level = \"off\" }\n", "F");
    CHECK(c.pool.path == "/a");
    CHECK(c.log.level == "off");
}

TEST_CASE("pool.image-size takes a size string or an integer of bytes") {
    CHECK(config::parse("[pool]\nimage-size = \"4G\"", "F").pool.image_size == 4ull << 30);
    CHECK(config::parse("[pool]\nimage-size = \"1T\"", "F").pool.image_size == 1ull << 40);
    CHECK(config::parse("[pool]\nimage-size = \"128MiB\"", "F").pool.image_size == 128ull << 20);
    CHECK(config::parse("[pool]\nimage-size = \"1048576\"", "F").pool.image_size == 1048576);
    CHECK(config::parse("[pool]\nimage-size = 1073741824", "F").pool.image_size == 1ull << 30);
}

TEST_CASE("pool.lock-timeout-sec takes integer or fractional seconds") {
    CHECK(config::parse("[pool]\nlock-timeout-sec = 0", "F").pool.lock_timeout == 0ms);
    CHECK(config::parse("[pool]\nlock-timeout-sec = 2.5", "F").pool.lock_timeout == 2500ms);
    CHECK(config::parse("[pool]\nlock-timeout-sec = 0.001", "F").pool.lock_timeout == 1ms);
    CHECK(config::parse("[pool]\nlock-timeout-sec = 120", "F").pool.lock_timeout == 120s);
}

TEST_CASE("every log level is accepted") {
    for (const char* level : {"trace", "debug", "info", "warning", "error", "critical", "off"})
        CHECK(config::parse(std::string("[log]\nlevel = \"") + level + "\"", "F").log.level == level);
}

TEST_CASE("parse applies on top of a base and keeps the keys it does not set") {
    config::Config base;
    base.pool.path = "/base";
    base.log.level = "error";
    const auto c = config::parse("[log]\nlevel = \"trace\"", "F", base);
    CHECK(c.pool.path == "/base");
    CHECK(c.log.level == "trace");
}

TEST_CASE("later files override earlier ones key by key") {
    TempDir dir;
    const std::vector<fs::path> files = {
        dir.write("vendor.toml",
                  "[pool]\npath = \"/vendor\"\nimage = \"/vendor.img\"\n[log]\nlevel = \"warning\"\n"),
        dir.write("etc.toml", "[pool]\npath = \"/etc-pool\"\n"),
        dir.write("dropin.toml", "[log]\nlevel = \"debug\"\n"),
    };
    const auto c = config::load(files);
    CHECK(c.pool.path == "/etc-pool");
    CHECK(c.pool.image == "/vendor.img");
    CHECK(c.pool.image_size == 4ull << 30);
    CHECK(c.log.level == "debug");
}

TEST_CASE("a listed file that cannot be read is an error") {
    TempDir dir;
    const std::vector<fs::path> missing = {dir.path() / "nope.toml"};
    try {
        config::load(missing);
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) ==
              "read config '" + missing[0].string() + "': No such file or directory");
        CHECK(e.fault() == Fault::NotFound);
    }
    const std::vector<fs::path> directory = {dir.path()};
    CHECK_THROWS_AS(config::load(directory), Error);
}

TEST_CASE("load names the file in errors") {
    TempDir dir;
    const std::vector<fs::path> files = {dir.write("ok.toml", "[pool]\npath = \"/x\"\n"),
                                         dir.write("bad.toml", "\n[pool]\npth = \"/x\"\n")};
    try {
        config::load(files);
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "config '" + files[1].string() + "' line 3: unknown key 'pool.pth'");
        CHECK(e.fault() == Fault::InvalidInput);
    }
}

TEST_CASE("config_files lists the existing files in order, drop-ins sorted by name") {
    TempDir root;
    CHECK(config::config_files(root.path()).empty());

    root.write("etc/strata/strata.toml", "");
    CHECK(config::config_files(root.path()) == std::vector<fs::path>{root.path() / "etc/strata/strata.toml"});

    root.write("usr/lib/strata/strata.toml", "");
    root.write("etc/strata/strata.toml.d/50-b.toml", "");
    root.write("etc/strata/strata.toml.d/10-z.toml", "");
    root.write("etc/strata/strata.toml.d/50-a.toml", "");
    root.write("etc/strata/strata.toml.d/README", "");
    root.write("etc/strata/strata.toml.d/old.toml.bak", "");
    root.write("etc/strata/strata.toml.d/.#50-a.toml", "");
    fs::create_directories(root.path() / "etc/strata/strata.toml.d/dir.toml");
    fs::create_symlink("nowhere", root.path() / "etc/strata/strata.toml.d/dangling.toml");

    const fs::path d = root.path() / "etc/strata/strata.toml.d";
    CHECK(config::config_files(root.path()) == std::vector<fs::path>{
                                                   root.path() / "usr/lib/strata/strata.toml",
                                                   root.path() / "etc/strata/strata.toml",
                                                   d / "10-z.toml",
                                                   d / "50-a.toml",
                                                   d / "50-b.toml",
                                               });
}

TEST_CASE("unknown keys and sections are errors with file and line") {
    CHECK(parse_error("[pool]\npath = \"/x\"\npth = \"/y\"\n", "/etc/strata/strata.toml") ==
          "config '/etc/strata/strata.toml' line 3: unknown key 'pool.pth'");
    CHECK(parse_error("[foo]\nbar = 1\n") == "config 'F' line 1: unknown section 'foo'");
    CHECK(parse_error("\nfoo = 1\n") == "config 'F' line 2: unknown key 'foo'");
    CHECK(parse_error("[log]\nlevel = \"info\"\n[log.extra]\n") ==
          "config 'F' line 3: unknown key 'log.extra'");
    CHECK(parse_error("[pool]\n\"a\\nb\" = 1\n") == "config 'F' line 2: unknown key 'pool.a\\nb'");
    // The first mistake in the file is the one reported, whatever the key order.
    CHECK(parse_error("[pool]\nzzz = 1\naaa = 2\n") == "config 'F' line 2: unknown key 'pool.zzz'");
}

TEST_CASE("TOML syntax errors carry the line and toml++'s description") {
    CHECK(parse_error("[pool]\npath = \n") ==
          "config 'F' line 2: Error while parsing key-value pair: expected value, saw '\\n'");
    CHECK(parse_error("[pool]\n[pool]\n") ==
          "config 'F' line 2: Error while parsing table header: cannot redefine existing table 'pool'");
    const std::string bad_utf8 = parse_error("[log]\nlevel = 'x\xff'\n");
    CHECK(bad_utf8.starts_with("config 'F' line 2: "));
    CHECK(bad_utf8.find('\n') == std::string::npos);
}

TEST_CASE("values of the wrong type are errors") {
    CHECK(parse_error("[pool]\nlock-timeout-sec = \"30\"\n") ==
          "config 'F' line 2: 'pool.lock-timeout-sec' must be a number of seconds, got string");
    CHECK(parse_error("[pool]\npath = 1\n") ==
          "config 'F' line 2: 'pool.path' must be a string, got integer");
    CHECK(parse_error("[pool]\nimage = [\"/a\"]\n") ==
          "config 'F' line 2: 'pool.image' must be a string, got array");
    CHECK(parse_error("[pool]\nimage-size = true\n") ==
          "config 'F' line 2: 'pool.image-size' must be a size like '4G' or a number of bytes, got boolean");
    CHECK(parse_error("[pool]\nimage-size = 1.5\n") ==
          "config 'F' line 2: 'pool.image-size' must be a size like '4G' or a number of bytes, got float");
    CHECK(parse_error("[log]\nlevel = 3\n") ==
          "config 'F' line 2: 'log.level' must be a string, got integer");
    CHECK(parse_error("pool = 1\n") == "config 'F' line 1: 'pool' must be a table, got integer");
    CHECK(parse_error("[[log]]\nlevel = \"info\"\n") ==
          "config 'F' line 1: 'log' must be a table, got array");
    CHECK(parse_error("[pool]\npath = 1979-05-27\n") ==
          "config 'F' line 2: 'pool.path' must be a string, got date");
}

TEST_CASE("paths must be absolute") {
    CHECK(parse_error("[pool]\npath = \"var/lib/pool\"\n") ==
          "config 'F' line 2: 'pool.path' must be an absolute path");
    CHECK(parse_error("[pool]\n\nimage = \"\"\n") ==
          "config 'F' line 3: 'pool.image' must be an absolute path");
    CHECK(parse_error("[pool]\npath = \"/a\\u0000b\"\n") ==
          "config 'F' line 2: 'pool.path' must not contain NUL characters");
}

TEST_CASE("image sizes are checked") {
    CHECK(parse_error("[pool]\nimage-size = \"4X\"\n") ==
          "config 'F' line 2: 'pool.image-size': invalid size '4X': unknown unit (use K, M, G, T or P)");
    CHECK(parse_error("[pool]\nimage-size = \"\"\n") ==
          "config 'F' line 2: 'pool.image-size': invalid size '': not a number");
    CHECK(parse_error("[pool]\nimage-size = -1\n") ==
          "config 'F' line 2: 'pool.image-size' must be greater than zero, got -1");
    CHECK(parse_error("[pool]\nimage-size = \"0\"\n") ==
          "config 'F' line 2: 'pool.image-size' must be greater than zero, got '0'");
    CHECK(parse_error("[pool]\nimage-size = \"4\\nG\"\n") ==
          "config 'F' line 2: 'pool.image-size' must be a size like '4G' or a number of bytes, got '4\\nG'");
}

TEST_CASE("lock timeouts are checked") {
    CHECK(parse_error("[pool]\nlock-timeout-sec = -1\n") ==
          "config 'F' line 2: 'pool.lock-timeout-sec' must not be negative, got -1");
    CHECK(parse_error("[pool]\nlock-timeout-sec = -0.5\n") ==
          "config 'F' line 2: 'pool.lock-timeout-sec' must not be negative, got -0.5");
    CHECK(parse_error("[pool]\nlock-timeout-sec = nan\n") ==
          "config 'F' line 2: 'pool.lock-timeout-sec' must be a number of seconds, got nan");
    CHECK(parse_error("[pool]\nlock-timeout-sec = inf\n") ==
          "config 'F' line 2: 'pool.lock-timeout-sec' must be at most 1000000000, got inf");
    CHECK(parse_error("[pool]\nlock-timeout-sec = 9223372036854775807\n") ==
          "config 'F' line 2: 'pool.lock-timeout-sec' must be at most 1000000000, got 9223372036854775807");
}

TEST_CASE("log levels are checked") {
    CHECK(parse_error("[log]\nlevel = \"loud\"\n") ==
          "config 'F' line 2: 'log.level' must be one of trace, debug, info, warning, error, critical, off, "
          "got 'loud'");
    CHECK(parse_error("[log]\nlevel = \"INFO\"\n") ==
          "config 'F' line 2: 'log.level' must be one of trace, debug, info, warning, error, critical, off, "
          "got 'INFO'");
}

TEST_CASE("the file name in errors is escaped") {
    CHECK(parse_error("x = 1", "a\nb") == "config 'a\\nb' line 1: unknown key 'x'");
}

TEST_CASE("boot and gc keys") {
    const config::Config defaults;
    CHECK_FALSE(defaults.boot.dir);
    CHECK(defaults.boot.tries == 3);
    CHECK(defaults.boot.kernel_args.empty());
    CHECK(defaults.gc.keep == 3);
    const auto c = config::parse(
        "[boot]\ndir = \"/efi\"\ntries = 0\nkernel-args = [\"quiet\", \"console=ttyS0\"]\n[gc]\nkeep = 5\n", "F");
    CHECK(c.boot.dir == "/efi");
    CHECK(c.boot.tries == 0);
    CHECK(c.boot.kernel_args == std::vector<std::string>{"quiet", "console=ttyS0"});
    CHECK(c.gc.keep == 5);
    CHECK(parse_error("[boot]\ndir = \"boot\"") == "config 'F' line 2: 'boot.dir' must be an absolute path");
    CHECK(parse_error("[boot]\ntries = 101") == "config 'F' line 2: 'boot.tries' must be between 0 and 100, got 101");
    CHECK(parse_error("[boot]\ntries = \"3\"") == "config 'F' line 2: 'boot.tries' must be an integer, got string");
    CHECK(parse_error("[boot]\nkernel-args = [\"a b\"]") ==
          "config 'F' line 2: 'boot.kernel-args' must hold single words without spaces, got 'a b'");
    CHECK(parse_error("[boot]\nkernel-args = \"quiet\"") ==
          "config 'F' line 2: 'boot.kernel-args' must be an array of strings, got string");
    CHECK(parse_error("[gc]\nkeep = 0") == "config 'F' line 2: 'gc.keep' must be between 1 and 1000, got 0");
}

TEST_CASE("factory.exclude holds paths below etc or var") {
    CHECK(config::Config{}.factory.exclude.empty());
    const auto c = config::parse("[factory]\nexclude = [\"etc/hostname\", \"/var/lib/foo/**\"]\n", "F");
    CHECK(c.factory.exclude == std::vector<std::string>{"etc/hostname", "/var/lib/foo/**"});
    CHECK(parse_error("[factory]\nexclude = \"etc/hostname\"") ==
          "config 'F' line 2: 'factory.exclude' must be an array of strings, got string");
    CHECK(parse_error("[factory]\nexclude = [1]") == "config 'F' line 2: 'factory.exclude' must contain only strings");
    CHECK(parse_error("[factory]\nexclude = [\"usr/lib/x\"]") ==
          "config 'F' line 2: 'factory.exclude' must hold paths below etc/ or var/, got 'usr/lib/x'");
    CHECK(parse_error("[factory]\nexclude = [\"etc/\"]") ==
          "config 'F' line 2: 'factory.exclude' must hold paths below etc/ or var/, got 'etc/'");
}

TEST_CASE("remotes are tables of their own with url, keys and insecure") {
    const auto c = config::parse("[remote.vendor]\nurl = \"https://updates.example.org/os\"\nkeys = [\"/etc/k.pub\"]\n"
                                 "[remote.local]\nurl = \"file:///srv/repo\"\ninsecure = true\n[update]\nremote = \"vendor\"\n"
                                 "policy = \"stage\"\n",
                                 "F");
    REQUIRE(c.remotes.size() == 2);
    CHECK(c.remotes.at("vendor").url == "https://updates.example.org/os");
    CHECK(c.remotes.at("vendor").keys == std::vector<fs::path>{"/etc/k.pub"});
    CHECK_FALSE(c.remotes.at("vendor").insecure);
    CHECK(c.remotes.at("local").insecure);
    CHECK(c.update.remote == "vendor");
    CHECK(c.update.policy == "stage");
    CHECK(parse_error("[remote.x]\nurl = \"ftp://a\"\n") == "config 'F' line 2: 'remote.x.url' must be a file:///, http:// or https:// URL, got 'ftp://a'");
    CHECK(parse_error("[remote.x]\nurl = \"file:///a\"\nkey = []\n") == "config 'F' line 3: unknown key 'remote.x.key'");
    CHECK(parse_error("[remote.x]\nkeys = []\n") == "config 'F' line 1: 'remote.x' needs a url");
    CHECK(parse_error("[update]\npolicy = \"always\"\n") == "config 'F' line 2: 'update.policy' must be one of none, check, stage, got 'always'");
}

TEST_CASE("a rendered remote drop-in reads back the same") {
    const config::RemoteSettings remote{.url = "http://127.0.0.1:8080/repo", .keys = {"/etc/strata/keys.d"}, .insecure = false};
    const auto c = config::parse(config::render_remote("vendor", remote), "F");
    CHECK(c.remotes.at("vendor").url == remote.url);
    CHECK(c.remotes.at("vendor").keys == remote.keys);
    CHECK_THROWS_AS(config::render_remote("../x", remote), Error);
    // A dotted name stays one key; quotes, backslashes, control characters and UTF-8 in values survive.
    const config::RemoteSettings odd{.url = "https://h.example/a\"b\\c", .keys = {"/k/t\tab\x01/\"q\".pub", "/k/\xc3\xa9t\xc3\xa9"}, .insecure = true};
    const auto text = config::render_remote("org.example.os", odd);
    CHECK(text.find("[remote.\"org.example.os\"]\n") != std::string::npos);
    const auto back = config::parse(text, "F");
    REQUIRE(back.remotes.count("org.example.os") == 1);
    CHECK(back.remotes.at("org.example.os").url == odd.url);
    CHECK(back.remotes.at("org.example.os").keys == odd.keys);
    CHECK(back.remotes.at("org.example.os").insecure);
    CHECK(config::remote_dropin("/etc/strata/strata.toml.d", "vendor") == "/etc/strata/strata.toml.d/remote-vendor.toml");
}
