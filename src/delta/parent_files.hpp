#pragma once
// The parent tree as a delta payload reads it: the files a payload names, opened so that the
// name cannot lead out of the tree, and read ahead of the decoder. Used by payload.cpp on both
// sides (the encoder checks its own candidates, the decoder rebuilds from them).
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "base/fd.hpp"

namespace strata::delta {

// length bytes at offset of a regular file of the tree. The kernel resolves path beneath the
// tree and refuses symlinks and mount crossings on the way, so a payload cannot make the client
// read elsewhere. A file too short for the range is an Error that blames the parent.
std::string read_parent_range(const Dir& tree, const std::string& path, uint64_t offset, uint64_t length);
// A regular file of the tree, opened as read_parent_range opens it, and its size.
std::pair<Fd, uint64_t> open_parent_file(const Dir& tree, const std::string& path);
// A whole regular file of the tree, of at most max_bytes.
std::string read_parent_file(const Dir& tree, const std::string& path, uint64_t max_bytes);

// Reads parent file ranges in a thread of its own, ahead of the decoder: by the time the decoder
// gets to them they are in the page cache, and the disk sees many requests at once instead of one
// cold read after another (a kernel update patches thousands of small modules). Only a hint: a
// range that cannot be opened or read is skipped, the decoder's own read reports the error.
class ParentReadahead {
public:
    explicit ParentReadahead(const Dir& tree);  // keeps a descriptor of its own
    ~ParentReadahead();
    ParentReadahead(const ParentReadahead&) = delete;
    ParentReadahead& operator=(const ParentReadahead&) = delete;

    // The range record number `record` will read; length 0: the whole file.
    void want(uint64_t record, std::string path, uint64_t offset, uint64_t length);
    // The decoder is at `record`: ranges wanted for earlier ones are no longer worth reading.
    void reached(uint64_t record);

private:
    struct Want {
        uint64_t record = 0;
        std::string path;
        uint64_t offset = 0, length = 0;
    };
    void run();

    Fd tree_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Want> queue_;
    uint64_t reached_ = 0;
    bool stopping_ = false;
    std::thread thread_;  // last: starts after the members it uses exist
};

}  // namespace strata::delta
