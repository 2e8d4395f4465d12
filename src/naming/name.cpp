#include "naming/name.hpp"

#include <algorithm>
#include <array>
#include <charconv>

#include "base/error.hpp"
#include "base/escape.hpp"
#include "naming/arch.hpp"
#include "naming/version.hpp"

namespace strata::naming {
namespace {

enum class FieldType { Id, Label, Arch, Version, Number };

struct FieldSpec {
    std::string_view key;
    FieldType type;
};

// Positions of the typed accessors within a kind's fields; -1 where a kind has none.
struct Layout {
    int vendor, runtime, arch, version, uid, gid;
};

struct KindSpec {
    Kind kind;
    std::string_view prefix;
    std::string_view usage;
    std::vector<FieldSpec> fields;
    Layout layout;
};

const std::array<KindSpec, 6>& kind_specs() {
    using enum FieldType;
    static const std::array<KindSpec, 6> specs = {{
        {Kind::Usr, "usr", "usr:<vendor-id>:<arch>:<version>",
         {{"vendor-id", Id}, {"arch", Arch}, {"version", Version}}, {0, -1, 1, 2, -1, -1}},
        {Kind::Runtime, "runtime", "runtime:<id>:<arch>:<version>",
         {{"id", Id}, {"arch", Arch}, {"version", Version}}, {-1, -1, 1, 2, -1, -1}},
        {Kind::Framework, "framework", "framework:<id>:<arch>:<version>",
         {{"id", Id}, {"arch", Arch}, {"version", Version}}, {-1, -1, 1, 2, -1, -1}},
        {Kind::App, "app", "app:<id>:<runtime>:<arch>:<version>",
         {{"id", Id}, {"runtime", Id}, {"arch", Arch}, {"version", Version}}, {-1, 1, 2, 3, -1, -1}},
        {Kind::Root, "root", "root:<name>:<vendor-id>:<arch>",
         {{"name", Label}, {"vendor-id", Id}, {"arch", Arch}}, {1, -1, 2, -1, -1, -1}},
        {Kind::Home, "home", "home:<user>:<uid>:<gid>",
         {{"user", Label}, {"uid", Number}, {"gid", Number}}, {-1, -1, -1, -1, 1, 2}},
    }};
    return specs;
}

const KindSpec& spec_of(Kind kind) { return kind_specs()[static_cast<size_t>(kind)]; }

bool is_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string quoted(std::string_view s) { return "'" + escape(s) + "'"; }

// Rules every field obeys, whatever its type; returns why not, or empty.
std::string common_problem(std::string_view value) {
    if (value.empty()) return "is empty";
    for (const char c : value) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f || c == ' ') return "contains whitespace or a control character";
        if (c == '/') return "contains '/'";
        if (c == ',') return "contains ',' (it would split mount options)";
    }
    if (value.find("..") != std::string_view::npos) return "contains '..'";
    return {};
}

std::string id_problem(std::string_view value) {
    // Reverse-domain: at least two dot-separated segments of [A-Za-z0-9_-], none starting with '-'.
    size_t segments = 0;
    size_t start = 0;
    while (start <= value.size()) {
        const size_t dot = std::min(value.find('.', start), value.size());
        const std::string_view segment = value.substr(start, dot - start);
        const bool ok = !segment.empty() && segment.front() != '-' &&
                        std::all_of(segment.begin(), segment.end(), [](char c) { return is_alnum(c) || c == '_' || c == '-'; });
        if (!ok) break;
        ++segments;
        if (dot == value.size()) {
            if (segments >= 2) return {};
            break;
        }
        start = dot + 1;
    }
    return quoted(value) + " is not a reverse-domain id like org.example.Demo";
}

std::string label_problem(std::string_view value) {
    const bool ok = value.front() != '-' && value.front() != '.' &&
                    std::all_of(value.begin(), value.end(), [](char c) { return is_alnum(c) || c == '_' || c == '.' || c == '-'; });
    if (ok) return {};
    return quoted(value) + " may hold only letters, digits, '_', '.' and '-', and must not start with '-' or '.'";
}

std::string arch_problem(std::string_view value) {
    if (find_arch(value)) return {};
    std::string known;
    for (const auto& a : known_arches()) known += (known.empty() ? "" : ", ") + std::string(a.name);
    return "unknown architecture " + quoted(value) + " (known: " + known + ")";
}

std::string version_problem(std::string_view value) {
    if (is_valid_version(value)) return {};
    return quoted(value) + " is not a version: use letters, digits and . ~ ^ _ + -, starting with a letter or digit";
}

std::optional<uint32_t> parse_id_number(std::string_view value) {
    // Canonical decimal only, so one uid has one spelling; (uid_t)-1 means "no id" to the kernel.
    if (value.empty() || (value.size() > 1 && value.front() == '0')) return std::nullopt;
    uint32_t n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size() || n == UINT32_MAX) return std::nullopt;
    return n;
}

std::string number_problem(std::string_view value) {
    if (parse_id_number(value)) return {};
    return quoted(value) + " is not a decimal number from 0 to 4294967294 without leading zeros";
}

std::string field_problem(const FieldSpec& spec, std::string_view value) {
    if (auto p = common_problem(value); !p.empty()) return p;
    switch (spec.type) {
    case FieldType::Id: return id_problem(value);
    case FieldType::Label: return label_problem(value);
    case FieldType::Arch: return arch_problem(value);
    case FieldType::Version: return version_problem(value);
    case FieldType::Number: return number_problem(value);
    }
    return {};
}

std::vector<std::string_view> split(std::string_view text, char sep) {
    std::vector<std::string_view> parts;
    size_t start = 0;
    for (;;) {
        const size_t pos = text.find(sep, start);
        parts.push_back(text.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
        if (pos == std::string_view::npos) return parts;
        start = pos + 1;
    }
}

std::string kinds_list() {
    std::string s;
    const auto& specs = kind_specs();
    for (size_t i = 0; i < specs.size(); ++i)
        s += std::string(i == 0 ? "" : i + 1 == specs.size() ? " or " : ", ") + std::string(specs[i].prefix);
    return s;
}

}  // namespace

std::string_view kind_to_string(Kind kind) { return spec_of(kind).prefix; }

std::optional<Kind> kind_from_string(std::string_view text) {
    for (const auto& spec : kind_specs())
        if (spec.prefix == text) return spec.kind;
    return std::nullopt;
}

std::string_view kind_usage(Kind kind) { return spec_of(kind).usage; }

namespace {

std::string invalid_reason(std::string_view text, Kind& kind, std::vector<std::string>& fields) {
    if (text.empty()) return "the name is empty";
    if (text.size() > max_name_bytes)
        return "longer than " + std::to_string(max_name_bytes) + " bytes (" + std::to_string(text.size()) + ")";
    if (!is_valid_utf8(text)) return "not valid UTF-8";
    const auto parts = split(text, ':');
    const auto parsed_kind = kind_from_string(parts.front());
    if (!parsed_kind) return "unknown kind " + quoted(parts.front()) + " (expected " + kinds_list() + ")";
    const auto& spec = spec_of(*parsed_kind);
    // Counted with the kind, as users see them between the colons.
    if (parts.size() != spec.fields.size() + 1)
        return "expected " + std::to_string(spec.fields.size() + 1) + " fields (" + std::string(spec.usage) +
               "), got " + std::to_string(parts.size());
    for (size_t i = 0; i < spec.fields.size(); ++i) {
        if (auto p = field_problem(spec.fields[i], parts[i + 1]); !p.empty())
            return "field '" + std::string(spec.fields[i].key) + "': " + p;
    }
    kind = *parsed_kind;
    fields.assign(parts.begin() + 1, parts.end());
    return {};
}

}  // namespace

Name Name::parse(std::string_view text) {
    Kind kind{};
    std::vector<std::string> fields;
    if (auto reason = invalid_reason(text, kind, fields); !reason.empty())
        throw Error("invalid name", text.substr(0, 2 * max_name_bytes), reason, Fault::InvalidInput);
    return Name(kind, std::string(text), std::move(fields));
}

std::optional<Name> Name::try_parse(std::string_view text) {
    Kind kind{};
    std::vector<std::string> fields;
    if (!invalid_reason(text, kind, fields).empty()) return std::nullopt;
    return Name(kind, std::string(text), std::move(fields));
}

namespace {

std::string join_fields(Kind kind, std::initializer_list<std::string_view> fields) {
    std::string text(kind_to_string(kind));
    for (const auto f : fields) {
        text += ':';
        text += f;
    }
    return text;
}

}  // namespace

Name Name::usr(std::string_view vendor_id, std::string_view arch, std::string_view version) {
    return parse(join_fields(Kind::Usr, {vendor_id, arch, version}));
}
Name Name::runtime(std::string_view id, std::string_view arch, std::string_view version) {
    return parse(join_fields(Kind::Runtime, {id, arch, version}));
}
Name Name::framework(std::string_view id, std::string_view arch, std::string_view version) {
    return parse(join_fields(Kind::Framework, {id, arch, version}));
}
Name Name::app(std::string_view id, std::string_view runtime, std::string_view arch, std::string_view version) {
    return parse(join_fields(Kind::App, {id, runtime, arch, version}));
}
Name Name::root(std::string_view name, std::string_view vendor_id, std::string_view arch) {
    return parse(join_fields(Kind::Root, {name, vendor_id, arch}));
}
Name Name::home(std::string_view user, uint32_t uid, uint32_t gid) {
    return parse(join_fields(Kind::Home, {user, std::to_string(uid), std::to_string(gid)}));
}

std::string_view Name::field(int index) const {
    return index < 0 ? std::string_view() : std::string_view(fields_[static_cast<size_t>(index)]);
}

std::string_view Name::vendor_id() const { return field(spec_of(kind_).layout.vendor); }
std::string_view Name::runtime_id() const { return field(spec_of(kind_).layout.runtime); }
std::string_view Name::arch() const { return field(spec_of(kind_).layout.arch); }
std::string_view Name::version() const { return field(spec_of(kind_).layout.version); }
std::optional<uint32_t> Name::uid() const {
    const int i = spec_of(kind_).layout.uid;
    return i < 0 ? std::nullopt : parse_id_number(field(i));
}
std::optional<uint32_t> Name::gid() const {
    const int i = spec_of(kind_).layout.gid;
    return i < 0 ? std::nullopt : parse_id_number(field(i));
}

bool Name::is_vendor_tree() const { return kind_ != Kind::Root && kind_ != Kind::Home; }

std::vector<std::pair<std::string_view, std::string_view>> Name::fields() const {
    std::vector<std::pair<std::string_view, std::string_view>> out;
    const auto& spec = spec_of(kind_);
    for (size_t i = 0; i < spec.fields.size(); ++i) out.emplace_back(spec.fields[i].key, fields_[i]);
    return out;
}

namespace {

// <0, 0, >0 over everything that makes a series: kind, id, runtime, vendor, arch (and, for
// homes, the numeric ids).
int compare_series(const Name& a, const Name& b) {
    if (a.kind() != b.kind()) return a.kind() < b.kind() ? -1 : 1;
    for (const auto& [x, y] : {std::pair{a.id(), b.id()}, {a.runtime_id(), b.runtime_id()},
                               {a.vendor_id(), b.vendor_id()}, {a.arch(), b.arch()}}) {
        if (const int c = x.compare(y); c != 0) return c;
    }
    if (a.uid() != b.uid()) return a.uid() < b.uid() ? -1 : 1;
    if (a.gid() != b.gid()) return a.gid() < b.gid() ? -1 : 1;
    return 0;
}

}  // namespace

bool list_order(const Name& a, const Name& b) {
    if (const int c = compare_series(a, b); c != 0) return c < 0;
    if (const int c = compare_versions(a.version(), b.version()); c != 0) return c < 0;
    return a.str() < b.str();
}

bool same_series(const Name& a, const Name& b) { return compare_series(a, b) == 0; }

std::vector<Name> newest_per_series(std::span<const Name> names) {
    std::vector<Name> sorted;
    for (const auto& n : names)
        if (n.is_vendor_tree()) sorted.push_back(n);
    std::sort(sorted.begin(), sorted.end(), list_order);
    std::vector<Name> newest;
    for (size_t i = 0; i < sorted.size(); ++i)
        if (i + 1 == sorted.size() || !same_series(sorted[i], sorted[i + 1])) newest.push_back(sorted[i]);
    return newest;
}

}  // namespace strata::naming
