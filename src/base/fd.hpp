#pragma once
// File descriptors and directories, "fd first, name second": every filesystem call below the CLI
// is relative to an opened Dir, which also remembers its path for error messages.
#include <sys/stat.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(other.release()) {}
    Fd& operator=(Fd&& other) noexcept;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd();

    int get() const noexcept { return fd_; }
    int release() noexcept;
    explicit operator bool() const noexcept { return fd_ >= 0; }

private:
    int fd_ = -1;
};

class Dir {
public:
    // Opens an existing directory (O_DIRECTORY|O_CLOEXEC); follows symlinks in path.
    static Dir open(const std::filesystem::path& path);
    // Opens an entry of this directory as a directory, without following a final symlink.
    Dir open_dir(std::string_view name) const;
    std::optional<Dir> try_open_dir(std::string_view name) const;
    // Creates a directory entry (mode) if missing, and opens it.
    Dir make_dir(std::string_view name, mode_t mode = 0755) const;
    Fd open_file(std::string_view name, int flags, mode_t mode = 0644) const;

    std::optional<struct stat> stat(std::string_view name) const;  // lstat-like; nullopt if absent
    struct stat stat_self() const;
    std::vector<std::string> entries() const;  // names, without "." and ".."
    void rename(std::string_view from, const Dir& to_dir, std::string_view to, bool no_replace = true) const;
    // Swaps two existing entries in one step (RENAME_EXCHANGE): readers see the old or the new.
    void exchange(std::string_view name, const Dir& other_dir, std::string_view other) const;
    void unlink(std::string_view name) const;
    void remove_dir(std::string_view name) const;
    void sync() const;

    int fd() const noexcept { return fd_.get(); }
    const std::filesystem::path& path() const noexcept { return path_; }
    std::filesystem::path path_of(std::string_view name) const { return path_ / name; }

private:
    Dir(Fd fd, std::filesystem::path path) : fd_(std::move(fd)), path_(std::move(path)) {}
    Fd fd_;
    std::filesystem::path path_;
};

// Writes all of data to fd, retrying short writes and EINTR; errors name `what`.
void write_all(int fd, std::string_view data, std::string_view what);
// Reads up to size bytes (fewer only at end of file); 0 means end of file.
size_t read_full(int fd, char* buffer, size_t size, std::string_view what);

// A file that appears under its name complete or not at all: written to a temporary name in the
// same directory, then commit() does fsync, rename, fsync of the directory. Dropped without
// commit, the temporary is removed.
class AtomicFile {
public:
    AtomicFile(const Dir& dir, std::string_view name, mode_t mode = 0644);
    AtomicFile(AtomicFile&&) = delete;
    ~AtomicFile();
    int fd() const { return fd_.get(); }
    std::string temp_path() const { return dir_->path_of(temp_).string(); }
    void commit();

private:
    const Dir* dir_;
    std::string name_, temp_;
    mode_t mode_;
    Fd fd_;
    bool committed_ = false;
};

// Writes content to dir/name so that readers see the old or the new file, never a part.
void write_file_atomic(const Dir& dir, std::string_view name, std::string_view content, mode_t mode = 0644);
std::string read_file(const Dir& dir, std::string_view name);

}  // namespace strata
