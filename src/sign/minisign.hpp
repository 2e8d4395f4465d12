#pragma once
// Ed25519 keys and signatures in minisign's formats (https://jedisct1.github.io/minisign/), so
// vendors can sign and users can check with the packaged `minisign` tool as well as with strata.
// Signatures are the prehashed kind ("ED": Ed25519 over BLAKE2b-512 of the message), minisign's
// default since 0.8; the trusted comment is signed too (global signature).
#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "base/fd.hpp"

namespace strata::sign {

using KeyId = std::array<uint8_t, 8>;
// As minisign prints it: 16 uppercase hex digits of the little-endian id (minisign 0.11 drops
// leading zeros in the comment of the .pub files it writes; compare ids as numbers there).
std::string format_key_id(const KeyId& id);

struct PublicKey {
    KeyId id{};
    std::array<uint8_t, 32> key{};
    bool operator==(const PublicKey&) const = default;
};

struct SecretKey {
    KeyId id{};
    std::array<uint8_t, 64> key{};  // libsodium's Ed25519 secret key (seed + public key)
};

struct KeyPair {
    PublicKey public_key;
    SecretKey secret_key;
};

KeyPair generate_key_pair();

// The public half of a secret key (the last 32 bytes of libsodium's secret key).
PublicKey public_key_of(const SecretKey& key);

// The bare base64 line of a public key, no newline: what `minisign -P` takes and what a key
// announcement carries and signs.
std::string public_key_base64(const PublicKey& key);
// minisign.pub text: "untrusted comment: <comment>\n<base64>\n".
std::string public_key_file(const PublicKey& key, std::string_view comment);
// An unencrypted minisign secret key file (what `minisign -G -W` writes). Its checksum is
// filled in, which minisign ignores for unencrypted keys but `minisign -C` would keep.
std::string secret_key_file(const SecretKey& key, std::string_view comment);
// Comments are one line each (no CR, LF or NUL) and short enough for minisign's line buffers;
// others fail with Fault::InvalidInput.

// Accepts a .pub file or its bare base64 line. Fault::InvalidInput with the reason otherwise.
PublicKey parse_public_key(std::string_view text);
// Unencrypted minisign secret keys only; an encrypted one fails with a message saying how to
// make an unencrypted one (`minisign -G -W`, or `strata keygen`). The key is checked for
// consistency (checksum when present, public half derived from the seed).
SecretKey parse_secret_key(std::string_view text);

struct KeyFiles {
    std::filesystem::path public_key;  // <name>.pub, 0644
    std::filesystem::path secret_key;  // <name>.key, 0600
};
// Writes <name>.key and <name>.pub in dir, each atomically (complete or absent). Without
// `replace`, an existing file of either name is never overwritten, also not by a racing writer:
// Fault::Exists. An empty comment means "strata public/secret key <ID>".
KeyFiles write_key_files(const Dir& dir, std::string_view name, const KeyPair& pair, std::string_view comment,
                         bool replace);

// The .minisig text for message.
std::string sign(const SecretKey& key, std::string_view message, std::string_view trusted_comment,
                 std::string_view untrusted_comment = "signature from strata");

struct Verified {
    PublicKey key;                // which trusted key signed
    std::string trusted_comment;  // signed, so it can be believed
};
// Checks signature_file (.minisig text) over message against the trusted keys: the key id must
// be one of them and both signatures must verify. Fault::InvalidInput naming the reason
// ("signed by unknown key <ID>", "bad signature", "malformed signature file: ...").
// Messages start with "verify signature: ". Legacy signatures (algorithm "Ed", `minisign -l`)
// are refused: only the prehashed kind is accepted.
Verified verify(std::span<const PublicKey> trusted, std::string_view message, std::string_view signature_file);

// The id of the key that made a signature, read without checking anything else (for error
// messages and key lookup). Fault::InvalidInput when the file is malformed.
KeyId signature_key_id(std::string_view signature_file);

}  // namespace strata::sign
