#pragma once
// Typed subvolume names (DESIGN.md §2). Every name strata reads or creates passes Name::parse,
// the single gate that keeps '/', ',', '..', whitespace and control characters out of the pool,
// out of mount options (`subvol=`) and out of boot entries.
//
//   usr:<vendor-id>:<arch>:<version>          read-only vendor trees
//   runtime:<id>:<arch>:<version>
//   framework:<id>:<arch>:<version>
//   app:<id>:<runtime>:<arch>:<version>
//   root:<name>:<vendor-id>:<arch>            writable state
//   home:<user>:<uid>:<gid>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata::naming {

// In list order: vendor trees first, then state.
enum class Kind { Usr, Runtime, Framework, App, Root, Home };

std::string_view kind_to_string(Kind kind);
std::optional<Kind> kind_from_string(std::string_view text);
// "usr:<vendor-id>:<arch>:<version>": how a name of this kind is spelled, for messages.
std::string_view kind_usage(Kind kind);

inline constexpr size_t max_name_bytes = 255;  // a btrfs directory entry

class Name {
public:
    // Throws Error (Fault::InvalidInput) saying which field is wrong and why, e.g.
    //   invalid name 'usr:org.example.Demo:x86:1': field 'arch': unknown architecture 'x86'
    static Name parse(std::string_view text);
    static std::optional<Name> try_parse(std::string_view text);

    // Build a name from its fields; they are validated exactly as parse does.
    static Name usr(std::string_view vendor_id, std::string_view arch, std::string_view version);
    static Name runtime(std::string_view id, std::string_view arch, std::string_view version);
    static Name framework(std::string_view id, std::string_view arch, std::string_view version);
    static Name app(std::string_view id, std::string_view runtime, std::string_view arch, std::string_view version);
    static Name root(std::string_view name, std::string_view vendor_id, std::string_view arch);
    static Name home(std::string_view user, uint32_t uid, uint32_t gid);

    Kind kind() const { return kind_; }
    const std::string& str() const { return text_; }

    // The first field: vendor id (usr), id (runtime, framework, app), instance name (root), user (home).
    std::string_view id() const { return field(0); }
    std::string_view vendor_id() const;   // usr, root; empty otherwise
    std::string_view runtime_id() const;  // app; empty otherwise
    std::string_view arch() const;        // all but home
    std::string_view version() const;     // vendor trees
    std::optional<uint32_t> uid() const;  // home
    std::optional<uint32_t> gid() const;  // home

    // usr, runtime, framework and app: read-only, versioned, shipped by a vendor.
    bool is_vendor_tree() const;

    // The fields in scheme order with their names from the scheme ("vendor-id", "arch", ...).
    std::vector<std::pair<std::string_view, std::string_view>> fields() const;

    friend bool operator==(const Name& a, const Name& b) { return a.text_ == b.text_; }

private:
    Name(Kind kind, std::string text, std::vector<std::string> fields)
        : kind_(kind), text_(std::move(text)), fields_(std::move(fields)) {}
    std::string_view field(int index) const;
    Kind kind_;
    std::string text_;
    std::vector<std::string> fields_;  // without the kind prefix
};

// Strict weak order for listings: kind, id, runtime, vendor, arch, then version order (so the
// newest version of a series comes last), then the text.
bool list_order(const Name& a, const Name& b);

// Same kind, id, runtime and arch: versions of one vendor tree, or the same state object.
bool same_series(const Name& a, const Name& b);

// The newest version of every series among names (vendor trees only), in list order.
std::vector<Name> newest_per_series(std::span<const Name> names);

}  // namespace strata::naming
