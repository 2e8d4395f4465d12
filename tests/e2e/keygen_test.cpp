// strata keygen as users run it: files, modes, refusals, and keys the packaged minisign accepts.
// Needs neither root nor a pool.
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "e2e/e2e.hpp"

using namespace strata;

namespace {

std::string slurp(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

mode_t mode_of(const std::filesystem::path& path) {
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("keygen writes a minisign key pair with the right modes") {
    test::TempDir tmp;
    const auto prefix = (tmp.path() / "vendor").string();
    const auto r = test::run_strata({"keygen", "-o", prefix});
    REQUIRE_MESSAGE(r.exit_status == 0, r.err);
    CHECK(r.err.empty());
    CHECK(mode_of(prefix + ".pub") == 0644);
    CHECK(mode_of(prefix + ".key") == 0600);

    const auto pub = slurp(prefix + ".pub");
    const auto key = slurp(prefix + ".key");
    REQUIRE(pub.starts_with("untrusted comment: strata public key "));
    const auto id = pub.substr(std::string("untrusted comment: strata public key ").size(), 16);
    CHECK(r.out.find("    Key ID: " + id + "\n") != std::string::npos);
    CHECK(r.out.find("Public key: " + prefix + ".pub\n") != std::string::npos);
    CHECK(r.out.find("Secret key: " + prefix + ".key") != std::string::npos);
    CHECK(key.starts_with("untrusted comment: strata secret key " + id + "\n"));
    // Nothing else is left in the directory (no temporary files).
    CHECK(std::distance(std::filesystem::directory_iterator(tmp.path()), std::filesystem::directory_iterator()) == 2);

    // minisign reads both files: it signs with the unencrypted .key without asking for a password
    // and verifies with the .pub, and the id it reports is the one strata printed.
    std::ofstream(tmp.path() / "msg") << "repository index\n";
    const auto s = run_process({"minisign", "-S", "-s", prefix + ".key", "-m", (tmp.path() / "msg").string(), "-t", "serial=1"});
    REQUIRE_MESSAGE(s.exit_status == 0, s.err);
    const auto v = run_process({"minisign", "-V", "-p", prefix + ".pub", "-m", (tmp.path() / "msg").string()});
    CHECK_MESSAGE(v.exit_status == 0, v.err);
    CHECK(v.out.find("Trusted comment: serial=1") != std::string::npos);
    std::ofstream(tmp.path() / "msg") << "changed\n";
    CHECK(run_process({"minisign", "-V", "-p", prefix + ".pub", "-m", (tmp.path() / "msg").string()}).exit_status != 0);
}

TEST_CASE("keygen refuses to overwrite a key pair unless forced") {
    test::TempDir tmp;
    const auto prefix = (tmp.path() / "k").string();
    REQUIRE(test::run_strata({"keygen", "-o", prefix, "--comment", "release key"}).exit_status == 0);
    const auto pub = slurp(prefix + ".pub"), key = slurp(prefix + ".key");
    CHECK(pub.starts_with("untrusted comment: release key\n"));

    test::check_one_line_error(test::run_strata({"keygen", "-o", prefix}), 4,
                               "write key '" + prefix + ".key': exists already (--force replaces the key pair)");
    CHECK(slurp(prefix + ".pub") == pub);
    CHECK(slurp(prefix + ".key") == key);

    // Either file alone blocks it, and a refused keygen leaves no half pair behind.
    std::filesystem::remove(prefix + ".key");
    test::check_one_line_error(test::run_strata({"keygen", "-o", prefix}), 4,
                               "write key '" + prefix + ".pub': exists already (--force replaces the key pair)");
    CHECK(!std::filesystem::exists(prefix + ".key"));

    const auto forced = test::run_strata({"-q", "keygen", "-o", prefix, "--force"});
    REQUIRE_MESSAGE(forced.exit_status == 0, forced.err);
    CHECK(forced.out.empty());  // -q
    CHECK(slurp(prefix + ".pub") != pub);
    CHECK(mode_of(prefix + ".key") == 0600);
}

TEST_CASE("keygen reports bad prefixes with one line") {
    test::TempDir tmp;
    test::check_one_line_error(test::run_strata({"keygen", "-o", (tmp.path() / "missing/k").string()}), 3,
                               "open directory '" + (tmp.path() / "missing").string() + "': No such file or directory");
    test::check_one_line_error(test::run_strata({"keygen", "-o", tmp.path().string() + "/"}), 2,
                               "keygen '" + tmp.path().string() + "/': the prefix must end in a file name");
    test::check_one_line_error(test::run_strata({"keygen", "-o", (tmp.path() / "k").string(), "--comment", "two\nlines"}), 2,
                               "write secret key: the comment must be one line without NUL bytes");
    CHECK(!std::filesystem::exists(tmp.path() / "k.key"));
    CHECK(test::run_strata({"keygen"}).exit_status == 2);  // -o is required
}
