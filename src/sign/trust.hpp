#pragma once
// Which keys a client trusts: *.pub files (minisign public keys) in key directories, vendor
// first (/usr/lib/strata/keys.d/, shipped in the usr tree) then site (/etc/strata/keys.d/).
// A key listed in a directory's revoked/ subdirectory (same .pub format) is never trusted, even
// if another directory lists it. Rotation: a repository announces a new key together with a
// signature of that key's .pub line by a key the client already trusts.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "sign/minisign.hpp"

namespace strata::sign {

// Revocation goes by the Ed25519 key, not by the key id: ids are chosen by the key's holder, so
// a revoked key stays revoked under any id.
struct TrustStore {
    std::vector<PublicKey> trusted;  // never holds a revoked key (load_trust_store drops them)
    std::vector<PublicKey> revoked;
    bool is_revoked(const PublicKey& key) const;
};

// The key directories a system trusts, vendor first: /usr/lib/strata/keys.d, /etc/strata/keys.d.
std::vector<std::filesystem::path> default_key_dirs();

// Missing directories are fine (no keys); an unreadable or malformed .pub file is an error
// naming it. Files not ending in ".pub" and hidden files are ignored; *.pub may be symlinks.
TrustStore load_trust_store(const std::vector<std::filesystem::path>& dirs);

// verify() against store.trusted, but a signature by a revoked key says so
// ("verify signature: signed by revoked key <ID>") instead of "unknown key".
Verified verify(const TrustStore& store, std::string_view message, std::string_view signature_file);

// A key announcement: the new key's public key line (base64) and a .minisig over exactly that
// line by a currently trusted key. Returns the new key when the signature verifies against a
// trusted, non-revoked key and the new key itself is not revoked; Fault::InvalidInput otherwise.
PublicKey accept_announced_key(const TrustStore& store, std::string_view public_key_line,
                               std::string_view signature_file);

}  // namespace strata::sign
