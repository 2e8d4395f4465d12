// Key directories: every *.pub directly in a directory is trusted, every *.pub in its revoked/
// subdirectory is revoked everywhere. Files are read whole, so each is bounded in size.
#include "sign/trust.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "base/error.hpp"
#include "base/fd.hpp"

namespace strata::sign {
namespace {

// A key file is two short lines; anything far larger is not one (and is not read into memory).
constexpr size_t max_key_file = 64 * 1024;

std::optional<Dir> open_if_present(const std::filesystem::path& path) {
    try {
        return Dir::open(path);
    } catch (const Error& e) {
        if (e.errnum() == ENOENT) return std::nullopt;
        throw;
    }
}

// The keys of the *.pub files directly in dir, in name order so errors are deterministic.
void read_keys(const Dir& dir, std::string_view what, std::vector<PublicKey>& out) {
    auto names = dir.entries();
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
        if (name.starts_with('.') || !name.ends_with(".pub")) continue;  // editor leftovers, README, ...
        const std::string path = dir.path_of(name).string();
        with_context(what, path, [&] {
            // Symlinks are followed (a site may link a vendor's key in); O_NONBLOCK so a FIFO
            // named *.pub is refused below instead of blocking the open.
            const Fd fd = dir.open_file(name, O_RDONLY | O_NONBLOCK);
            struct stat st {};
            check_errno(::fstat(fd.get(), &st), "stat", path);
            if (!S_ISREG(st.st_mode)) throw Error("", "", "not a regular file", Fault::InvalidInput);
            std::string text(max_key_file + 1, '\0');
            text.resize(read_full(fd.get(), text.data(), text.size(), path));
            if (text.size() > max_key_file)
                throw Error("", "", "larger than " + std::to_string(max_key_file) + " bytes, not a key file",
                            Fault::InvalidInput);
            out.push_back(parse_public_key(text));
        });
    }
}

bool contains(const std::vector<PublicKey>& keys, const PublicKey& key) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
}

}  // namespace

bool TrustStore::is_revoked(const PublicKey& key) const {
    return std::any_of(revoked.begin(), revoked.end(), [&](const PublicKey& r) { return r.key == key.key; });
}

std::vector<std::filesystem::path> default_key_dirs() {
    return {"/usr/lib/strata/keys.d", "/etc/strata/keys.d"};
}

TrustStore load_trust_store(const std::vector<std::filesystem::path>& dirs) {
    std::vector<PublicKey> listed, revoked;
    for (const auto& path : dirs) {
        const auto dir = open_if_present(path);
        if (!dir) continue;
        read_keys(*dir, "read trusted key", listed);
        if (const auto r = dir->try_open_dir("revoked")) read_keys(*r, "read revoked key", revoked);
    }
    TrustStore store;
    for (const auto& key : revoked)
        if (!contains(store.revoked, key)) store.revoked.push_back(key);
    // Revocation wins over every directory, so a site cannot be tricked into trusting a
    // vendor-revoked key by an older copy of it elsewhere.
    for (const auto& key : listed)
        if (!store.is_revoked(key) && !contains(store.trusted, key)) store.trusted.push_back(key);
    return store;
}

Verified verify(const TrustStore& store, std::string_view message, std::string_view signature_file) {
    std::optional<KeyId> id;
    try {
        id = signature_key_id(signature_file);
    } catch (const Error&) {
        // Malformed: verify() below says why, in its own words.
    }
    const auto has_id = [&](const std::vector<PublicKey>& keys) {
        return std::any_of(keys.begin(), keys.end(), [&](const PublicKey& k) { return k.id == *id; });
    };
    if (id && !has_id(store.trusted) && has_id(store.revoked))
        throw Error("verify signature", "", "signed by revoked key " + format_key_id(*id), Fault::InvalidInput);
    return verify(std::span<const PublicKey>(store.trusted), message, signature_file);
}

PublicKey accept_announced_key(const TrustStore& store, std::string_view public_key_line,
                               std::string_view signature_file) {
    const PublicKey key = with_context("accept announced key", "", [&] { return parse_public_key(public_key_line); });
    return with_context("accept announced key", format_key_id(key.id), [&] {
        // The signature covers exactly the line as given, so nothing about the key can be
        // altered in transit; the signer must be trusted now (store.trusted holds no revoked key).
        verify(store, public_key_line, signature_file);
        if (store.is_revoked(key)) throw Error("", "", "the announced key is revoked", Fault::InvalidInput);
        return key;
    });
}

}  // namespace strata::sign
