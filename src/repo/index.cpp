#include "repo/index.hpp"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/escape.hpp"
#include "naming/name.hpp"

namespace strata::repo {
namespace {

using nlohmann::json;

constexpr std::string_view comment_tag = "strata-index";

[[noreturn]] void invalid(const std::string& place, const std::string& reason) {
    throw Error("", "", "invalid index: " + place + ": " + reason, Fault::InvalidInput);
}

std::string in_quotes(std::string_view s) { return "'" + escape(s) + "'"; }

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Payloads sort full first, then by parent in list order, so one index has one rendering.
bool payload_order(const Payload& a, const Payload& b) {
    if (a.parent.has_value() != b.parent.has_value()) return !a.parent.has_value();
    if (a.parent && b.parent && a.parent->name != b.parent->name) {
        const auto na = naming::Name::try_parse(a.parent->name), nb = naming::Name::try_parse(b.parent->name);
        if (na && nb) return naming::list_order(*na, *nb);
        return a.parent->name < b.parent->name;
    }
    if (a.kind != b.kind) return a.kind < b.kind;
    return a.file < b.file;
}

bool tree_order(const Tree& a, const Tree& b) {
    const auto na = naming::Name::try_parse(a.name), nb = naming::Name::try_parse(b.name);
    if (na && nb) return naming::list_order(*na, *nb);
    return a.name < b.name;
}

void normalize(Index& index) {
    for (auto& t : index.trees) std::stable_sort(t.payloads.begin(), t.payloads.end(), payload_order);
    std::stable_sort(index.trees.begin(), index.trees.end(), tree_order);
}

// ---- rendering ----

json parent_json(const std::optional<ParentRef>& parent) {
    if (!parent) return nullptr;
    return json{{"name", parent->name}, {"uuid", parent->uuid}, {"received_uuid", parent->received_uuid}};
}

json payload_json(const Payload& p) {
    json j{{"kind", p.kind},
           {"compression", p.compression},
           {"file", p.file},
           {"parent", parent_json(p.parent)},
           {"size", p.size},
           {"compressed_size", p.compressed_size},
           {"sha256", p.sha256}};
    // Only where used, so indexes of plain send streams keep their spelling.
    if (!p.parts.empty()) {
        json parts = json::array();
        for (const auto& part : p.parts) parts.push_back(json{{"size", part.size}, {"sha256", part.sha256}});
        j["parts"] = std::move(parts);
    }
    if (!p.stream_sha256.empty()) j["stream_sha256"] = p.stream_sha256;
    return j;
}

json tree_json(const Tree& t) {
    json payloads = json::array();
    for (const auto& p : t.payloads) payloads.push_back(payload_json(p));
    return json{{"name", t.name},
                {"uuid", t.uuid},
                {"received_uuid", t.received_uuid},
                {"published", t.published},
                {"changelog", t.changelog},
                {"payloads", std::move(payloads)}};
}

// ---- parsing: every accessor names the place it looks at ----

const json& member(const json& object, const std::string& place, const char* key) {
    const auto it = object.find(key);
    if (it == object.end()) invalid(place, std::string("missing field '") + key + "'");
    return *it;
}

const json& array_at(const json& object, const std::string& place, const char* key) {
    const auto& v = member(object, place, key);
    if (!v.is_array()) invalid(place + "." + key, "not an array");
    return v;
}

std::string string_at(const json& object, const std::string& place, const char* key) {
    const auto& v = member(object, place, key);
    if (!v.is_string()) invalid(place + "." + key, "not a string");
    return v.get<std::string>();
}

uint64_t unsigned_at(const json& object, const std::string& place, const char* key) {
    const auto& v = member(object, place, key);
    if (!v.is_number_unsigned()) invalid(place + "." + key, "not a non-negative integer");
    return v.get<uint64_t>();
}

bool is_uuid(std::string_view s) {
    if (s.size() != 36) return false;
    for (size_t i = 0; i < s.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_lower_hex(s[i])) return false;
    }
    return true;
}

// "2026-11-23T14:05:09Z", optionally with fractional seconds: the UTC form of RFC 3339.
bool is_rfc3339_utc(std::string_view s) {
    constexpr std::string_view shape = "dddd-dd-ddTdd:dd:dd";
    if (s.size() < shape.size() + 1 || s.back() != 'Z') return false;
    for (size_t i = 0; i < shape.size(); ++i)
        if (shape[i] == 'd' ? !is_digit(s[i]) : s[i] != shape[i]) return false;
    const auto rest = s.substr(shape.size(), s.size() - shape.size() - 1);
    if (rest.empty()) return true;
    return rest.size() >= 2 && rest[0] == '.' && std::all_of(rest.begin() + 1, rest.end(), is_digit);
}

std::string uuid_at(const json& object, const std::string& place, const char* key, bool may_be_empty) {
    auto v = string_at(object, place, key);
    if (v.empty() && may_be_empty) return v;
    if (!is_uuid(v)) invalid(place + "." + key, in_quotes(v) + " is not a uuid");
    return v;
}

std::string time_at(const json& object, const std::string& place, const char* key) {
    auto v = string_at(object, place, key);
    if (!is_rfc3339_utc(v)) invalid(place + "." + key, in_quotes(v) + " is not an RFC 3339 UTC time");
    return v;
}

std::string tree_name_at(const json& object, const std::string& place, const char* key) {
    auto v = string_at(object, place, key);
    std::optional<naming::Name> name;
    try {
        name = naming::Name::parse(v);
    } catch (const Error& e) {
        invalid(place + "." + key, e.what());
    }
    if (!name->is_vendor_tree()) invalid(place + "." + key, in_quotes(v) + " is not a vendor tree");
    return v;
}

// A payload file is one plain name under payloads/: clients join it to the repository URL and
// to their download directory, so nothing may climb out or hide.
std::string file_at(const json& object, const std::string& place) {
    auto v = string_at(object, place, "file");
    const std::string prefix = std::string(payload_dir) + "/";
    const std::string_view base = std::string_view(v).substr(std::min(v.size(), prefix.size()));
    const auto safe = [](char c) {
        return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '-' ||
               c == '+' || c == '~' || c == '^' || c == '@' || c == '=';
    };
    if (!v.starts_with(prefix) || base.empty())
        invalid(place + ".file", in_quotes(v) + " is not under " + std::string(payload_dir) + "/");
    if (base.find("..") != std::string_view::npos || base.front() == '.' || !std::all_of(base.begin(), base.end(), safe))
        invalid(place + ".file", in_quotes(v) + " is not a plain file name (letters, digits, . _ - + ~ ^ @ =; no '..')");
    return v;
}

std::string sha256_at(const json& object, const std::string& place) {
    auto v = string_at(object, place, "sha256");
    if (v.size() != 64 || !std::all_of(v.begin(), v.end(), is_lower_hex))
        invalid(place + ".sha256", in_quotes(v) + " is not 64 lowercase hex digits");
    return v;
}

Payload parse_payload(const json& j, const std::string& place) {
    if (!j.is_object()) invalid(place, "not an object");
    Payload p;
    p.kind = string_at(j, place, "kind");
    if (p.kind.empty()) invalid(place + ".kind", "is empty");
    // What a client needs to download and trust any payload, whatever its kind.
    p.file = file_at(j, place);
    p.compressed_size = unsigned_at(j, place, "compressed_size");
    p.sha256 = sha256_at(j, place);
    const bool delta = p.kind == delta_kind;
    const bool known = p.kind == send_stream_kind || delta;
    // A later kind may lack the fields of a send stream; it is kept for clients that know it.
    if (known || j.contains("compression")) {
        p.compression = string_at(j, place, "compression");
        if (known && p.compression != "zstd" && (delta || p.compression != "none"))
            invalid(place + ".compression", in_quotes(p.compression) + (delta ? " is not 'zstd'" : " is not 'zstd' or 'none'"));
    }
    if (j.contains("parts")) {
        const auto& parts = array_at(j, place, "parts");
        uint64_t total = 0;
        for (size_t i = 0; i < parts.size(); ++i) {
            const auto pp = place + ".parts[" + std::to_string(i) + "]";
            if (!parts[i].is_object()) invalid(pp, "not an object");
            Part part{unsigned_at(parts[i], pp, "size"), sha256_at(parts[i], pp)};
            if (part.size == 0) invalid(pp + ".size", "is 0");
            if (part.size > p.compressed_size - total) invalid(place + ".parts", "add up to more than compressed_size");
            total += part.size;
            p.parts.push_back(std::move(part));
        }
        if (total != p.compressed_size) invalid(place + ".parts", "do not add up to compressed_size");
    }
    if (delta) {
        auto& v = p.stream_sha256 = string_at(j, place, "stream_sha256");
        if (v.size() != 64 || !std::all_of(v.begin(), v.end(), is_lower_hex))
            invalid(place + ".stream_sha256", in_quotes(v) + " is not 64 lowercase hex digits");
    }
    if (known || j.contains("size")) p.size = unsigned_at(j, place, "size");
    if (known || j.contains("parent")) {
        const auto& parent = member(j, place, "parent");
        if (!parent.is_null()) {
            const auto pp = place + ".parent";
            if (!parent.is_object()) invalid(pp, "not an object or null");
            p.parent = ParentRef{tree_name_at(parent, pp, "name"), uuid_at(parent, pp, "uuid", false),
                                 uuid_at(parent, pp, "received_uuid", true)};
        }
    }
    if (delta && !p.parent) invalid(place + ".parent", "a strata-delta payload needs a parent");
    return p;
}

Tree parse_tree(const json& j, const std::string& place) {
    if (!j.is_object()) invalid(place, "not an object");
    Tree t;
    t.name = tree_name_at(j, place, "name");
    t.uuid = uuid_at(j, place, "uuid", false);
    t.received_uuid = uuid_at(j, place, "received_uuid", true);
    t.published = time_at(j, place, "published");
    t.changelog = string_at(j, place, "changelog");
    const auto& payloads = array_at(j, place, "payloads");
    for (size_t i = 0; i < payloads.size(); ++i)
        t.payloads.push_back(parse_payload(payloads[i], place + ".payloads[" + std::to_string(i) + "]"));
    bool full = false;
    for (size_t i = 0; i < t.payloads.size(); ++i) {
        const auto& p = t.payloads[i];
        if (p.kind != send_stream_kind && p.kind != delta_kind) continue;
        const auto pi = place + ".payloads[" + std::to_string(i) + "]";
        if (!p.parent && p.kind == send_stream_kind) {
            if (full) invalid(pi, "a second full payload");
            full = true;
        } else {
            if (p.parent->name == t.name) invalid(pi + ".parent", "the tree itself");
            for (size_t k = 0; k < i; ++k)
                if (t.payloads[k].kind == p.kind && t.payloads[k].parent &&
                    t.payloads[k].parent->uuid == p.parent->uuid)
                    invalid(pi + ".parent", "a second payload from parent " + in_quotes(p.parent->name));
        }
    }
    return t;
}

KeyAnnouncement parse_key(const json& j, const std::string& place) {
    if (!j.is_object()) invalid(place, "not an object");
    KeyAnnouncement k{string_at(j, place, "public_key"), string_at(j, place, "signature")};
    const auto base64 = [](char c) {
        return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' || c == '/' || c == '=';
    };
    if (k.public_key.empty() || !std::all_of(k.public_key.begin(), k.public_key.end(), base64))
        invalid(place + ".public_key", "not a base64 public key line");
    if (k.signature.empty()) invalid(place + ".signature", "is empty");
    return k;
}

}  // namespace

std::string render_index(const Index& index) {
    Index sorted = index;
    normalize(sorted);
    json trees = json::array();
    for (const auto& t : sorted.trees) trees.push_back(tree_json(t));
    json keys = json::array();
    for (const auto& k : sorted.keys) keys.push_back(json{{"public_key", k.public_key}, {"signature", k.signature}});
    // nlohmann's default object is a std::map: keys come out sorted, so equal indexes render to
    // equal bytes.
    const json j{{"format", sorted.format},
                 {"serial", sorted.serial},
                 {"generated", sorted.generated},
                 {"trees", std::move(trees)},
                 {"keys", std::move(keys)}};
    try {
        return j.dump(2) + "\n";
    } catch (const json::exception&) {
        // Only free text (changelog) can carry bytes JSON cannot.
        throw Error("render index", "", "text that is not valid UTF-8 (changelog?)", Fault::InvalidInput);
    }
}

Index parse_index(std::string_view text) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::parse_error& e) {
        std::string what = e.what();
        // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." without the tag.
        if (const auto close = what.find("] "); what.starts_with("[json.") && close != std::string::npos)
            what.erase(0, close + 2);
        throw Error("", "", "invalid index: not JSON: " + what, Fault::InvalidInput);
    }
    if (!j.is_object()) invalid("top level", "not an object");
    Index index;
    const auto format = unsigned_at(j, "top level", "format");
    if (format != 1)
        invalid("format", "unsupported format " + std::to_string(format) + " (this strata reads format 1)");
    index.format = 1;
    index.serial = unsigned_at(j, "top level", "serial");
    index.generated = time_at(j, "top level", "generated");
    const auto& trees = array_at(j, "top level", "trees");
    for (size_t i = 0; i < trees.size(); ++i) index.trees.push_back(parse_tree(trees[i], "trees[" + std::to_string(i) + "]"));
    if (const auto it = j.find("keys"); it != j.end()) {
        if (!it->is_array()) invalid("keys", "not an array");
        for (size_t i = 0; i < it->size(); ++i) index.keys.push_back(parse_key((*it)[i], "keys[" + std::to_string(i) + "]"));
    }
    // Whole-index rules: one entry per tree, one owner per file.
    std::vector<std::pair<std::string, std::string>> files;  // file, owner
    for (size_t i = 0; i < index.trees.size(); ++i) {
        const auto& t = index.trees[i];
        for (size_t k = 0; k < i; ++k)
            if (index.trees[k].name == t.name) invalid("trees[" + std::to_string(i) + "]", "a second entry for " + in_quotes(t.name));
        for (const auto& p : t.payloads) {
            const auto it = std::find_if(files.begin(), files.end(), [&](const auto& f) { return f.first == p.file; });
            if (it != files.end())
                invalid("trees[" + std::to_string(i) + "]", "file " + in_quotes(p.file) + " is listed twice");
            files.emplace_back(p.file, t.name);
        }
    }
    normalize(index);
    return index;
}

std::string render_tree(const Tree& tree) {
    Tree sorted = tree;
    std::stable_sort(sorted.payloads.begin(), sorted.payloads.end(), payload_order);
    try {
        return tree_json(sorted).dump(2) + "\n";
    } catch (const json::exception&) {
        throw Error("render index", tree.name, "text that is not valid UTF-8 (changelog?)", Fault::InvalidInput);
    }
}

std::string render_sums(const Index& index) {
    std::vector<std::pair<std::string, std::string>> lines;  // file, digest
    for (const auto& t : index.trees)
        for (const auto& p : t.payloads) lines.emplace_back(p.file, p.sha256);
    std::sort(lines.begin(), lines.end());
    std::string out;
    // Two spaces: sha256sum's text-mode separator, which `sha256sum -c` expects.
    for (const auto& [file, digest] : lines) out += digest + "  " + file + "\n";
    return out;
}

const Tree* find_tree(const Index& index, std::string_view name) {
    const auto it = std::find_if(index.trees.begin(), index.trees.end(), [&](const Tree& t) { return t.name == name; });
    return it == index.trees.end() ? nullptr : &*it;
}

std::string index_trusted_comment(uint64_t serial) {
    return std::string(comment_tag) + " serial=" + std::to_string(serial);
}

std::optional<uint64_t> serial_of_trusted_comment(std::string_view comment) {
    // Tolerates the "trusted comment: " line prefix and later space-separated fields.
    constexpr std::string_view line_prefix = "trusted comment: ";
    if (comment.starts_with(line_prefix)) comment.remove_prefix(line_prefix.size());
    while (!comment.empty() && (comment.back() == '\n' || comment.back() == '\r')) comment.remove_suffix(1);
    std::vector<std::string_view> words;
    while (!comment.empty()) {
        const size_t space = comment.find(' ');
        const auto word = comment.substr(0, space);
        if (!word.empty()) words.push_back(word);
        if (space == std::string_view::npos) break;
        comment.remove_prefix(space + 1);
    }
    if (words.empty() || words.front() != comment_tag) return std::nullopt;
    std::optional<uint64_t> serial;
    for (size_t i = 1; i < words.size(); ++i) {
        constexpr std::string_view key = "serial=";
        if (!words[i].starts_with(key)) continue;
        if (serial) return std::nullopt;  // two serials: ambiguous
        const auto digits = words[i].substr(key.size());
        if (digits.empty() || !std::all_of(digits.begin(), digits.end(), is_digit)) return std::nullopt;
        if (digits.size() > 1 && digits.front() == '0') return std::nullopt;  // one spelling per serial
        uint64_t n = 0;
        const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
        if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
        serial = n;
    }
    return serial;
}

}  // namespace strata::repo
