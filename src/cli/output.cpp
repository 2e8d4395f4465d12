#include "cli/output.hpp"

#include <algorithm>
#include <cstdio>

#include "base/escape.hpp"

namespace strata::cli {
namespace {


nlohmann::json uuid_or_null(const btrfs::Uuid& u) {
    return btrfs::is_null(u) ? nlohmann::json(nullptr) : nlohmann::json(btrfs::format_uuid(u));
}

std::string format(const timespec& ts, const char* pattern) {
    const time_t t = ts.tv_sec;
    tm utc{};
    gmtime_r(&t, &utc);
    char buf[64];
    std::strftime(buf, sizeof buf, pattern, &utc);
    return buf;
}

}  // namespace

void print_table(const Table& table, bool quiet) {
    std::vector<size_t> width(table.header.size(), 0);
    auto measure = [&](const std::vector<std::string>& row) {
        for (size_t i = 0; i < row.size() && i < width.size(); ++i) width[i] = std::max(width[i], row[i].size());
    };
    if (!quiet) measure(table.header);
    for (const auto& r : table.rows) measure(r);
    auto print_row = [&](const std::vector<std::string>& row) {
        std::string line;
        for (size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) line.append(width[i] - row[i].size() + 1, ' ');
        }
        std::printf("%s\n", line.c_str());
    };
    if (!quiet) print_row(table.header);
    for (const auto& r : table.rows) print_row(r);
}

void print_report(const std::vector<std::pair<std::string, std::string>>& fields) {
    size_t width = 0;
    for (const auto& [k, v] : fields) width = std::max(width, k.size());
    for (const auto& [k, v] : fields)
        std::printf("%*s: %s\n", static_cast<int>(width), k.c_str(), v.c_str());
}

void print_json(const nlohmann::json& value) {
    // Names come from the filesystem and may hold any bytes: replace what is not UTF-8.
    std::printf("%s\n", value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

SummaryColumns summary_columns(const pool::Subvolume& s) {
    if (!s.typed) return {"untyped", "-", "-", "-", {}};
    const auto& n = *s.typed;
    auto or_dash = [](std::string_view v) { return v.empty() ? std::string("-") : std::string(v); };
    SummaryColumns c{std::string(naming::kind_to_string(n.kind())), std::string(n.id()), or_dash(n.arch()),
                     or_dash(n.version()), {}};
    // Labels follow the scheme's field names ("vendor-id" -> "Vendor ID") so inspect reads like the name.
    for (const auto& [key, value] : n.fields()) {
        std::string label;
        if (key == "id" || key == "uid" || key == "gid") label = key == "id" ? "ID" : key == "uid" ? "UID" : "GID";
        else if (key == "vendor-id") label = "Vendor ID";
        else {
            label = std::string(key);
            label[0] = static_cast<char>(label[0] - 'a' + 'A');
        }
        c.details.emplace_back(label, std::string(value));
    }
    return c;
}

std::string format_time(const timespec& ts) { return format(ts, "%a %Y-%m-%d %H:%M:%S UTC"); }

std::string format_time_iso(const timespec& ts) { return format(ts, "%Y-%m-%dT%H:%M:%SZ"); }

nlohmann::json subvolume_json(const pool::Subvolume& s) {
    nlohmann::json j;
    j["name"] = s.name;
    nlohmann::json null = nullptr;
    j["kind"] = s.typed ? nlohmann::json(std::string(naming::kind_to_string(s.typed->kind()))) : null;
    if (s.typed) {
        const auto& n = *s.typed;
        j["id"] = n.id();
        auto set_if = [&](const char* key, std::string_view value) {
            if (!value.empty()) j[key] = value;
        };
        set_if("arch", n.arch());
        set_if("version", n.version());
        set_if("runtime", n.runtime_id());
        if (n.kind() == naming::Kind::Root) j["vendor_id"] = n.vendor_id();
        if (n.uid()) j["uid"] = *n.uid();
        if (n.gid()) j["gid"] = *n.gid();
    }
    j["read_only"] = s.info.read_only();
    j["created"] = format_time_iso(s.info.otime);
    j["subvolume_id"] = s.info.id;
    j["parent_id"] = s.info.parent_id;
    j["uuid"] = btrfs::format_uuid(s.info.uuid);
    j["parent_uuid"] = uuid_or_null(s.info.parent_uuid);
    j["received_uuid"] = uuid_or_null(s.info.received_uuid);
    j["generation"] = s.info.generation;
    return j;
}

nlohmann::json deployment_json(const deploy::Deployment& d) {
    return {{"id", d.id},
            {"root", d.root},
            {"usr", d.usr},
            {"version", d.version},
            {"entry_file", d.entry_file},
            {"boot_state", std::string(boot::to_string(d.state))},
            {"tries_left", d.tries_left ? nlohmann::json(*d.tries_left) : nlohmann::json(nullptr)},
            {"default", d.is_default},
            {"booted", d.booted},
            {"pinned", d.pinned},
            {"state_snapshot", d.state_snapshot ? nlohmann::json(*d.state_snapshot) : nlohmann::json(nullptr)}};
}

// The "etc" object of deploy --json and the body of etc diff --json (docs/etc-merge.md).
nlohmann::json etc_report_json(const factory::MergeReport& r, bool all) {
    nlohmann::json j{{"from", r.from},
                     {"to", r.to},
                     {"skipped", r.skipped ? nlohmann::json(*r.skipped) : nlohmann::json(nullptr)}};
    const auto& s = r.summary;
    j["counts"] = {{"unchanged", s.unchanged},
                   {"vendor-changed", s.vendor_changed},
                   {"admin-changed", s.admin_changed},
                   {"conflict", s.conflicts},
                   {"added", s.added},
                   {"removed", s.removed}};
    j["conflicts"] = nlohmann::json::array();
    for (const auto& p : s.conflict_paths) j["conflicts"].push_back("/etc/" + p);
    j["changes"] = nlohmann::json::array();
    for (const auto& c : r.changes)
        if (all || c.verdict != factory::Verdict::Unchanged)
            j["changes"].push_back({{"path", "/etc/" + c.path},
                                    {"verdict", std::string(to_string(c.verdict))},
                                    {"action", std::string(to_string(c.action))}});
    return j;
}

// One line per conflict, as deploy prints them after the merge.
void print_etc_conflicts(const factory::MergeReport& r) {
    for (const auto& c : r.changes) {
        if (c.verdict != factory::Verdict::Conflict) continue;
        const std::string path = escape("/etc/" + c.path);
        if (c.action == factory::Action::WriteNew)
            std::printf("Conflict: '%s' kept as you changed it; the vendor's version is '%s%s'.\n",
                        path.c_str(), path.c_str(), std::string(factory::new_suffix).c_str());
        else
            std::printf("Conflict: '%s' kept as you changed it; the vendor changed or removed it too.\n",
                        path.c_str());
    }
}

}  // namespace strata::cli
