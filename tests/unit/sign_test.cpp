// The sign module: minisign formats and interop with the real minisign, SHA-256, trust store and
// key announcements. Every test case name says "sign" so `ctest -R sign` selects them all.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/process.hpp"
#include "sign/minisign.hpp"
#include "sign/sha256.hpp"
#include "sign/trust.hpp"
#include "support/errors.hpp"

using namespace strata;
using strata::test::error_of;

namespace {

// A private directory for key and message files, removed with everything in it.
class ScratchDir {
public:
    ScratchDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "strata-test-sign-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path_ = tmpl;
    }
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
    const std::filesystem::path& path() const { return path_; }
    Dir dir() const { return Dir::open(path_); }
    void write(const std::string& name, std::string_view content) const { write_file_atomic(dir(), name, content); }
    std::string read(const std::string& name) const { return read_file(dir(), name); }

private:
    std::filesystem::path path_;
};

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    size_t start = 0;
    for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
        lines.push_back(text.substr(start, nl - start));
    if (start < text.size()) lines.push_back(text.substr(start));
    return lines;
}

std::string join_lines(const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& l : lines) text += l + "\n";
    return text;
}

std::vector<uint8_t> b64_decode(const std::string& text) {
    std::vector<uint8_t> out(text.size());
    size_t size = 0;
    REQUIRE(sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &size, nullptr,
                              sodium_base64_VARIANT_ORIGINAL) == 0);
    out.resize(size);
    return out;
}

std::string b64_encode(const std::vector<uint8_t>& bin) {
    std::string out(sodium_base64_encoded_len(bin.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
    sodium_bin2base64(out.data(), out.size(), bin.data(), bin.size(), sodium_base64_VARIANT_ORIGINAL);
    out.resize(out.size() - 1);
    return out;
}

// Replaces line `index` of a file with f(decoded bytes), re-encoded.
std::string edit_blob(const std::string& text, size_t index, auto&& f) {
    auto lines = lines_of(text);
    REQUIRE(index < lines.size());
    auto bytes = b64_decode(lines[index]);
    f(bytes);
    lines[index] = b64_encode(bytes);
    return join_lines(lines);
}

ProcessResult minisign(std::vector<std::string> args) {
    args.insert(args.begin(), "minisign");
    return run_process(args);
}

sign::PublicKey single(const sign::TrustStore& store, size_t i = 0) {
    REQUIRE(store.trusted.size() > i);
    return store.trusted[i];
}

}  // namespace

TEST_CASE("sign and verify round trip with the trusted comment") {
    const auto pair = sign::generate_key_pair();
    CHECK(pair.public_key.id == pair.secret_key.id);
    CHECK(sign::public_key_of(pair.secret_key) == pair.public_key);
    const std::string message("index contents\n\0binary too", 26);
    const auto sig = sign::sign(pair.secret_key, message, "strata-index serial=7", "from the test");

    const auto lines = lines_of(sig);
    REQUIRE(lines.size() == 4);
    CHECK(lines[0] == "untrusted comment: from the test");
    CHECK(lines[1].starts_with("RU"));  // base64 of "ED": prehashed
    CHECK(b64_decode(lines[1]).size() == 74);
    CHECK(lines[2] == "trusted comment: strata-index serial=7");
    CHECK(b64_decode(lines[3]).size() == 64);
    CHECK(sig.ends_with("\n"));

    const std::vector<sign::PublicKey> trusted{sign::generate_key_pair().public_key, pair.public_key};
    const auto v = sign::verify(trusted, message, sig);
    CHECK(v.key == pair.public_key);
    CHECK(v.trusted_comment == "strata-index serial=7");
    CHECK(sign::signature_key_id(sig) == pair.public_key.id);

    // An empty message and an empty trusted comment are fine; CRLF line ends too.
    const auto empty = sign::sign(pair.secret_key, "", "");
    CHECK(sign::verify(trusted, "", empty).trusted_comment.empty());
    std::string crlf;
    for (const auto& l : lines_of(sig)) crlf += l + "\r\n";
    CHECK(sign::verify(trusted, message, crlf).trusted_comment == "strata-index serial=7");
}

TEST_CASE("sign key ids print as minisign prints them") {
    CHECK(sign::format_key_id({0x55, 0x20, 0xbe, 0xd8, 0x24, 0xa1, 0x08, 0xee}) == "EE08A124D8BE2055");
    CHECK(sign::format_key_id({1, 0, 0, 0, 0, 0, 0, 0}) == "0000000000000001");
}

TEST_CASE("signature verification refuses tampering with a clear reason") {
    const auto pair = sign::generate_key_pair();
    const std::vector<sign::PublicKey> trusted{pair.public_key};
    const std::string message = "the signed index";
    const auto sig = sign::sign(pair.secret_key, message, "serial=1");
    const auto verify = [&](std::string_view m, const std::string& s) { return error_of([&] { sign::verify(trusted, m, s); }); };

    SUBCASE("a changed message") { CHECK(verify("the signed indeX", sig) == "verify signature: bad signature"); }
    SUBCASE("a changed trusted comment") {
        auto lines = lines_of(sig);
        lines[2] = "trusted comment: serial=9";
        CHECK(verify(message, join_lines(lines)) == "verify signature: bad signature of the trusted comment");
    }
    SUBCASE("changed signature bytes") {
        const auto bad = edit_blob(sig, 1, [](auto& b) { b[40] ^= 1; });
        CHECK(verify(message, bad) == "verify signature: bad signature");
        const auto bad_global = edit_blob(sig, 3, [](auto& b) { b[0] ^= 1; });
        CHECK(verify(message, bad_global) == "verify signature: bad signature of the trusted comment");
    }
    SUBCASE("the untrusted comment may change") {
        auto lines = lines_of(sig);
        lines[0] = "untrusted comment: anything";
        CHECK(verify(message, join_lines(lines)).empty());
    }
    SUBCASE("a wrong key with the same id") {
        auto other = sign::generate_key_pair().public_key;
        other.id = pair.public_key.id;
        const std::vector<sign::PublicKey> wrong{other};
        CHECK(error_of([&] { sign::verify(wrong, message, sig); }) == "verify signature: bad signature");
    }
    SUBCASE("an unknown key id") {
        const std::vector<sign::PublicKey> others{sign::generate_key_pair().public_key};
        CHECK(error_of([&] { sign::verify(others, message, sig); }) ==
              "verify signature: signed by unknown key " + sign::format_key_id(pair.public_key.id));
        CHECK(error_of([&] { sign::verify(std::span<const sign::PublicKey>{}, message, sig); }).starts_with("verify signature: signed by unknown key "));
    }
    SUBCASE("the fault is invalid input") {
        try {
            sign::verify(trusted, "other", sig);
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.fault() == Fault::InvalidInput);
        }
    }
}

TEST_CASE("malformed signature files are refused naming what is wrong") {
    const auto pair = sign::generate_key_pair();
    const std::vector<sign::PublicKey> trusted{pair.public_key};
    const auto sig = sign::sign(pair.secret_key, "m", "c");
    const auto lines = lines_of(sig);
    const auto verify = [&](const std::string& s) { return error_of([&] { sign::verify(trusted, "m", s); }); };
    const std::string prefix = "verify signature: malformed signature file: ";

    CHECK(verify("") == prefix + "empty");
    CHECK(verify("hello\n" + lines[1] + "\n") == prefix + "the first line does not start with 'untrusted comment: '");
    CHECK(verify(lines[0] + "\n") == prefix + "no signature line");
    CHECK(verify(join_lines({lines[0], "not*base64", lines[2], lines[3]})) == prefix + "the signature is not valid base64");
    CHECK(verify(join_lines({lines[0], lines[1].substr(0, 22), lines[2], lines[3]})) ==
          prefix + "the signature is not valid base64");  // unpadded
    CHECK(verify(join_lines({lines[0], lines[3], lines[2], lines[3]})) == prefix + "the signature has 64 bytes, 74 expected");
    CHECK(verify(join_lines({lines[0], lines[1]})) == prefix + "no trusted comment line");
    CHECK(verify(join_lines({lines[0], lines[1], "trusted: c", lines[3]})) ==
          prefix + "the third line does not start with 'trusted comment: '");
    CHECK(verify(join_lines({lines[0], lines[1], lines[2]})) == prefix + "no global signature line");
    CHECK(verify(join_lines({lines[0], lines[1], lines[2], lines[1]})) ==
          prefix + "the global signature has 74 bytes, 64 expected");
    CHECK(verify(join_lines({lines[0], lines[1], lines[2], lines[3], "extra"})) ==
          prefix + "unexpected text after the global signature");
    CHECK(verify(sig + "\n\n").empty());  // trailing blank lines are harmless

    const auto legacy = edit_blob(sig, 1, [](auto& b) { b[1] = 'd'; });
    CHECK(verify(legacy) ==
          "verify signature: unsupported signature algorithm 'Ed' (legacy, not prehashed; sign without 'minisign -l')");
    const auto unknown = edit_blob(sig, 1, [](auto& b) { b[0] = 0x1b; });
    CHECK(verify(unknown) == "verify signature: unsupported signature algorithm '\\x1bD' (minisign signatures use 'ED')");
    CHECK(error_of([&] { sign::signature_key_id("junk"); }) ==
          "read signature: malformed signature file: the first line does not start with 'untrusted comment: '");
}

TEST_CASE("sign refuses comments minisign could not read back") {
    const auto pair = sign::generate_key_pair();
    CHECK(error_of([&] { sign::sign(pair.secret_key, "m", "two\nlines"); }) ==
          "sign: the trusted comment must be one line without NUL bytes");
    CHECK(error_of([&] { sign::sign(pair.secret_key, "m", "ok", "cr\r"); }) ==
          "sign: the untrusted comment must be one line without NUL bytes");
    CHECK(error_of([&] { sign::sign(pair.secret_key, "m", std::string("nul\0", 4)); }) ==
          "sign: the trusted comment must be one line without NUL bytes");
    CHECK(error_of([&] { sign::sign(pair.secret_key, "m", std::string(8174, 'x')); }) ==
          "sign: the trusted comment has 8174 bytes, at most 8173 fit minisign's line buffer");
    CHECK(error_of([&] { sign::sign(pair.secret_key, "m", std::string(8173, 'x')); }).empty());
    CHECK(error_of([&] { sign::public_key_file(pair.public_key, "a\nb"); }) ==
          "write public key: the comment must be one line without NUL bytes");
}

TEST_CASE("sign public key files parse in both spellings and refuse malformed ones") {
    const auto pair = sign::generate_key_pair();
    const auto file = sign::public_key_file(pair.public_key, "my key");
    const auto line = sign::public_key_base64(pair.public_key);
    CHECK(file == "untrusted comment: my key\n" + line + "\n");
    CHECK(line.starts_with("RW"));  // base64 of "Ed"
    CHECK(line.size() == 56);
    CHECK(sign::parse_public_key(file) == pair.public_key);
    CHECK(sign::parse_public_key(line) == pair.public_key);
    CHECK(sign::parse_public_key(line + "\n") == pair.public_key);

    const auto parse = [](const std::string& t) { return error_of([&] { sign::parse_public_key(t); }); };
    CHECK(parse("") == "parse public key: no key in the text");
    CHECK(parse("untrusted comment: x\n") == "parse public key: no key line after the comment");
    CHECK(parse(file + "more\n") == "parse public key: unexpected text after the key line");
    CHECK(parse("RW!!") == "parse public key: the key is not valid base64");
    CHECK(parse(line.substr(0, 52)) == "parse public key: the key has 39 bytes, 42 expected");
    CHECK(parse(edit_blob(line, 0, [](auto& b) { b[1] = 'D'; })) ==
          "parse public key: unsupported signature algorithm 'ED' (minisign keys use 'Ed')");
}

TEST_CASE("sign secret key files round trip and refuse encrypted or corrupt keys") {
    const auto pair = sign::generate_key_pair();
    const auto file = sign::secret_key_file(pair.secret_key, "secret");
    CHECK(file.starts_with("untrusted comment: secret\n"));
    const auto parsed = sign::parse_secret_key(file);
    CHECK(parsed.id == pair.secret_key.id);
    CHECK(parsed.key == pair.secret_key.key);

    const auto parse = [](const std::string& t) { return error_of([&] { sign::parse_secret_key(t); }); };
    CHECK(parse(edit_blob(file, 1, [](auto& b) { b[2] = 'S';
        b[3] = 'c'; })) ==
          "parse secret key: the key is encrypted with a password, which strata cannot ask for; use an unencrypted key "
          "(made by 'strata keygen' or 'minisign -G -W', or decrypted with 'minisign -C -W -s KEY')");
    CHECK(parse(edit_blob(file, 1, [](auto& b) { b[2] = 'X'; })) ==
          "parse secret key: unsupported key derivation function 'X\\x00'");
    CHECK(parse(edit_blob(file, 1, [](auto& b) { b[4] = 'S'; })) ==
          "parse secret key: unsupported checksum algorithm 'S2' (minisign keys use 'B2')");
    CHECK(parse(edit_blob(file, 1, [](auto& b) { b[0] = 'X'; })) ==
          "parse secret key: unsupported signature algorithm 'Xd' (minisign keys use 'Ed')");
    CHECK(parse(edit_blob(file, 1, [](auto& b) { b[70] ^= 1; })) == "parse secret key: the key is corrupt: its checksum does not match");
    // Without a checksum (as minisign -G -W writes it) the halves are still checked.
    const auto no_checksum = edit_blob(file, 1, [](auto& b) { std::fill(b.end() - 32, b.end(), 0); });
    CHECK(parse(no_checksum).empty());
    CHECK(parse(edit_blob(no_checksum, 1, [](auto& b) { b[100] ^= 1; })) ==
          "parse secret key: the key is corrupt: its public half does not match its seed");
    CHECK(parse(sign::public_key_file(pair.public_key, "x")) == "parse secret key: the key has 42 bytes, 158 expected");
}

TEST_CASE("sign write_key_files sets modes and never overwrites without replace") {
    ScratchDir scratch;
    const auto dir = scratch.dir();
    const auto old_umask = ::umask(077);  // the modes must not depend on the umask
    const auto pair = sign::generate_key_pair();
    const auto files = sign::write_key_files(dir, "vendor", pair, "", false);
    ::umask(old_umask);
    CHECK(files.public_key == scratch / "vendor.pub");
    CHECK(files.secret_key == scratch / "vendor.key");
    CHECK((dir.stat("vendor.pub")->st_mode & 07777) == 0644);
    CHECK((dir.stat("vendor.key")->st_mode & 07777) == 0600);
    const auto id = sign::format_key_id(pair.public_key.id);
    CHECK(scratch.read("vendor.pub") == "untrusted comment: strata public key " + id + "\n" +
                                            sign::public_key_base64(pair.public_key) + "\n");
    CHECK(sign::parse_secret_key(scratch.read("vendor.key")).key == pair.secret_key.key);

    const auto other = sign::generate_key_pair();
    try {
        sign::write_key_files(dir, "vendor", other, "", false);
        FAIL("overwrote a key");
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::Exists);
        CHECK(std::string(e.what()) == "write key '" + (scratch / "vendor.key").string() + "': exists already");
    }
    // Only the .pub there: still refused, and no .key is left behind.
    dir.unlink("vendor.key");
    CHECK(error_of([&] { sign::write_key_files(dir, "vendor", other, "", false); }) ==
          "write key '" + (scratch / "vendor.pub").string() + "': exists already");
    CHECK(!dir.stat("vendor.key"));
    sign::write_key_files(dir, "vendor", other, "rotated", true);
    CHECK(sign::parse_public_key(scratch.read("vendor.pub")) == other.public_key);
    CHECK(scratch.read("vendor.pub").starts_with("untrusted comment: rotated\n"));
    CHECK(dir.entries().size() == 2);  // no temporary files left
}

TEST_CASE("minisign verifies what strata signs with a strata key") {
    ScratchDir scratch;
    const auto pair = sign::generate_key_pair();
    sign::write_key_files(scratch.dir(), "k", pair, "", false);
    const std::string message = "published index\n";
    scratch.write("msg", message);
    scratch.write("msg.minisig", sign::sign(pair.secret_key, message, "strata-index serial=3"));
    const auto r = minisign({"-V", "-p", (scratch / "k.pub").string(), "-m", (scratch / "msg").string()});
    CHECK_MESSAGE(r.exit_status == 0, r.err);
    CHECK(r.out.find("Trusted comment: strata-index serial=3") != std::string::npos);
    // -H: minisign insists on the prehashed kind, which strata always makes.
    CHECK(minisign({"-V", "-H", "-P", sign::public_key_base64(pair.public_key), "-m", (scratch / "msg").string()})
              .exit_status == 0);
    // And minisign refuses it for a changed message, as strata does.
    scratch.write("msg", "published index, changed\n");
    CHECK(minisign({"-V", "-p", (scratch / "k.pub").string(), "-m", (scratch / "msg").string()}).exit_status != 0);
}

TEST_CASE("minisign signs with a strata secret key file and strata verifies it") {
    ScratchDir scratch;
    const auto pair = sign::generate_key_pair();
    sign::write_key_files(scratch.dir(), "k", pair, "", false);
    scratch.write("msg", "payload");
    const auto r = minisign({"-S", "-s", (scratch / "k.key").string(), "-m", (scratch / "msg").string(), "-t", "from minisign"});
    REQUIRE_MESSAGE(r.exit_status == 0, r.err);
    const std::vector<sign::PublicKey> trusted{pair.public_key};
    CHECK(sign::verify(trusted, "payload", scratch.read("msg.minisig")).trusted_comment == "from minisign");
}

TEST_CASE("strata verifies minisign signatures and signs with minisign secret keys") {
    ScratchDir scratch;
    const auto pub_path = (scratch / "m.pub").string(), key_path = (scratch / "m.key").string();
    const auto g = minisign({"-G", "-W", "-p", pub_path, "-s", key_path});
    REQUIRE_MESSAGE(g.exit_status == 0, g.err);
    const auto pub = sign::parse_public_key(scratch.read("m.pub"));
    const std::vector<sign::PublicKey> trusted{pub};
    // Same id as minisign names it (0.11 drops leading zeros there, newer versions pad to 16).
    const auto comment = lines_of(scratch.read("m.pub")).at(0);
    const std::string label = "untrusted comment: minisign public key ";
    REQUIRE(comment.starts_with(label));
    CHECK(std::stoull(comment.substr(label.size()), nullptr, 16) == std::stoull(sign::format_key_id(pub.id), nullptr, 16));

    scratch.write("msg", std::string(100000, 'x') + "tail");
    const auto s = minisign({"-S", "-s", key_path, "-m", (scratch / "msg").string(), "-t", "signed by minisign\twith a tab"});
    REQUIRE_MESSAGE(s.exit_status == 0, s.err);
    const auto v = sign::verify(trusted, scratch.read("msg"), scratch.read("msg.minisig"));
    CHECK(v.key == pub);
    CHECK(v.trusted_comment == "signed by minisign\twith a tab");
    CHECK(error_of([&] { sign::verify(trusted, "other", scratch.read("msg.minisig")); }) == "verify signature: bad signature");

    // The default trusted comment (timestamp and file name) is returned as is.
    const auto d = minisign({"-S", "-s", key_path, "-m", (scratch / "msg").string()});
    REQUIRE_MESSAGE(d.exit_status == 0, d.err);
    CHECK(sign::verify(trusted, scratch.read("msg"), scratch.read("msg.minisig")).trusted_comment.starts_with("timestamp:"));

    // Legacy signatures (-l) are refused with the reason.
    const auto l = minisign({"-S", "-l", "-s", key_path, "-m", (scratch / "msg").string()});
    REQUIRE_MESSAGE(l.exit_status == 0, l.err);
    CHECK(error_of([&] { sign::verify(trusted, scratch.read("msg"), scratch.read("msg.minisig")); }) ==
          "verify signature: unsupported signature algorithm 'Ed' (legacy, not prehashed; sign without 'minisign -l')");

    // minisign's unencrypted secret key (no checksum) signs for strata, and minisign agrees.
    const auto secret = sign::parse_secret_key(scratch.read("m.key"));
    CHECK(secret.id == pub.id);
    CHECK(sign::public_key_of(secret) == pub);
    scratch.write("doc", "signed by strata with a minisign key");
    scratch.write("doc.minisig", sign::sign(secret, "signed by strata with a minisign key", "strata"));
    const auto r = minisign({"-V", "-p", pub_path, "-m", (scratch / "doc").string()});
    CHECK_MESSAGE(r.exit_status == 0, r.err);
    CHECK(r.out.find("Trusted comment: strata") != std::string::npos);
}

TEST_CASE("sign sha256 matches known vectors and sha256sum") {
    CHECK(sign::Sha256().hex_digest() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sign::Sha256 abc;
    abc.update("abc");
    CHECK(abc.hex_digest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sign::Sha256 pieces;
    pieces.update("a");
    pieces.update("");
    pieces.update("bc");
    CHECK(pieces.hex_digest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    ScratchDir scratch;
    std::string data;
    for (int i = 0; i < 300000; ++i) data += static_cast<char>(i * 7 % 251);  // > one read buffer
    scratch.write("data", data);
    const auto r = run_process({"sha256sum", (scratch / "data").string()});
    REQUIRE(r.exit_status == 0);
    const Fd fd = scratch.dir().open_file("data", O_RDONLY);
    CHECK(sign::sha256_of_fd(fd.get(), "data") == r.out.substr(0, 64));
    // From the current offset on, as documented.
    const Fd tail = scratch.dir().open_file("data", O_RDONLY);
    REQUIRE(::lseek(tail.get(), 3, SEEK_SET) == 3);
    sign::Sha256 expected;
    expected.update(std::string_view(data).substr(3));
    CHECK(sign::sha256_of_fd(tail.get(), "data") == expected.hex_digest());
    CHECK(error_of([] { sign::sha256_of_fd(-1, "nowhere"); }) == "read 'nowhere': Bad file descriptor");
}

TEST_CASE("sign trust store reads key directories and honours revoked keys") {
    ScratchDir scratch;
    const auto vendor = sign::generate_key_pair(), site = sign::generate_key_pair(), old = sign::generate_key_pair();
    const auto root = scratch.dir();
    const auto vendor_dir = root.make_dir("vendor"), site_dir = root.make_dir("site");
    write_file_atomic(vendor_dir, "vendor.pub", sign::public_key_file(vendor.public_key, "vendor"));
    write_file_atomic(vendor_dir, "old.pub", sign::public_key_file(old.public_key, "old"));
    write_file_atomic(vendor_dir, "README", "not a key");
    write_file_atomic(vendor_dir, ".#vendor.pub.123", "editor leftover");
    write_file_atomic(site_dir, "site.pub", sign::public_key_base64(site.public_key) + "\n");
    write_file_atomic(site_dir, "vendor-copy.pub", sign::public_key_file(vendor.public_key, "dup"));
    // The site revokes the vendor's old key: it is not trusted although the vendor lists it.
    write_file_atomic(site_dir.make_dir("revoked"), "old.pub", sign::public_key_file(old.public_key, "leaked"));

    const auto store = sign::load_trust_store({scratch / "vendor", scratch / "missing", scratch / "site"});
    REQUIRE(store.trusted.size() == 2);  // the duplicate counts once
    CHECK(single(store, 0) == vendor.public_key);
    CHECK(single(store, 1) == site.public_key);
    REQUIRE(store.revoked.size() == 1);
    CHECK(store.is_revoked(old.public_key));
    CHECK(!store.is_revoked(vendor.public_key));
    auto renamed = old.public_key;  // revocation follows the key, not the id its holder chose
    renamed.id[0] ^= 1;
    CHECK(store.is_revoked(renamed));

    CHECK(sign::verify(store, "m", sign::sign(site.secret_key, "m", "ok")).key == site.public_key);
    CHECK(error_of([&] { sign::verify(store, "m", sign::sign(old.secret_key, "m", "x")); }) ==
          "verify signature: signed by revoked key " + sign::format_key_id(old.public_key.id));
    CHECK(error_of([&] { sign::verify(store, "m", "junk"); }) ==
          "verify signature: malformed signature file: the first line does not start with 'untrusted comment: '");
    CHECK(sign::load_trust_store({}).trusted.empty());
    CHECK(sign::default_key_dirs() ==
          std::vector<std::filesystem::path>{"/usr/lib/strata/keys.d", "/etc/strata/keys.d"});
}

TEST_CASE("sign trust store refuses malformed key files naming them") {
    ScratchDir scratch;
    const auto keys = scratch.dir().make_dir("keys");
    write_file_atomic(keys, "a.pub", sign::public_key_file(sign::generate_key_pair().public_key, "good"));

    SUBCASE("bad base64") {
        write_file_atomic(keys, "b.pub", "untrusted comment: x\nnot a key\n");
        CHECK(error_of([&] { sign::load_trust_store({scratch / "keys"}); }) ==
              "read trusted key '" + (scratch / "keys/b.pub").string() + "': parse public key: the key is not valid base64");
    }
    SUBCASE("in revoked") {
        write_file_atomic(keys.make_dir("revoked"), "r.pub", "");
        CHECK(error_of([&] { sign::load_trust_store({scratch / "keys"}); }) ==
              "read revoked key '" + (scratch / "keys/revoked/r.pub").string() + "': parse public key: no key in the text");
    }
    SUBCASE("not a regular file") {
        keys.make_dir("d.pub");
        CHECK(error_of([&] { sign::load_trust_store({scratch / "keys"}); }) ==
              "read trusted key '" + (scratch / "keys/d.pub").string() + "': not a regular file");
    }
    SUBCASE("too large") {
        write_file_atomic(keys, "big.pub", std::string(70000, 'A'));
        CHECK(error_of([&] { sign::load_trust_store({scratch / "keys"}); }) ==
              "read trusted key '" + (scratch / "keys/big.pub").string() + "': larger than 65536 bytes, not a key file");
    }
    SUBCASE("a symlink to a key is followed") {
        REQUIRE(::symlink((scratch / "keys/a.pub").c_str(), (scratch / "keys/link.pub").c_str()) == 0);
        CHECK(sign::load_trust_store({scratch / "keys"}).trusted.size() == 1);
    }
    SUBCASE("a file where a directory should be") {
        scratch.write("file", "x");
        CHECK(error_of([&] { sign::load_trust_store({scratch / "file"}); }) ==
              "open directory '" + (scratch / "file").string() + "': Not a directory");
    }
}

TEST_CASE("sign key announcements are accepted only from trusted unrevoked keys") {
    const auto current = sign::generate_key_pair(), next = sign::generate_key_pair(), stranger = sign::generate_key_pair(),
               leaked = sign::generate_key_pair();
    sign::TrustStore store;
    store.trusted = {current.public_key};
    store.revoked = {leaked.public_key};
    const auto line = sign::public_key_base64(next.public_key);
    const auto next_id = sign::format_key_id(next.public_key.id);

    CHECK(sign::accept_announced_key(store, line, sign::sign(current.secret_key, line, "new key")) == next.public_key);
    CHECK(error_of([&] { sign::accept_announced_key(store, line, sign::sign(stranger.secret_key, line, "x")); }) ==
          "accept announced key '" + next_id + "': verify signature: signed by unknown key " +
              sign::format_key_id(stranger.public_key.id));
    CHECK(error_of([&] { sign::accept_announced_key(store, line, sign::sign(leaked.secret_key, line, "x")); }) ==
          "accept announced key '" + next_id + "': verify signature: signed by revoked key " +
              sign::format_key_id(leaked.public_key.id));
    // A revoked key is not brought back by announcing it.
    const auto leaked_line = sign::public_key_base64(leaked.public_key);
    CHECK(error_of([&] { sign::accept_announced_key(store, leaked_line, sign::sign(current.secret_key, leaked_line, "x")); }) ==
          "accept announced key '" + sign::format_key_id(leaked.public_key.id) + "': the announced key is revoked");
    // The signature covers the line: another key cannot ride on it.
    const auto other_line = sign::public_key_base64(stranger.public_key);
    CHECK(error_of([&] { sign::accept_announced_key(store, other_line, sign::sign(current.secret_key, line, "x")); }) ==
          "accept announced key '" + sign::format_key_id(stranger.public_key.id) + "': verify signature: bad signature");
    CHECK(error_of([&] { sign::accept_announced_key(store, "garbage", sign::sign(current.secret_key, "garbage", "x")); }) ==
          "accept announced key: parse public key: the key is not valid base64");
}
