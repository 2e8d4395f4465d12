#pragma once
// All user-facing rendering in one place: tables, key/value reports and --json.
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "deploy/deployment.hpp"
#include "factory/etc_merge.hpp"
#include "pool/pool.hpp"

namespace strata::cli {

struct Table {
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
};

// Columns padded to their widest cell; the header is left out with `quiet`.
void print_table(const Table& table, bool quiet);
// "Key: value" lines with right-aligned keys, as systemd's status verbs print them.
void print_report(const std::vector<std::pair<std::string, std::string>>& fields);
void print_json(const nlohmann::json& value);

std::string format_time(const timespec& ts);    // "Sun 2026-11-22 15:38:21 UTC"
std::string format_time_iso(const timespec& ts); // "2026-11-22T15:38:21Z" for --json

// The name's fields as list and inspect show them; "-" where a kind has no such field.
struct SummaryColumns {
    std::string kind, id, arch, version;
    std::vector<std::pair<std::string, std::string>> details;  // labelled fields for inspect
};
SummaryColumns summary_columns(const pool::Subvolume& s);

// One JSON shape for a deployment, shared by deploy, status, rollback and set-default.
nlohmann::json deployment_json(const deploy::Deployment& d);

// One JSON shape for a subvolume, shared by list and inspect (docs/json.md).
nlohmann::json subvolume_json(const pool::Subvolume& s);

// The /etc merge report: the "etc" object of deploy --json and the body of etc diff --json
// (docs/etc-merge.md); `all` includes unchanged paths.
nlohmann::json etc_report_json(const factory::MergeReport& r, bool all);
// One line per conflict, as deploy prints them after the merge.
void print_etc_conflicts(const factory::MergeReport& r);

}  // namespace strata::cli
