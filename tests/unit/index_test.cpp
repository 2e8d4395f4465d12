// The repository index: rendering is deterministic and round-trips, parsing is strict and says
// where an index is wrong, and the signature's trusted comment carries the serial.
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "repo/index.hpp"
#include "support/errors.hpp"

using namespace strata;
using namespace strata::repo;

namespace {

const std::string digest_a(64, 'a'), digest_b(64, 'b'), digest_c(64, 'c');
const std::string uuid1 = "0f0e0d0c-0b0a-0908-0706-050403020100";
const std::string uuid2 = "1f0e0d0c-0b0a-0908-0706-050403020100";
const std::string uuid3 = "2f0e0d0c-0b0a-0908-0706-050403020100";

Payload full(const std::string& file, const std::string& digest) {
    return {std::string(send_stream_kind), "zstd", "payloads/" + file, std::nullopt, 1000, 100, digest, {}, ""};
}

Payload delta(const std::string& file, const std::string& parent, const std::string& parent_uuid) {
    return {std::string(send_stream_kind), "zstd", "payloads/" + file, ParentRef{parent, parent_uuid, ""}, 50, 5, digest_c, {}, ""};
}

Index sample() {
    Index index;
    index.serial = 7;
    index.generated = "2026-11-23T14:05:09Z";
    // Deliberately out of order: 10 is newer than 9, and runtime sorts after usr.
    Tree t10{"usr:org.example.Demo:x86_64:10", uuid2, "", "2026-11-23T14:00:00Z", "fixes\nand \"quotes\"", {}};
    t10.payloads.push_back(delta("usr_org.example.Demo_x86_64_10.from-9.zst", "usr:org.example.Demo:x86_64:9", uuid1));
    t10.payloads.push_back(full("usr_org.example.Demo_x86_64_10.full.zst", digest_b));
    Tree rt{"runtime:org.example.Rt:aarch64:1", uuid3, uuid1, "2026-11-23T13:00:00Z", "", {}};
    rt.payloads.push_back(full("runtime_org.example.Rt_aarch64_1.full.zst", digest_a));
    Tree t9{"usr:org.example.Demo:x86_64:9", uuid1, "", "2026-11-22T14:00:00Z", "", {}};
    t9.payloads.push_back(full("usr_org.example.Demo_x86_64_9.full.zst", digest_a));
    index.trees = {t10, rt, t9};
    index.keys.push_back({"RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3", "untrusted comment: x\nsig\n"});
    return index;
}

// The sample rendered, with one edit applied to its JSON.
std::string edited(const std::function<void(nlohmann::json&)>& edit) {
    auto j = nlohmann::json::parse(render_index(sample()));
    edit(j);
    return j.dump();
}

std::string parse_error(const std::string& text) {
    return test::error_of([&] { parse_index(text); });
}

}  // namespace

TEST_CASE("render_index sorts keys and trees and round-trips through parse_index") {
    const auto text = render_index(sample());
    CHECK(text.back() == '\n');
    // Object keys sorted: "format" < "generated" < "keys" < "serial" < "trees".
    CHECK(text.find("\"format\"") < text.find("\"generated\""));
    CHECK(text.find("\"keys\"") < text.find("\"serial\""));
    CHECK(text.find("\"serial\"") < text.find("\"trees\""));
    // Trees in list order (usr before runtime, 9 before 10), full payload first.
    const auto at9 = text.find("\"usr:org.example.Demo:x86_64:9\"");
    const auto at10 = text.find("\"usr:org.example.Demo:x86_64:10\"");
    const auto atrt = text.find("\"runtime:org.example.Rt:aarch64:1\"");
    CHECK(at9 < at10);
    CHECK(at10 < atrt);
    CHECK(text.find("x86_64_10.full.zst") < text.find("x86_64_10.from-9.zst"));

    const auto parsed = parse_index(text);
    CHECK(parsed.serial == 7);
    CHECK(parsed.format == 1);
    REQUIRE(parsed.trees.size() == 3);
    CHECK(parsed.trees[0].name == "usr:org.example.Demo:x86_64:9");
    CHECK(parsed.trees[1].changelog == "fixes\nand \"quotes\"");
    REQUIRE(parsed.trees[1].payloads.size() == 2);
    CHECK(!parsed.trees[1].payloads[0].parent);
    REQUIRE(parsed.trees[1].payloads[1].parent);
    CHECK(parsed.trees[1].payloads[1].parent->uuid == uuid1);
    CHECK(parsed.trees[1].payloads[1].size == 50);
    CHECK(parsed.trees[1].payloads[1].compressed_size == 5);
    CHECK(parsed.trees[2].received_uuid == uuid1);
    REQUIRE(parsed.keys.size() == 1);
    CHECK(parsed.keys[0].signature == "untrusted comment: x\nsig\n");
    // Equal indexes, equal bytes.
    CHECK(render_index(parsed) == text);
    CHECK(find_tree(parsed, "usr:org.example.Demo:x86_64:10") == &parsed.trees[1]);
    CHECK(find_tree(parsed, "usr:org.example.Demo:x86_64:11") == nullptr);
}

TEST_CASE("an empty index renders and parses") {
    Index index;
    index.generated = "2026-11-23T14:05:09Z";
    const auto parsed = parse_index(render_index(index));
    CHECK(parsed.trees.empty());
    CHECK(parsed.keys.empty());
    CHECK(render_sums(parsed).empty());
}

TEST_CASE("render_sums lists every payload as sha256sum does sorted by file") {
    CHECK(render_sums(sample()) ==
          digest_a + "  payloads/runtime_org.example.Rt_aarch64_1.full.zst\n" +  //
              digest_c + "  payloads/usr_org.example.Demo_x86_64_10.from-9.zst\n" +  //
              digest_b + "  payloads/usr_org.example.Demo_x86_64_10.full.zst\n" +  //
              digest_a + "  payloads/usr_org.example.Demo_x86_64_9.full.zst\n");
}

TEST_CASE("parse_index names the place of what is wrong") {
    CHECK(parse_error("{") .starts_with("invalid index: not JSON: "));
    CHECK(parse_error("[]") == "invalid index: top level: not an object");
    CHECK(parse_error(edited([](auto& j) { j["format"] = 2; })) ==
          "invalid index: format: unsupported format 2 (this strata reads format 1)");
    CHECK(parse_error(edited([](auto& j) { j.erase("serial"); })) == "invalid index: top level: missing field 'serial'");
    CHECK(parse_error(edited([](auto& j) { j["serial"] = -1; })) == "invalid index: top level.serial: not a non-negative integer");
    CHECK(parse_error(edited([](auto& j) { j["generated"] = "yesterday"; })) ==
          "invalid index: top level.generated: 'yesterday' is not an RFC 3339 UTC time");
    CHECK(parse_error(edited([](auto& j) { j["trees"][0]["name"] = "root:a:org.example.Demo:x86_64"; })) ==
          "invalid index: trees[0].name: 'root:a:org.example.Demo:x86_64' is not a vendor tree");
    CHECK(parse_error(edited([](auto& j) { j["trees"][0]["name"] = "usr:org.example.Demo:x86:1"; }))
              .starts_with("invalid index: trees[0].name: invalid name 'usr:org.example.Demo:x86:1': field 'arch': "
                           "unknown architecture 'x86'"));
    CHECK(parse_error(edited([](auto& j) { j["trees"][0]["uuid"] = "0F0E0D0C-0B0A-0908-0706-050403020100"; })) ==
          "invalid index: trees[0].uuid: '0F0E0D0C-0B0A-0908-0706-050403020100' is not a uuid");
    CHECK(parse_error(edited([](auto& j) { j["trees"][0].erase("changelog"); })) ==
          "invalid index: trees[0]: missing field 'changelog'");
    CHECK(parse_error(edited([](auto& j) { j["trees"][0]["payloads"][0]["file"] = "payloads/../index.json"; })) ==
          "invalid index: trees[0].payloads[0].file: 'payloads/../index.json' is not a plain file name (letters, "
          "digits, . _ - + ~ ^ @ =; no '..')");
    CHECK(parse_error(edited([](auto& j) { j["trees"][0]["payloads"][0]["file"] = "/etc/passwd"; })) ==
          "invalid index: trees[0].payloads[0].file: '/etc/passwd' is not under payloads/");
    CHECK(parse_error(edited([](auto& j) { j["trees"][0]["payloads"][0]["file"] = "payloads/a/b"; })).find(
              "is not a plain file name") != std::string::npos);
    CHECK(parse_error(edited([](auto& j) { j["trees"][0]["payloads"][0]["file"] = "payloads/"; })).find(
              "is not under payloads/") != std::string::npos);
    CHECK(parse_error(edited([](auto& j) { j["trees"][0]["payloads"][0]["sha256"] = std::string(63, 'a'); })) ==
          "invalid index: trees[0].payloads[0].sha256: '" + std::string(63, 'a') + "' is not 64 lowercase hex digits");
    CHECK(parse_error(edited([](auto& j) { j["trees"][0]["payloads"][0]["compression"] = "gzip"; })) ==
          "invalid index: trees[0].payloads[0].compression: 'gzip' is not 'zstd' or 'none'");
    CHECK(parse_error(edited([](auto& j) { j["trees"][1]["payloads"][1]["parent"]["uuid"] = "x"; })) ==
          "invalid index: trees[1].payloads[1].parent.uuid: 'x' is not a uuid");
    CHECK(parse_error(edited([](auto& j) { j["trees"][1]["payloads"][1]["parent"] = nullptr; })) ==
          "invalid index: trees[1].payloads[1]: a second full payload");
    CHECK(parse_error(edited([](auto& j) { j["trees"][2]["name"] = j["trees"][0]["name"]; })) ==
          "invalid index: trees[2]: a second entry for 'usr:org.example.Demo:x86_64:9'");
    CHECK(parse_error(edited([](auto& j) { j["trees"][1]["payloads"][0]["file"] = j["trees"][0]["payloads"][0]["file"]; })) ==
          "invalid index: trees[1]: file 'payloads/usr_org.example.Demo_x86_64_9.full.zst' is listed twice");
    CHECK(parse_error(edited([](auto& j) { j["keys"][0]["public_key"] = "not base64!"; })) ==
          "invalid index: keys[0].public_key: not a base64 public key line");
}

TEST_CASE("unknown payload kinds and unknown members are kept or ignored") {
    const auto text = edited([](auto& j) {
        j["mirror_hint"] = "later addition";
        j["trees"][0]["payloads"].push_back(
            {{"kind", "ostree-delta"}, {"file", "payloads/x.delta"}, {"compressed_size", 9}, {"sha256", std::string(64, 'd')}});
    });
    const auto parsed = parse_index(text);
    REQUIRE(parsed.trees[0].payloads.size() == 2);
    const auto& other = parsed.trees[0].payloads[1];
    CHECK(other.kind == "ostree-delta");
    CHECK(other.compressed_size == 9);
    CHECK(!other.parent);
}

TEST_CASE("a strata-delta payload with parts round-trips and is checked") {
    Index index = sample();
    Payload d{std::string(delta_kind), "zstd", "payloads/usr_org.example.Demo_x86_64_10.from-9.sdelta.zst",
              ParentRef{"usr:org.example.Demo:x86_64:9", uuid1, ""}, 50, 3, digest_a, {{2, digest_b}, {1, digest_c}}, digest_b};
    index.trees[0].payloads.push_back(d);
    const auto text = render_index(index);
    const auto parsed = parse_index(text);
    CHECK(render_index(parsed) == text);
    const auto& tree = *find_tree(parsed, "usr:org.example.Demo:x86_64:10");
    const auto it = std::find_if(tree.payloads.begin(), tree.payloads.end(), [](const Payload& p) { return p.kind == delta_kind; });
    REQUIRE(it != tree.payloads.end());
    CHECK(it->parts == d.parts);
    CHECK(it->stream_sha256 == digest_b);
    // Plain payloads keep their spelling: no parts, no stream digest.
    CHECK(nlohmann::json::parse(text)["trees"][0]["payloads"][0].contains("parts") == false);

    const auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
        auto j = nlohmann::json::parse(text);
        for (auto& t : j["trees"])
            for (auto& p : t["payloads"])
                if (p["kind"] == "strata-delta") edit(p);
        return parse_error(j.dump());
    };
    CHECK(with([](auto& p) { p["parts"][0]["size"] = 5; }) == "invalid index: trees[1].payloads[2].parts: add up to more than compressed_size");
    CHECK(with([](auto& p) { p["parts"][1]["size"] = 0; }) == "invalid index: trees[1].payloads[2].parts[1].size: is 0");
    CHECK(with([](auto& p) { p["parts"].erase(1); }) == "invalid index: trees[1].payloads[2].parts: do not add up to compressed_size");
    CHECK(with([](auto& p) { p["parts"][0]["sha256"] = "x"; }) ==
          "invalid index: trees[1].payloads[2].parts[0].sha256: 'x' is not 64 lowercase hex digits");
    CHECK(with([](auto& p) { p.erase("stream_sha256"); }) == "invalid index: trees[1].payloads[2]: missing field 'stream_sha256'");
    CHECK(with([](auto& p) { p["compression"] = "none"; }) == "invalid index: trees[1].payloads[2].compression: 'none' is not 'zstd'");
    CHECK(with([](auto& p) { p["parent"] = nullptr; }) == "invalid index: trees[1].payloads[2].parent: a strata-delta payload needs a parent");
}

TEST_CASE("the trusted comment carries the serial") {
    CHECK(index_trusted_comment(7) == "strata-index serial=7");
    CHECK(serial_of_trusted_comment(index_trusted_comment(7)) == 7u);
    CHECK(serial_of_trusted_comment(index_trusted_comment(18446744073709551615u)) == 18446744073709551615u);
    CHECK(serial_of_trusted_comment("trusted comment: strata-index serial=12") == 12u);
    CHECK(serial_of_trusted_comment("strata-index generated=2026-11-23T14:05:09Z serial=3") == 3u);
    CHECK(!serial_of_trusted_comment("timestamp:1234 file:index.json"));
    CHECK(!serial_of_trusted_comment("strata-index"));
    CHECK(!serial_of_trusted_comment("strata-index serial="));
    CHECK(!serial_of_trusted_comment("strata-index serial=07"));
    CHECK(!serial_of_trusted_comment("strata-index serial=-1"));
    CHECK(!serial_of_trusted_comment("strata-index serial=1 serial=2"));
    CHECK(!serial_of_trusted_comment("strata-index serial=18446744073709551616"));
    CHECK(!serial_of_trusted_comment("other serial=1"));
}
