#pragma once
// Getting repository files over file://, http:// and https:// (libcurl): TLS verification on,
// proxies from the usual environment variables, timeouts, and retries with backoff for
// transient failures. Large files resume: a download continues at the bytes already there
// (HTTP Range; a server that ignores Range makes it start over, said in the result).
// docs/fetch.md has the whole policy.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/progress.hpp"

namespace strata::repo {

struct FetchOptions {
    std::chrono::seconds connect_timeout{30};
    // A transfer slower than 1 byte/s for this long counts as stalled and is retried.
    std::chrono::seconds stall_timeout{60};
    unsigned retries = 4;                           // after the first attempt
    std::chrono::milliseconds first_backoff{500};   // doubled per retry
    std::chrono::milliseconds max_backoff{30000};   // cap of the doubling (and of Retry-After)
    // Called with phase "download": bytes = what the file (or buffer) holds, total = the
    // expected size when known.
    ProgressFn progress;
};

// A small file (index, signature) into memory; more than max_bytes is an error. A retry starts
// the file over: small files are not worth resuming, and the text must come from one response.
std::string fetch_text(const std::string& url, size_t max_bytes, const FetchOptions& options = {});

struct FetchResult {
    uint64_t resumed_from = 0;  // bytes that were there and kept (0 when the server ignored Range)
    uint64_t fetched = 0;       // body bytes transferred now, over all attempts
    unsigned attempts = 0;      // requests made; 0 when the file was complete already
};
// Appends url's content to the file open at fd (O_RDWR), which already holds its first bytes
// (its size); stops at expected_size and fails if the server has more or fewer. Each attempt
// continues at the file's end (the fd need not be O_APPEND). A file that holds expected_size
// bytes already is not requested again; one holding more is refused. Errors name the URL and
// the cause (HTTP status, curl's message).
FetchResult fetch_to_file(const std::string& url, int fd, uint64_t expected_size,
                          const FetchOptions& options = {});

// url + "/" + relative, without doubling slashes.
std::string join_url(std::string_view base, std::string_view relative);

}  // namespace strata::repo
