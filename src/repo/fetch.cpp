#include "repo/fetch.hpp"

#include <curl/curl.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <memory>
#include <optional>
#include <thread>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/shared_library.hpp"

namespace strata::repo {
namespace {

// libcurl, opened on first use (see base/shared_library.hpp), its global state set up once per
// process: a function-local static is initialised exactly once even with concurrent callers, and
// curl_global_init is not thread-safe before 7.84 on its own.
struct LibCurl {
    SharedLibrary library{"libcurl.so.4"};
    STRATA_IMPORT(library, curl_global_init);
    STRATA_IMPORT(library, curl_version_info);
    STRATA_IMPORT(library, curl_easy_init);
    STRATA_IMPORT(library, curl_easy_cleanup);
    STRATA_IMPORT(library, curl_easy_setopt);
    STRATA_IMPORT(library, curl_easy_perform);
    STRATA_IMPORT(library, curl_easy_getinfo);
    STRATA_IMPORT(library, curl_easy_strerror);
    STRATA_IMPORT(library, curl_slist_append);
    STRATA_IMPORT(library, curl_slist_free_all);

    LibCurl() {
        const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (rc != CURLE_OK) throw Error("initialize", "libcurl", curl_easy_strerror(rc));
    }
};

const LibCurl& libcurl() {
    static const LibCurl api;
    return api;
}

struct EasyCleanup {
    void operator()(CURL* easy) const noexcept { libcurl().curl_easy_cleanup(easy); }
};
struct HeaderListFree {
    void operator()(curl_slist* list) const noexcept { libcurl().curl_slist_free_all(list); }
};
using Easy = std::unique_ptr<CURL, EasyCleanup>;
using HeaderList = std::unique_ptr<curl_slist, HeaderListFree>;

// Redirects are capped so a misconfigured server cannot keep a client busy forever.
constexpr long max_redirects = 8;
// What a request may use. A redirect may not lead to file://: a remote server must never make
// strata read local files (curl forbids that by default; this says it where it is relied on).
constexpr const char* allowed_protocols = "http,https,file";
constexpr const char* allowed_redirect_protocols = "http,https";

// One call of fetch_text or fetch_to_file: the easy handle (reused by every attempt, so a retry
// keeps a connection that survived), the destination and the state the callbacks share.
struct Transfer {
    Transfer(const std::string& url_, const FetchOptions& options_) : url(url_), options(options_) {}

    const std::string& url;
    const FetchOptions& options;
    Easy easy;
    HeaderList headers;  // must outlive every perform of easy
    char error_text[CURL_ERROR_SIZE] = {};

    // The destination: text (fetch_text) or fd (fetch_to_file).
    std::string* text = nullptr;
    size_t max_bytes = 0;
    int fd = -1;
    uint64_t expected = 0;

    // This attempt.
    uint64_t start = 0;       // bytes the destination held when it began (the Range start)
    uint64_t received = 0;    // body bytes it delivered
    bool body_started = false;
    bool range_ignored = false;
    std::exception_ptr failure;  // thrown in a callback; curl itself only learns "abort"

    uint64_t total_received = 0;  // over all attempts
    std::optional<uint64_t> last_reported;

    // By the URL the response came from, which a redirect may have changed.
    bool is_http() const {
        const char* scheme = nullptr;
        libcurl().curl_easy_getinfo(easy.get(), CURLINFO_SCHEME, &scheme);
        return scheme && ::strncasecmp(scheme, "http", 4) == 0;
    }
    long status() const {
        long code = 0;
        libcurl().curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &code);
        return code;
    }
};

template <class T>
void set(const Transfer& t, CURLoption option, T value) {
    const CURLcode rc = libcurl().curl_easy_setopt(t.easy.get(), option, value);
    if (rc != CURLE_OK) throw Error("set up transfer of", t.url, libcurl().curl_easy_strerror(rc));
}

// Checks made once per response, before the first body byte is kept: the server answered the
// range that was asked for, and says it has as many bytes as expected. A wrong size fails here,
// before a large download is spent on it.
void begin_body(Transfer& t) {
    t.body_started = true;
    curl_off_t length = -1;
    libcurl().curl_easy_getinfo(t.easy.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    if (t.text) {
        if (length >= 0 && static_cast<uint64_t>(length) > t.max_bytes)
            throw Error("fetch", t.url,
                        "the remote file has " + std::to_string(length) + " bytes, more than the limit of " +
                            std::to_string(t.max_bytes),
                        Fault::InvalidInput);
        return;
    }
    // curl refuses a 200 to a range request on its own (CURLE_RANGE_ERROR); this covers any
    // other answer that is not the requested range.
    if (t.start > 0 && t.is_http() && t.status() != 206) {
        t.range_ignored = true;
        return;
    }
    if (length >= 0 && t.start + static_cast<uint64_t>(length) != t.expected)
        throw Error("fetch", t.url,
                    "the remote file has " + std::to_string(t.start + static_cast<uint64_t>(length)) +
                        " bytes, expected " + std::to_string(t.expected),
                    Fault::InvalidInput);
}

void accept_body(Transfer& t, std::string_view data) {
    if (t.text) {
        if (t.text->size() + data.size() > t.max_bytes)
            throw Error("fetch", t.url, "more than the limit of " + std::to_string(t.max_bytes) + " bytes",
                        Fault::InvalidInput);
        t.text->append(data);
    } else {
        if (t.start + t.received + data.size() > t.expected)
            throw Error("fetch", t.url,
                        "the server sent more than the expected " + std::to_string(t.expected) + " bytes",
                        Fault::InvalidInput);
        write_all(t.fd, data, t.url);
    }
    t.received += data.size();
    t.total_received += data.size();
}

size_t on_body(char* data, size_t size, size_t count, void* user) noexcept {
    auto& t = *static_cast<Transfer*>(user);
    const size_t n = size * count;
    try {
        if (!t.body_started) begin_body(t);
        if (t.range_ignored) return 0;
        accept_body(t, std::string_view(data, n));
        return n;
    } catch (...) {
        // Exceptions must not unwind through libcurl's C frames: keep it, make curl stop
        // (a short count is CURLE_WRITE_ERROR), rethrow once curl_easy_perform returned.
        t.failure = std::current_exception();
        return 0;
    }
}

int on_progress(void* user, curl_off_t download_total, curl_off_t, curl_off_t, curl_off_t) noexcept {
    auto& t = *static_cast<Transfer*>(user);
    if (!t.options.progress) return 0;
    const uint64_t bytes = t.start + t.received;
    // curl calls this many times a second even when nothing arrives; report only news.
    if (t.last_reported == bytes) return 0;
    t.last_reported = bytes;
    std::optional<uint64_t> total;
    if (!t.text) total = t.expected;
    else if (download_total > 0) total = static_cast<uint64_t>(download_total);
    try {
        t.options.progress(Progress{.phase = "download", .bytes = bytes, .total = total});
    } catch (...) {
        t.failure = std::current_exception();
        return 1;
    }
    return 0;
}

void set_up(Transfer& t) {
    t.easy.reset(libcurl().curl_easy_init());
    if (!t.easy) throw Error("fetch", t.url, "cannot create a libcurl handle");
    set(t, CURLOPT_URL, t.url.c_str());
    set(t, CURLOPT_ERRORBUFFER, t.error_text);
    set(t, CURLOPT_PROTOCOLS_STR, allowed_protocols);
    set(t, CURLOPT_REDIR_PROTOCOLS_STR, allowed_redirect_protocols);
    set(t, CURLOPT_FOLLOWLOCATION, 1L);
    set(t, CURLOPT_MAXREDIRS, max_redirects);
    // Never turned off, not even for a remote marked insecure: that only waives signatures.
    set(t, CURLOPT_SSL_VERIFYPEER, 1L);
    set(t, CURLOPT_SSL_VERIFYHOST, 2L);
    // HTTP >= 400 ends the transfer before an error page lands in the file; the status is read
    // back for the message and the retry decision.
    set(t, CURLOPT_FAILONERROR, 1L);
    const std::chrono::milliseconds connect_timeout = t.options.connect_timeout;
    set(t, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout.count()));
    // Stall detection instead of a total timeout: a large stream on a slow line may take hours,
    // a connection that delivers nothing for stall_timeout is dead.
    set(t, CURLOPT_LOW_SPEED_LIMIT, 1L);
    set(t, CURLOPT_LOW_SPEED_TIME, static_cast<long>(std::max(t.options.stall_timeout.count(), 1L)));
    // No signals from curl (its resolver timeout uses SIGALRM otherwise): the library runs in
    // the D-Bus service's threads too.
    set(t, CURLOPT_NOSIGNAL, 1L);
    set(t, CURLOPT_TCP_KEEPALIVE, 1L);
    const std::string agent = std::string("strata libcurl/") + libcurl().curl_version_info(CURLVERSION_NOW)->version;
    set(t, CURLOPT_USERAGENT, agent.c_str());  // curl keeps a copy
    // No CURLOPT_PROXY / CURLOPT_NOPROXY: libcurl then takes http_proxy, https_proxy, ALL_PROXY
    // and no_proxy from the environment, which is what administrators expect.
    // No CURLOPT_ACCEPT_ENCODING: the payload must arrive byte for byte as published (it is
    // compressed already), and Range counts bytes of the unencoded file.
    set(t, CURLOPT_WRITEFUNCTION, on_body);
    set(t, CURLOPT_WRITEDATA, static_cast<void*>(&t));
    set(t, CURLOPT_XFERINFOFUNCTION, on_progress);
    set(t, CURLOPT_XFERINFODATA, static_cast<void*>(&t));
    set(t, CURLOPT_NOPROGRESS, 0L);
}

// Worth another attempt: the network or the server may be fine a moment later. Not: a missing
// or forbidden file, a certificate that does not verify, a protocol that is not allowed.
bool is_transient(CURLcode rc, long status) {
    switch (rc) {
    case CURLE_HTTP_RETURNED_ERROR:
        return status == 408 || status == 429 || (status >= 500 && status <= 599);
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:  // often the network is not up yet (a timer at boot)
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

std::chrono::milliseconds backoff(const Transfer& t, unsigned failures) {
    auto delay = t.options.first_backoff;
    for (unsigned i = 1; i < failures && delay < t.options.max_backoff; ++i) delay *= 2;
    // A server that says when to come back (429, 503) is believed, within the same cap.
    curl_off_t retry_after = 0;
    if (libcurl().curl_easy_getinfo(t.easy.get(), CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK && retry_after > 0)
        delay = std::max<std::chrono::milliseconds>(delay, std::chrono::seconds(retry_after));
    return std::min(delay, t.options.max_backoff);
}

std::string describe(const Transfer& t, CURLcode rc, long status) {
    if (rc == CURLE_HTTP_RETURNED_ERROR) return "the server answered HTTP " + std::to_string(status);
    // curl's own text ("Protocol "file" not supported or disabled in libcurl") hides that a
    // server tried to send us somewhere we refuse to go.
    long redirects = 0;
    const char* last_url = nullptr;
    if (rc == CURLE_UNSUPPORTED_PROTOCOL &&
        libcurl().curl_easy_getinfo(t.easy.get(), CURLINFO_REDIRECT_COUNT, &redirects) == CURLE_OK && redirects > 0 &&
        libcurl().curl_easy_getinfo(t.easy.get(), CURLINFO_EFFECTIVE_URL, &last_url) == CURLE_OK && last_url)
        return std::string("redirected to '") + last_url +
               "', but redirects may only lead to http:// and https://";
    if (t.error_text[0] != '\0') return t.error_text;
    return libcurl().curl_easy_strerror(rc);
}

// Runs attempts until one completes. before_attempt readies the destination and returns the
// offset to resume from (0: the whole file). A server that ignores Range calls on_range_ignored
// and the next attempt starts over; that is no failure, so it costs no retry.
template <class Before, class RangeIgnored>
unsigned run(Transfer& t, Before before_attempt, RangeIgnored on_range_ignored) {
    unsigned attempts = 0, failures = 0;
    for (;;) {
        t.start = before_attempt();
        t.received = 0;
        t.body_started = false;
        t.range_ignored = false;
        t.last_reported.reset();
        t.error_text[0] = '\0';
        set(t, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(t.start));
        ++attempts;
        const CURLcode rc = libcurl().curl_easy_perform(t.easy.get());
        if (t.failure) std::rethrow_exception(std::exchange(t.failure, nullptr));
        if (rc == CURLE_OK && !t.range_ignored) return attempts;
        if (t.range_ignored || rc == CURLE_RANGE_ERROR) {
            if (t.start == 0) throw Error("fetch", t.url, "the server did not send the file from its start");
            spdlog::debug("fetch {}: the server ignores Range, starting over", t.url);
            on_range_ignored();
            continue;
        }
        const long status = t.status();
        std::string why = describe(t, rc, status);
        if (is_transient(rc, status) && failures < t.options.retries) {
            ++failures;
            const auto delay = backoff(t, failures);
            spdlog::debug("fetch {}: {}; retry {} of {} in {} ms, at byte {}", t.url, why, failures,
                          t.options.retries, delay.count(), t.start + t.received);
            std::this_thread::sleep_for(delay);
            continue;
        }
        if (attempts > 1) why += " (gave up after " + std::to_string(attempts) + " attempts)";
        const bool missing = rc == CURLE_HTTP_RETURNED_ERROR && (status == 404 || status == 410);
        throw Error("fetch", t.url, why, missing ? Fault::NotFound : Fault::Failed);
    }
}

uint64_t file_size(int fd, const std::string& url) {
    struct stat st {};
    if (::fstat(fd, &st) < 0) throw_errno("read size of download of", url);
    return static_cast<uint64_t>(st.st_size);
}

// The write position for the next attempt: the end of what is there. Not O_APPEND-dependent.
uint64_t seek_to_end(int fd, const std::string& url) {
    const off_t end = ::lseek(fd, 0, SEEK_END);
    if (end < 0) throw_errno("seek in download of", url);
    return static_cast<uint64_t>(end);
}

}  // namespace

std::string fetch_text(const std::string& url, size_t max_bytes, const FetchOptions& options) {
    std::string text;
    Transfer t(url, options);
    t.text = &text;
    t.max_bytes = max_bytes;
    set_up(t);
    // The index and its signature change in place: a caching proxy must ask the origin, or a
    // client would not see a new version for as long as the proxy likes. (Streams are
    // immutable per name; caching them is welcome.)
    t.headers.reset(libcurl().curl_slist_append(nullptr, "Cache-Control: no-cache"));
    if (!t.headers) throw Error("fetch", url, "cannot build request headers");
    set(t, CURLOPT_HTTPHEADER, t.headers.get());
    run(
        t,
        [&]() -> uint64_t {
            text.clear();
            return 0;
        },
        [] {});
    return text;
}

FetchResult fetch_to_file(const std::string& url, int fd, uint64_t expected_size,
                          const FetchOptions& options) {
    FetchResult result;
    result.resumed_from = file_size(fd, url);
    if (result.resumed_from > expected_size)
        throw Error("fetch", url,
                    "the partial download holds " + std::to_string(result.resumed_from) +
                        " bytes, more than the expected " + std::to_string(expected_size),
                    Fault::InvalidInput);
    // Complete already (e.g. killed between download and verification): nothing to ask for.
    if (result.resumed_from == expected_size && expected_size > 0) return result;

    Transfer t(url, options);
    t.fd = fd;
    t.expected = expected_size;
    set_up(t);
    bool ranges_work = true;
    result.attempts = run(
        t,
        [&]() -> uint64_t {
            if (!ranges_work) {
                // Bytes kept so far cannot be continued: the server only sends whole files.
                if (::ftruncate(fd, 0) < 0) throw_errno("truncate download of", url);
                result.resumed_from = 0;
            }
            return seek_to_end(fd, url);
        },
        [&] { ranges_work = false; });
    result.fetched = t.total_received;
    const uint64_t have = t.start + t.received;
    if (have != expected_size)
        throw Error("fetch", url,
                    "the transfer ended after " + std::to_string(have) + " of " +
                        std::to_string(expected_size) + " bytes",
                    Fault::InvalidInput);
    return result;
}

std::string join_url(std::string_view base, std::string_view relative) {
    while (base.ends_with('/')) base.remove_suffix(1);
    while (relative.starts_with('/')) relative.remove_prefix(1);
    std::string url(base);
    url += '/';
    url += relative;
    return url;
}

}  // namespace strata::repo
