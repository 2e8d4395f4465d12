// minisign's formats with libsodium. Every binary blob is base64 (standard alphabet, padded)
// on a line of its own; integers are little-endian. From minisign's src/minisign.h:
//   public key   "Ed" keyid[8] pk[32]                                                    42 bytes
//   signature    "ED" keyid[8] Ed25519(BLAKE2b-512(message))[64]                        74 bytes
//   global sig   Ed25519(signature[64] || trusted comment bytes)                        64 bytes
//   secret key   "Ed" kdf[2] "B2" salt[32] opslimit[8] memlimit[8]
//                keyid[8] sk[64] checksum[32]                                          158 bytes
// kdf is "Sc" (scrypt-encrypted keyid||sk||checksum) or "\0\0" (unencrypted, `minisign -W`);
// checksum = BLAKE2b-256("Ed" || keyid || sk). minisign -G -W leaves salt, limits and checksum
// zero, and minisign never checks the checksum of an unencrypted key.
#include "sign/minisign.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "base/error.hpp"
#include "base/escape.hpp"

namespace strata::sign {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr std::string_view untrusted_prefix = "untrusted comment: ";
constexpr std::string_view trusted_prefix = "trusted comment: ";
constexpr std::string_view sig_alg = "Ed";         // keys, and legacy (not prehashed) signatures
constexpr std::string_view sig_alg_hashed = "ED";  // signatures over BLAKE2b-512 of the message
constexpr std::string_view kdf_scrypt = "Sc";
constexpr std::string_view kdf_none{"\0\0", 2};
constexpr std::string_view checksum_alg = "B2";

constexpr size_t public_key_size = 2 + 8 + 32;
constexpr size_t signature_size = 2 + 8 + 64;
constexpr size_t global_signature_size = 64;
constexpr size_t secret_key_size = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32;
constexpr size_t checksum_size = 32;

// minisign reads comment lines with fgets into COMMENTMAXBYTES (1024) and
// TRUSTEDCOMMENTMAXBYTES (8192) buffers; a longer line would be split and the file misread. The
// line (prefix, comment, newline) must fit with the terminating NUL.
constexpr size_t max_untrusted_comment = 1024 - untrusted_prefix.size() - 2;
constexpr size_t max_trusted_comment = 8192 - trusted_prefix.size() - 2;

void init_sodium() {
    // sodium_init is idempotent and thread-safe; the static runs it once per process.
    static const int result = sodium_init();
    if (result < 0) throw Error("initialize libsodium", "", "sodium_init failed");
}

// Key material leaves no copies behind in freed memory.
struct WipedBytes {
    Bytes bytes;
    WipedBytes() = default;
    explicit WipedBytes(size_t n) : bytes(n) {}
    WipedBytes(const WipedBytes&) = delete;
    WipedBytes& operator=(const WipedBytes&) = delete;
    ~WipedBytes() {
        if (!bytes.empty()) sodium_memzero(bytes.data(), bytes.size());
    }
};

Error invalid(std::string_view operation, std::string reason) {
    return Error(operation, "", reason, Fault::InvalidInput);
}

std::string to_base64(std::span<const uint8_t> bin) {
    std::string out(sodium_base64_encoded_len(bin.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
    sodium_bin2base64(out.data(), out.size(), bin.data(), bin.size(), sodium_base64_VARIANT_ORIGINAL);
    out.resize(std::strlen(out.c_str()));  // the encoded length counts the terminating NUL
    return out;
}

// The bytes of a base64 line, or nullopt when it is not strict padded base64 (as minisign
// decodes it: sodium_base642bin, original variant, nothing ignored).
std::optional<Bytes> from_base64(std::string_view text) {
    Bytes out(text.size() / 4 * 3 + 3);
    size_t size = 0;
    if (text.empty() || sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &size, nullptr,
                                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return std::nullopt;
    out.resize(size);
    return out;
}

// Decodes one blob of a known size; the reason names `what`.
void decode_exact(std::string_view operation, std::string_view what, std::string_view text, WipedBytes& out,
                  size_t expected) {
    auto decoded = from_base64(text);
    if (!decoded) throw invalid(operation, std::string(what) + " is not valid base64");
    out.bytes = std::move(*decoded);
    if (out.bytes.size() != expected)
        throw invalid(operation, std::string(what) + " has " + std::to_string(out.bytes.size()) + " bytes, " +
                                     std::to_string(expected) + " expected");
}

std::string_view field(const Bytes& b, size_t offset, size_t size) {
    return {reinterpret_cast<const char*>(b.data()) + offset, size};
}

// An algorithm tag as text for a message, escaped since it comes from the input.
std::string quote_tag(std::string_view tag) { return "'" + escape(tag) + "'"; }

// Lines of a text file: split at LF, a CR before it dropped (files edited on Windows), the empty
// piece after a final newline and trailing blank lines left out.
std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    while (!text.empty()) {
        const size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        if (line.ends_with('\r')) line.remove_suffix(1);
        lines.push_back(line);
        if (nl == std::string_view::npos) break;
        text.remove_prefix(nl + 1);
    }
    while (!lines.empty() && lines.back().empty()) lines.pop_back();
    return lines;
}

// The base64 line of a key file: after an optional "untrusted comment:" line, the only other line.
std::string_view key_line(std::string_view operation, std::string_view text) {
    const auto lines = split_lines(text);
    if (lines.empty()) throw invalid(operation, "no key in the text");
    size_t i = lines[0].starts_with("untrusted comment:") ? 1 : 0;
    if (i >= lines.size()) throw invalid(operation, "no key line after the comment");
    if (lines.size() > i + 1) throw invalid(operation, "unexpected text after the key line");
    return lines[i];
}

void check_comment(std::string_view operation, std::string_view what, std::string_view comment, size_t max) {
    if (comment.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos)
        throw invalid(operation, std::string(what) + " must be one line without NUL bytes");
    if (comment.size() > max)
        throw invalid(operation, std::string(what) + " has " + std::to_string(comment.size()) + " bytes, at most " +
                                     std::to_string(max) + " fit minisign's line buffer");
}

std::array<uint8_t, crypto_generichash_BYTES_MAX> prehash(std::string_view message) {
    std::array<uint8_t, crypto_generichash_BYTES_MAX> hash{};
    crypto_generichash(hash.data(), hash.size(), reinterpret_cast<const unsigned char*>(message.data()),
                       message.size(), nullptr, 0);
    return hash;
}

std::array<uint8_t, checksum_size> secret_key_checksum(const SecretKey& key) {
    crypto_generichash_state state;
    std::array<uint8_t, checksum_size> sum{};
    crypto_generichash_init(&state, nullptr, 0, sum.size());
    crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(sig_alg.data()), sig_alg.size());
    crypto_generichash_update(&state, key.id.data(), key.id.size());
    crypto_generichash_update(&state, key.key.data(), key.key.size());
    crypto_generichash_final(&state, sum.data(), sum.size());
    sodium_memzero(&state, sizeof state);
    return sum;
}

struct ParsedSignature {
    std::string algorithm;
    KeyId id{};
    std::array<uint8_t, 64> signature{};
    std::string trusted_comment;
    std::array<uint8_t, global_signature_size> global{};
};

// The four lines of a .minisig, as minisign reads them; reasons only, the caller adds the
// operation.
ParsedSignature parse_signature(std::string_view text) {
    const auto malformed = [](const std::string& reason) { return invalid("", "malformed signature file: " + reason); };
    const auto lines = split_lines(text);
    if (lines.empty()) throw malformed("empty");
    if (!lines[0].starts_with(untrusted_prefix))
        throw malformed("the first line does not start with '" + std::string(untrusted_prefix) + "'");
    if (lines.size() < 2) throw malformed("no signature line");
    ParsedSignature p;
    WipedBytes blob;
    try {
        decode_exact("", "the signature", lines[1], blob, signature_size);
    } catch (const Error& e) {
        throw malformed(e.what());
    }
    p.algorithm = field(blob.bytes, 0, 2);
    std::copy_n(blob.bytes.begin() + 2, p.id.size(), p.id.begin());
    std::copy_n(blob.bytes.begin() + 10, p.signature.size(), p.signature.begin());
    if (lines.size() < 3) throw malformed("no trusted comment line");
    if (!lines[2].starts_with(trusted_prefix))
        throw malformed("the third line does not start with '" + std::string(trusted_prefix) + "'");
    p.trusted_comment = lines[2].substr(trusted_prefix.size());
    if (lines.size() < 4) throw malformed("no global signature line");
    try {
        decode_exact("", "the global signature", lines[3], blob, global_signature_size);
    } catch (const Error& e) {
        throw malformed(e.what());
    }
    std::copy(blob.bytes.begin(), blob.bytes.end(), p.global.begin());
    if (lines.size() > 4) throw malformed("unexpected text after the global signature");
    return p;
}

// A file written under a temporary name and renamed into place by commit(), removed when
// dropped uncommitted. Unlike base's AtomicFile the rename can refuse to replace
// (RENAME_NOREPLACE), so keygen never overwrites a key, not even one a racing writer just made.
class StagedFile {
public:
    StagedFile(const Dir& dir, std::string name, std::string_view content, mode_t mode)
        : dir_(dir), name_(std::move(name)), temp_(".#" + name_ + "." + std::to_string(std::random_device{}())) {
        Fd fd = dir.open_file(temp_, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
        try {
            write_all(fd.get(), content, dir.path_of(temp_).string());
            // fchmod: the umask may have narrowed the mode given to open.
            check_errno(::fchmod(fd.get(), mode), "set mode of", dir.path_of(temp_).string());
            check_errno(::fsync(fd.get()), "sync", dir.path_of(temp_).string());
        } catch (...) {
            // The destructor does not run for an object whose constructor threw.
            ::unlinkat(dir.fd(), temp_.c_str(), 0);
            throw;
        }
        created_ = true;
    }
    StagedFile(const StagedFile&) = delete;
    StagedFile& operator=(const StagedFile&) = delete;
    ~StagedFile() {
        if (created_) ::unlinkat(dir_.fd(), temp_.c_str(), 0);
    }

    void commit(bool replace) {
        const std::string target = dir_.path_of(name_).string();
        if (::renameat2(dir_.fd(), temp_.c_str(), dir_.fd(), name_.c_str(), replace ? 0 : RENAME_NOREPLACE) < 0) {
            if (errno == EEXIST) throw Error("write key", target, "exists already", Fault::Exists);
            throw Error("write key", target, errno);
        }
        created_ = false;
    }

private:
    const Dir& dir_;
    std::string name_, temp_;
    bool created_ = false;
};

}  // namespace

std::string format_key_id(const KeyId& id) {
    uint64_t value = 0;
    for (size_t i = id.size(); i-- > 0;) value = (value << 8) | id[i];
    char text[17];
    std::snprintf(text, sizeof text, "%016" PRIX64, value);
    return text;
}

KeyPair generate_key_pair() {
    init_sodium();
    KeyPair pair;
    randombytes_buf(pair.secret_key.id.data(), pair.secret_key.id.size());
    pair.public_key.id = pair.secret_key.id;
    crypto_sign_ed25519_keypair(pair.public_key.key.data(), pair.secret_key.key.data());
    return pair;
}

PublicKey public_key_of(const SecretKey& key) {
    PublicKey pub;
    pub.id = key.id;
    crypto_sign_ed25519_sk_to_pk(pub.key.data(), key.key.data());
    return pub;
}

std::string public_key_base64(const PublicKey& key) {
    Bytes blob(sig_alg.begin(), sig_alg.end());
    blob.insert(blob.end(), key.id.begin(), key.id.end());
    blob.insert(blob.end(), key.key.begin(), key.key.end());
    return to_base64(blob);
}

std::string public_key_file(const PublicKey& key, std::string_view comment) {
    init_sodium();
    check_comment("write public key", "the comment", comment, max_untrusted_comment);
    return std::string(untrusted_prefix) + std::string(comment) + "\n" + public_key_base64(key) + "\n";
}

std::string secret_key_file(const SecretKey& key, std::string_view comment) {
    init_sodium();
    check_comment("write secret key", "the comment", comment, max_untrusted_comment);
    WipedBytes blob;
    auto& b = blob.bytes;
    b.reserve(secret_key_size);
    b.insert(b.end(), sig_alg.begin(), sig_alg.end());
    b.insert(b.end(), kdf_none.begin(), kdf_none.end());
    b.insert(b.end(), checksum_alg.begin(), checksum_alg.end());
    b.resize(b.size() + 32 + 8 + 8, 0);  // salt, opslimit, memlimit: unused without a KDF
    b.insert(b.end(), key.id.begin(), key.id.end());
    b.insert(b.end(), key.key.begin(), key.key.end());
    const auto sum = secret_key_checksum(key);
    b.insert(b.end(), sum.begin(), sum.end());
    std::string line = to_base64(b);
    std::string text = std::string(untrusted_prefix) + std::string(comment) + "\n" + line + "\n";
    sodium_memzero(line.data(), line.size());
    return text;
}

PublicKey parse_public_key(std::string_view text) {
    constexpr std::string_view op = "parse public key";
    init_sodium();
    WipedBytes blob;
    decode_exact(op, "the key", key_line(op, text), blob, public_key_size);
    const auto alg = field(blob.bytes, 0, 2);
    if (alg != sig_alg)
        throw invalid(op, "unsupported signature algorithm " + quote_tag(alg) + " (minisign keys use 'Ed')");
    PublicKey key;
    std::copy_n(blob.bytes.begin() + 2, key.id.size(), key.id.begin());
    std::copy_n(blob.bytes.begin() + 10, key.key.size(), key.key.begin());
    return key;
}

SecretKey parse_secret_key(std::string_view text) {
    constexpr std::string_view op = "parse secret key";
    init_sodium();
    WipedBytes blob;
    decode_exact(op, "the key", key_line(op, text), blob, secret_key_size);
    const auto& b = blob.bytes;
    if (const auto alg = field(b, 0, 2); alg != sig_alg)
        throw invalid(op, "unsupported signature algorithm " + quote_tag(alg) + " (minisign keys use 'Ed')");
    if (const auto alg = field(b, 4, 2); alg != checksum_alg)
        throw invalid(op, "unsupported checksum algorithm " + quote_tag(alg) + " (minisign keys use 'B2')");
    const auto kdf = field(b, 2, 2);
    if (kdf == kdf_scrypt)
        throw invalid(op, "the key is encrypted with a password, which strata cannot ask for; use an unencrypted key "
                          "(made by 'strata keygen' or 'minisign -G -W', or decrypted with 'minisign -C -W -s KEY')");
    if (kdf != kdf_none) throw invalid(op, "unsupported key derivation function " + quote_tag(kdf));

    constexpr size_t keynum_offset = 2 + 2 + 2 + 32 + 8 + 8;
    SecretKey key;
    std::copy_n(b.begin() + keynum_offset, key.id.size(), key.id.begin());
    std::copy_n(b.begin() + keynum_offset + 8, key.key.size(), key.key.begin());
    const auto stored = field(b, keynum_offset + 8 + 64, checksum_size);
    // minisign -G -W writes no checksum (zeros); one that is there must match.
    if (stored.find_first_not_of('\0') != std::string_view::npos) {
        const auto sum = secret_key_checksum(key);
        if (sodium_memcmp(stored.data(), sum.data(), sum.size()) != 0)
            throw invalid(op, "the key is corrupt: its checksum does not match");
    }
    // The public half is stored next to the seed; a key whose halves disagree would make
    // signatures nobody can verify.
    std::array<uint8_t, 32> derived_pk{};
    WipedBytes derived_sk(64);
    crypto_sign_ed25519_seed_keypair(derived_pk.data(), derived_sk.bytes.data(), key.key.data());
    if (sodium_memcmp(derived_sk.bytes.data(), key.key.data(), key.key.size()) != 0)
        throw invalid(op, "the key is corrupt: its public half does not match its seed");
    return key;
}

KeyFiles write_key_files(const Dir& dir, std::string_view name, const KeyPair& pair, std::string_view comment,
                         bool replace) {
    const std::string id = format_key_id(pair.public_key.id);
    const std::string key_name = std::string(name) + ".key", pub_name = std::string(name) + ".pub";
    KeyFiles files{.public_key = dir.path_of(pub_name), .secret_key = dir.path_of(key_name)};
    // A cheap check first, for the clear error before anything is written; the renames below
    // are what makes "never overwrite" hold.
    if (!replace)
        for (const auto& n : {key_name, pub_name})
            if (dir.stat(n)) throw Error("write key", dir.path_of(n).string(), "exists already", Fault::Exists);

    std::string secret_text = secret_key_file(pair.secret_key, comment.empty() ? "strata secret key " + id : comment);
    StagedFile key(dir, key_name, secret_text, 0600);
    sodium_memzero(secret_text.data(), secret_text.size());
    StagedFile pub(dir, pub_name,
                   public_key_file(pair.public_key, comment.empty() ? "strata public key " + id : comment), 0644);
    key.commit(replace);
    try {
        pub.commit(replace);
    } catch (...) {
        // Not replacing, the .key is ours alone: take it back so neither file is left.
        if (!replace) ::unlinkat(dir.fd(), key_name.c_str(), 0);
        throw;
    }
    dir.sync();
    return files;
}

std::string sign(const SecretKey& key, std::string_view message, std::string_view trusted_comment,
                 std::string_view untrusted_comment) {
    constexpr std::string_view op = "sign";
    init_sodium();
    check_comment(op, "the trusted comment", trusted_comment, max_trusted_comment);
    check_comment(op, "the untrusted comment", untrusted_comment, max_untrusted_comment);

    const auto hash = prehash(message);
    std::array<uint8_t, 64> signature{};
    crypto_sign_ed25519_detached(signature.data(), nullptr, hash.data(), hash.size(), key.key.data());

    // The global signature binds the trusted comment to this signature.
    Bytes signed_comment(signature.begin(), signature.end());
    signed_comment.insert(signed_comment.end(), trusted_comment.begin(), trusted_comment.end());
    std::array<uint8_t, global_signature_size> global{};
    crypto_sign_ed25519_detached(global.data(), nullptr, signed_comment.data(), signed_comment.size(),
                                 key.key.data());

    Bytes blob(sig_alg_hashed.begin(), sig_alg_hashed.end());
    blob.insert(blob.end(), key.id.begin(), key.id.end());
    blob.insert(blob.end(), signature.begin(), signature.end());
    std::string text;
    text.append(untrusted_prefix).append(untrusted_comment).append("\n");
    text.append(to_base64(blob)).append("\n");
    text.append(trusted_prefix).append(trusted_comment).append("\n");
    text.append(to_base64(global)).append("\n");
    return text;
}

KeyId signature_key_id(std::string_view signature_file) {
    return with_context("read signature", "", [&] {
        init_sodium();
        return parse_signature(signature_file).id;
    });
}

Verified verify(std::span<const PublicKey> trusted, std::string_view message, std::string_view signature_file) {
    return with_context("verify signature", "", [&] {
        init_sodium();
        const auto p = parse_signature(signature_file);
        if (p.algorithm == sig_alg)
            throw invalid("", "unsupported signature algorithm 'Ed' (legacy, not prehashed; sign without 'minisign -l')");
        if (p.algorithm != sig_alg_hashed)
            throw invalid("", "unsupported signature algorithm " + quote_tag(p.algorithm) + " (minisign signatures use 'ED')");

        const auto hash = prehash(message);
        bool known = false;
        for (const auto& key : trusted) {
            if (key.id != p.id) continue;
            known = true;
            // Ids are not unique by construction; the key whose signature verifies is the signer.
            if (crypto_sign_ed25519_verify_detached(p.signature.data(), hash.data(), hash.size(), key.key.data()) != 0)
                continue;
            Bytes signed_comment(p.signature.begin(), p.signature.end());
            signed_comment.insert(signed_comment.end(), p.trusted_comment.begin(), p.trusted_comment.end());
            if (crypto_sign_ed25519_verify_detached(p.global.data(), signed_comment.data(), signed_comment.size(),
                                                    key.key.data()) != 0)
                throw invalid("", "bad signature of the trusted comment");
            return Verified{.key = key, .trusted_comment = p.trusted_comment};
        }
        if (!known) throw invalid("", "signed by unknown key " + format_key_id(p.id));
        throw invalid("", "bad signature");
    });
}

}  // namespace strata::sign
