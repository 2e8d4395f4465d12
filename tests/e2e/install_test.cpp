// strata install on image files: the layout firmware and systemd-boot need, the pool inside it,
// and bad input that must leave the target as it was.
#include <fstream>

#include "e2e/e2e.hpp"
#include "mount/loop.hpp"
#include "mount/mount.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string usr1 = "usr:org.example.Demo:x86_64:1";
const std::string root = "root:web:org.example.Demo:x86_64";
const fs::path boot_loader = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
constexpr uint64_t esp_offset = 1ull << 20;

void require_ok(const ProcessResult& r) { REQUIRE_MESSAGE(r.exit_status == 0, r.err); }

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string checked_output(const std::vector<std::string>& argv) {
    auto r = run_process(argv);
    const std::string failure = argv.front() + ": " + r.err;
    REQUIRE_MESSAGE(r.exit_status == 0, failure);
    return r.out;
}

// A file of the ESP inside the image, read with mtools (this kernel cannot mount vfat).
std::string esp_file(const fs::path& image, const std::string& path) {
    return checked_output({"env", "MTOOLS_SKIP_CHECK=1", "mtype", "-i", image.string() + "@@" + std::to_string(esp_offset),
                           "::" + path});
}

// A source pool holding usr1 with a fake kernel, and a work directory for images.
struct World {
    test::ScratchPool scratch;
    test::TempDir work;
    fs::path mnt = scratch.mountpoint();
    fs::path tree = work.path() / "tree";
    World() {
        fs::create_directories(tree / "lib/modules/6.1.0-test");
        std::ofstream(tree / "lib/os-release") << "NAME=Demo\nPRETTY_NAME=\"Demo OS 1\"\n";
        std::ofstream(tree / "lib/modules/6.1.0-test/vmlinuz") << "kernel 1\n";
        std::ofstream(tree / "lib/modules/6.1.0-test/initrd.img") << "initrd 1\n";
        require_ok(test::strata_on(mnt, {"import", usr1, "--from-dir", tree.string()}));
    }
    ProcessResult install(const fs::path& image, std::vector<std::string> more) const {
        std::vector<std::string> args = {"--config", "/dev/null", "install", "--target", image.string()};
        args.insert(args.end(), more.begin(), more.end());
        return test::strata_on(mnt, args);
    }
};

}  // namespace

TEST_CASE("install lays out GPT, an ESP with systemd-boot and the entry, and a pool with the deployment") {
    test::require_root_and_btrfs();
    REQUIRE_MESSAGE(fs::exists(boot_loader), "systemd-boot-efi is not installed");
    World w;
    const auto image = w.work.path() / "disk.img";
    auto r = w.install(image, {"--size", "1G", "--esp-size", "64M", "--usr", usr1, "--root", "web", "--kernel-arg",
                               "console=ttyS0", "--json"});
    require_ok(r);
    const auto report = nlohmann::json::parse(r.out);
    CHECK(report["root"] == root);
    CHECK(report["esp"]["offset"] == esp_offset);
    CHECK(report["esp"]["size"] == 64ull << 20);
    const uint64_t pool_offset = report["pool"]["offset"];
    const uint64_t pool_size = report["pool"]["size"];
    CHECK(pool_offset == esp_offset + (64ull << 20));

    // The partition table: an ESP and an x86-64 root partition (Discoverable Partitions
    // Specification type), exactly where the file systems were written.
    const auto esp_info = checked_output({"sgdisk", "-i", "1", image.string()});
    CHECK(esp_info.find("C12A7328-F81F-11D2-BA4B-00A0C93EC93B") != std::string::npos);
    CHECK(esp_info.find("First sector: 2048 ") != std::string::npos);
    const auto pool_info = checked_output({"sgdisk", "-i", "2", image.string()});
    CHECK(pool_info.find("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709") != std::string::npos);
    CHECK(pool_info.find("First sector: " + std::to_string(pool_offset / 512) + " ") != std::string::npos);

    // The ESP: systemd-boot where firmware looks, the loader files, the kernel, the entry.
    CHECK(esp_file(image, "/EFI/BOOT/BOOTX64.EFI") == slurp(boot_loader));
    CHECK(esp_file(image, "/EFI/systemd/systemd-bootx64.efi") == slurp(boot_loader));
    CHECK(esp_file(image, "/loader/entries.srel") == "type1\n");
    CHECK(esp_file(image, "/loader/loader.conf").find("default org.example.Demo+web+*+x86_64[.+]*") != std::string::npos);
    CHECK(esp_file(image, "/org.example.Demo/1/linux") == "kernel 1\n");
    CHECK(esp_file(image, "/org.example.Demo/1/initrd") == "initrd 1\n");
    const auto entry = esp_file(image, "/loader/entries/org.example.Demo+web+1+x86_64+3.conf");
    const std::string uuid = report["pool_uuid"];
    CHECK(entry.find("options root=UUID=" + uuid + " rootflags=subvol=" + root + " mount.usrflags=ro,subvol=" + usr1 +
                     " rw console=ttyS0") != std::string::npos);
    CHECK(entry.find("linux /org.example.Demo/1/linux\n") != std::string::npos);

    // The pool: found at its offset, holding the usr tree read-only and the root instance.
    {
        auto loop = mount::LoopDevice::attach(image, {.read_only = true, .offset = pool_offset, .size_limit = pool_size});
        test::TempDir at;
        mount::mount(loop.device(), at.path(), "btrfs", "ro");
        mount::MountGuard unmount(at.path());
        const auto listed = test::list_json(at.path());
        REQUIRE(listed.size() == 2);
        CHECK(listed[0]["name"] == usr1);
        CHECK(listed[0]["read_only"] == true);
        CHECK(listed[1]["name"] == root);
        CHECK(fs::is_symlink(at.path() / root / "bin"));
        CHECK(slurp(at.path() / usr1 / "lib/modules/6.1.0-test/vmlinuz") == "kernel 1\n");
    }

    // Again from a send stream, over the installed image: refused without --force, then done.
    const auto stream = w.work.path() / "usr1.stream";
    require_ok(test::strata_on(w.mnt, {"export", usr1, "-o", stream.string()}));
    const auto before = slurp(image);
    r = w.install(image, {"--usr", usr1, "--from-stream", stream.string(), "--root", "db", "--esp-size", "64M"});
    test::check_one_line_error(r, 4, "install to '" + image.string() +
                                         "': the target is not empty (a partition table or file system?); --force overwrites it");
    CHECK(slurp(image) == before);
    require_ok(w.install(image, {"--usr", usr1, "--from-stream", stream.string(), "--root", "db", "--esp-size", "64M",
                                 "--force"}));
    CHECK(esp_file(image, "/loader/entries/org.example.Demo+db+1+x86_64+3.conf").find("rootflags=subvol=root:db:") !=
          std::string::npos);
    // The work directory (mount point, ESP staging) is gone.
    bool work_left = false;
    if (fs::exists("/run/strata"))
        for (const auto& e : fs::directory_iterator("/run/strata"))
            work_left = work_left || e.path().filename().string().starts_with("install.");
    CHECK_FALSE(work_left);
}

TEST_CASE("install refuses bad input with one line, and creates or changes nothing") {
    test::require_root_and_btrfs();
    World w;
    const auto image = w.work.path() / "new.img";
    const std::string prefix = "install to '" + image.string() + "': ";
    auto refused = [&](std::vector<std::string> args, int status, const std::string& message) {
        CAPTURE(message);
        test::check_one_line_error(w.install(image, std::move(args)), status, prefix + message);
        CHECK(!fs::exists(image));
    };
    refused({"--size", "1G", "--usr", "usr:org.example.Demo:x86_64:9", "--root", "web"}, 3,
            "find 'usr:org.example.Demo:x86_64:9': no such subvolume in the pool");
    refused({"--usr", usr1, "--root", "web"}, 2, "--size is required to create a new image file");
    refused({"--size", "150M", "--esp-size", "64M", "--usr", usr1, "--root", "web"}, 2,
            "the target is too small: 150M holds no ESP of 64M and a pool of 128M (plus 2 MiB for the GPT)");
    refused({"--size", "1G", "--esp-size", "10M", "--usr", usr1, "--root", "web"}, 2,
            "--esp-size must be a whole number of MiB, at least 64M");
    refused({"--size", "1G", "--usr", usr1, "--root", "root:web:org.other.Os:x86_64"}, 2,
            "'root:web:org.other.Os:x86_64' is not a root instance of org.example.Demo for x86_64");
    refused({"--size", "1G", "--usr", usr1, "--root", "web", "--from-stream", (w.work.path() / "none").string()}, 3,
            "open '" + (w.work.path() / "none").string() + "': No such file or directory");

    // A file with data in it is not overwritten without --force, and stays as it was.
    const auto used = w.work.path() / "used.img";
    std::ofstream(used) << "precious data\n";
    fs::resize_file(used, 512ull << 20);
    const auto before = slurp(used);
    test::check_one_line_error(w.install(used, {"--usr", usr1, "--root", "web"}), 4,
                               "install to '" + used.string() +
                                   "': the target is not empty (a partition table or file system?); --force overwrites it");
    CHECK(slurp(used) == before);
}
