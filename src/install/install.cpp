#include "install/install.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <thread>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/process.hpp"
#include "base/size.hpp"
#include "btrfs/subvolume.hpp"
#include "deploy/deployment.hpp"
#include "deploy/root.hpp"
#include "mount/loop.hpp"
#include "mount/mount.hpp"
#include "naming/name.hpp"
#include "pool/setup.hpp"
#include "vendor/export.hpp"
#include "vendor/import.hpp"

namespace strata::install {
namespace fs = std::filesystem;
namespace {

constexpr uint64_t sector = 512;
constexpr uint64_t alignment = 1ull << 20;  // partitions start on MiB boundaries
constexpr uint64_t gpt_reserve = 1ull << 20;  // primary GPT before, backup GPT after the partitions

struct Target {
    Fd fd;
    bool device = false;
    bool created = false;  // an image file this install made (and removes again on failure)
    uint64_t size = 0;
};

uint64_t device_size(int fd, const fs::path& path) {
    uint64_t bytes = 0;
    check_errno(::ioctl(fd, BLKGETSIZE64, &bytes), "get size of", path.string());
    return bytes;
}

bool all_zero(int fd, uint64_t offset, uint64_t length, const fs::path& path) {
    std::string buffer(length, '\0');
    const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(offset));
    if (n < 0) throw_errno("read", path.string());
    return std::all_of(buffer.begin(), buffer.begin() + n, [](char c) { return c == 0; });
}

// "Empty" as an installer can tell cheaply: no byte set where a partition table or the start of a
// file system would be (the first and the last MiB).
bool looks_empty(const Target& t, const fs::path& path) {
    const uint64_t head = std::min<uint64_t>(t.size, alignment);
    return all_zero(t.fd.get(), 0, head, path) &&
           all_zero(t.fd.get(), t.size - std::min<uint64_t>(t.size, alignment), std::min<uint64_t>(t.size, alignment), path);
}

Target open_target(const InstallOptions& o) {
    Target t;
    struct stat st {};
    if (::stat(o.target.c_str(), &st) != 0) {
        if (errno != ENOENT) throw_errno("stat", o.target.string());
        if (!o.size) throw Error("", "", "--size is required to create a new image file", Fault::InvalidInput);
        t.fd = Fd(::open(o.target.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (!t.fd) throw_errno("create", o.target.string());
        t.created = true;
    } else if (S_ISBLK(st.st_mode)) {
        if (o.size) throw Error("", "", "--size applies to image files; a device has its own size", Fault::InvalidInput);
        t.fd = Fd(::open(o.target.c_str(), O_RDWR | O_EXCL | O_CLOEXEC));
        if (!t.fd) throw_errno("open", o.target.string());
        t.device = true;
        t.size = device_size(t.fd.get(), o.target);
    } else if (S_ISREG(st.st_mode)) {
        t.fd = Fd(::open(o.target.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
        if (!t.fd) throw_errno("open", o.target.string());
        t.size = static_cast<uint64_t>(st.st_size);
    } else {
        throw Error("", "", "not an image file or a block device", Fault::InvalidInput);
    }
    if (!t.created && t.size > 0 && !o.force && !looks_empty(t, o.target))
        throw Error("", "", "the target is not empty (a partition table or file system?); --force overwrites it",
                    Fault::Exists);
    if (o.size && !t.device) {
        check_errno(::ftruncate(t.fd.get(), static_cast<off_t>(*o.size)), "resize", o.target.string());
        t.size = *o.size;
    }
    return t;
}

struct Layout {
    uint64_t esp_offset = 0, esp_size = 0, pool_offset = 0, pool_size = 0;
};

Layout plan_layout(uint64_t disk_size, uint64_t esp_size) {
    if (esp_size < min_esp_size || esp_size % alignment != 0)
        throw Error("", "", "--esp-size must be a whole number of MiB, at least " + format_size(min_esp_size),
                    Fault::InvalidInput);
    Layout l;
    l.esp_offset = gpt_reserve;
    l.esp_size = esp_size;
    l.pool_offset = l.esp_offset + l.esp_size;
    const uint64_t end = disk_size > gpt_reserve ? (disk_size - gpt_reserve) / alignment * alignment : 0;
    if (end < l.pool_offset + pool::min_pool_size)
        throw Error("", "",
                    "the target is too small: " + format_size(disk_size) + " holds no ESP of " + format_size(esp_size) +
                        " and a pool of " + format_size(pool::min_pool_size) + " (plus 2 MiB for the GPT)",
                    Fault::InvalidInput);
    l.pool_size = end - l.pool_offset;
    return l;
}

void wipe(const Target& t, const fs::path& path) {
    const std::string zeros(alignment, '\0');
    for (const uint64_t at : {uint64_t{0}, t.size - alignment}) {
        const ssize_t n = ::pwrite(t.fd.get(), zeros.data(), zeros.size(), static_cast<off_t>(at));
        if (n != static_cast<ssize_t>(zeros.size())) throw_errno("wipe partition table of", path.string());
    }
    check_errno(::fsync(t.fd.get()), "sync", path.string());
}

// The GPT partition type the Discoverable Partitions Specification gives the root file system of
// an architecture (sgdisk's short codes), so systemd-gpt-auto-generator recognises the pool.
std::string root_type_code(std::string_view arch) {
    if (arch == "x86_64") return "8304";
    if (arch == "aarch64") return "8305";
    return "8300";
}

std::string mtools_image(const fs::path& target, uint64_t offset) {
    return target.string() + "@@" + std::to_string(offset);
}

// FAT32 needs at least 65525 clusters (mkfs.vfat only warns, and mtools then takes it for
// FAT16 and fails), so small ESPs get small clusters: the largest power of two that leaves twice
// the minimum.
void make_esp(const fs::path& target, const Layout& l) {
    uint64_t per_cluster = 1;
    while (per_cluster < 64 && l.esp_size / sector / (per_cluster * 2) >= 2 * 65525) per_cluster *= 2;
    run_checked({"mkfs.vfat", "-F", "32", "-S", std::to_string(sector), "-s", std::to_string(per_cluster), "-n", "ESP",
                 "--offset=" + std::to_string(l.esp_offset / sector), target.string(),
                 std::to_string(l.esp_size / 1024)});
}

// mtools refuses images whose geometry it finds odd unless told not to check; mkfs.vfat made it.
void copy_into_esp(const fs::path& target, const Layout& l, const fs::path& staging) {
    for (const auto& entry : fs::directory_iterator(staging))
        run_checked({"env", "MTOOLS_SKIP_CHECK=1", "mcopy", "-s", "-p", "-Q", "-i", mtools_image(target, l.esp_offset),
                     entry.path().string(), "::/"});
}

void write_gpt(const fs::path& target, const Layout& l, std::string_view arch) {
    // One sgdisk call per partition: several commands with -q silently wrote nothing in a trial.
    auto range = [](uint64_t offset, uint64_t size) {
        return std::to_string(offset / sector) + ":" + std::to_string((offset + size) / sector - 1);
    };
    run_checked({"sgdisk", "-n", "1:" + range(l.esp_offset, l.esp_size), "-t", "1:ef00", "-c", "1:ESP", target.string()});
    run_checked({"sgdisk", "-n", "2:" + range(l.pool_offset, l.pool_size), "-t", "2:" + root_type_code(arch), "-c",
                 "2:strata", target.string()});
}

// A private directory, removed with what is in it; never a mount point when it goes (the mount
// guards inside it are destroyed first).
struct WorkDir {
    fs::path path;
    explicit WorkDir(const fs::path& base) {
        fs::create_directories(base);
        std::string tmpl = (base / "install.XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw_errno("create work directory in", base.string());
        path = tmpl;
    }
    WorkDir(const WorkDir&) = delete;
    WorkDir& operator=(const WorkDir&) = delete;
    ~WorkDir() {
        std::error_code ignored;
        if (!mount::find_mount(path / "pool")) fs::remove_all(path, ignored);
    }
};

// The usr tree from another pool: export into a pipe on one thread, import from it on this one.
void copy_usr(const pool::Pool& from, const pool::Pool& to, const pool::Lock& lock, const naming::Name& usr) {
    int fds[2];
    check_errno(::pipe2(fds, O_CLOEXEC), "create pipe", "");
    Fd reader(fds[0]);
    Fd writer(fds[1]);
    std::exception_ptr export_failure;
    std::thread exporter([&] {
        // A failed import closes the pipe: the export then gets EPIPE, not a SIGPIPE for the process.
        sigset_t pipe_signal;
        sigemptyset(&pipe_signal);
        sigaddset(&pipe_signal, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
        try {
            vendor::export_stream(from, usr.str(), {}, writer.get());
        } catch (...) {
            export_failure = std::current_exception();
        }
        writer = Fd();
    });
    std::exception_ptr import_failure;
    try {
        vendor::import_stream(to, lock, usr, "/proc/self/fd/" + std::to_string(reader.get()));
    } catch (...) {
        import_failure = std::current_exception();
    }
    reader = Fd();
    exporter.join();
    if (export_failure) std::rethrow_exception(export_failure);  // the cause of a truncated import
    if (import_failure) std::rethrow_exception(import_failure);
}

naming::Name root_name(const InstallOptions& o, const naming::Name& usr) {
    if (o.root.find(':') == std::string::npos) return naming::Name::root(o.root, usr.vendor_id(), usr.arch());
    auto name = naming::Name::parse(o.root);
    if (name.kind() != naming::Kind::Root || name.vendor_id() != usr.vendor_id() || name.arch() != usr.arch())
        throw Error("", "", "'" + o.root + "' is not a root instance of " + std::string(usr.vendor_id()) + " for " +
                                std::string(usr.arch()),
                    Fault::InvalidInput);
    return name;
}

void add_boot_loader(const InstallOptions& o, const Dir& esp) {
    const std::string loader = with_context("read boot loader", o.boot_loader.string(), [&] {
        const Dir dir = Dir::open(o.boot_loader.parent_path());
        return read_file(dir, o.boot_loader.filename().string());
    });
    // The removable-media path is what firmware without boot entries (a fresh VM, a new disk) runs.
    write_file_atomic(esp.make_dir("EFI").make_dir("BOOT"), "BOOTX64.EFI", loader);
    write_file_atomic(esp.make_dir("EFI").make_dir("systemd"), "systemd-bootx64.efi", loader);
    // Tells boot loaders that loader/entries holds Boot Loader Specification Type #1 entries.
    write_file_atomic(esp.make_dir("loader"), "entries.srel", "type1\n");
}

}  // namespace

InstallReport install(const InstallOptions& o) {
    return with_context("install to", o.target.string(), [&] {
        const auto usr = naming::Name::parse(o.usr);
        if (usr.kind() != naming::Kind::Usr) throw Error("", "", "'" + o.usr + "' is not a usr tree", Fault::InvalidInput);
        const auto root = root_name(o, usr);
        if (!o.from_stream) {
            if (!o.from_pool) throw Error("", "", "no pool to take '" + o.usr + "' from", Fault::InvalidInput);
            if (!o.from_pool->find(usr.str()))
                throw Error("find", usr.str(), "no such subvolume in the pool", Fault::NotFound);
        } else if (!fs::exists(*o.from_stream)) {
            throw Error("open", o.from_stream->string(), ENOENT, Fault::NotFound);
        }
        if (!fs::exists(o.boot_loader))
            throw Error("find boot loader", o.boot_loader.string(), "missing (install systemd-boot-efi)", Fault::NotFound);

        Target t = open_target(o);
        try {
            const Layout l = plan_layout(t.size, o.esp_size);
            wipe(t, o.target);
            make_esp(o.target, l);

            const WorkDir work(o.work_base);
            const fs::path esp_staging = work.path / "esp";
            fs::create_directory(esp_staging);
            const fs::path mountpoint = work.path / "pool";
            fs::create_directory(mountpoint);

            std::optional<mount::LoopDevice> loop =
                mount::LoopDevice::attach(o.target, {.offset = l.pool_offset, .size_limit = l.pool_size});
            run_checked({"mkfs.btrfs", "-q", "-f", "-L", "strata", loop->device().string()});
            InstallReport report;
            {
                mount::mount(loop->device(), mountpoint, "btrfs");
                mount::MountGuard unmount(mountpoint);
                {
                    const auto pool = pool::Pool::open(mountpoint);
                    const auto lock = pool.lock(std::chrono::seconds(0));
                    if (o.from_stream) vendor::import_stream(pool, lock, usr, *o.from_stream);
                    else copy_usr(*o.from_pool, pool, lock, usr);
                    deploy::create_root(pool, lock, root);

                    deploy::BootTarget boot(Dir::open(esp_staging));
                    boot.tries = o.tries;
                    boot.kernel_args = o.global_kernel_args;
                    boot.efivars = work.path / "no-efivars";  // never this machine's EFI variables
                    boot.cmdline = "/dev/null";               // nothing on the target is booted
                    const auto d = deploy::deploy(pool, lock, boot, root, std::string(usr.version()),
                                                  o.kernel_args.empty() ? std::nullopt : std::optional(o.kernel_args));
                    report = {d.usr, d.root, d.id, d.entry_file, btrfs::format_uuid(btrfs::filesystem_uuid(pool.top())),
                              l.esp_offset, l.esp_size, l.pool_offset, l.pool_size};
                    check_errno(::syncfs(pool.top().fd()), "sync", mountpoint.string());
                }  // the pool is closed before it is unmounted
                mount::umount(mountpoint);
                unmount.release();
            }
            loop.reset();
            add_boot_loader(o, Dir::open(esp_staging));
            copy_into_esp(o.target, l, esp_staging);
            write_gpt(o.target, l, usr.arch());
            check_errno(::fsync(t.fd.get()), "sync", o.target.string());
            return report;
        } catch (...) {
            if (t.created) ::unlink(o.target.c_str());
            throw;
        }
    });
}

}  // namespace strata::install
