#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>
#include <chrono>

#include "base/ahead.hpp"
#include "base/error.hpp"
#include "base/escape.hpp"
#include "base/fd.hpp"
#include "base/lock.hpp"
#include "base/process.hpp"
#include "base/shared_library.hpp"

#include <unistd.h>

using namespace strata;
using namespace std::chrono_literals;

TEST_CASE("escape keeps UTF-8 and makes everything else printable on one line") {
    struct Case {
        std::string in, out;
    };
    const Case cases[] = {
        {"plain", "plain"},
        {"caf\xc3\xa9", "caf\xc3\xa9"},
        {"a\nb", "a\\nb"},
        {"tab\there", "tab\\there"},
        {"\x1b[31m", "\\x1b[31m"},
        {std::string("nul\0x", 5), "nul\\x00x"},
        {"\xff\xfe", "\\xff\\xfe"},
        {"\xc0\xaf", "\\xc0\\xaf"},          // overlong '/'
        {"\xed\xa0\x80", "\\xed\\xa0\\x80"},  // surrogate
        {"it's", "it\\'s"},
        {"back\\slash", "back\\\\slash"},
        {"\x7f", "\\x7f"},
    };
    for (const auto& c : cases) CHECK(escape(c.in) == c.out);
}

TEST_CASE("is_valid_utf8") {
    CHECK(is_valid_utf8(""));
    CHECK(is_valid_utf8("ascii"));
    CHECK(is_valid_utf8("\xe2\x82\xac"));
    CHECK(is_valid_utf8("\xf0\x9f\x98\x80"));
    CHECK_FALSE(is_valid_utf8("\xe2\x82"));
    CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
    CHECK_FALSE(is_valid_utf8("\x80"));
}

TEST_CASE("errors name the operation, the object and the cause, and gather context") {
    Error e("open", "/x\n", ENOENT);
    CHECK(std::string(e.what()) == "open '/x\\n': No such file or directory");
    CHECK(e.fault() == Fault::NotFound);
    CHECK(e.errnum() == ENOENT);
    e.within("deploy", "root:a:b.c:x86_64");
    CHECK(std::string(e.what()) == "deploy 'root:a:b.c:x86_64': open '/x\\n': No such file or directory");

    CHECK(Error("create", "x", EEXIST).fault() == Fault::Exists);
    CHECK(std::string(Error("", "", "just a reason").what()) == "just a reason");
    try {
        with_context("outer", "o", [] { throw Error("inner", "i", "bad", Fault::InvalidInput); });
    } catch (const Error& caught) {
        CHECK(std::string(caught.what()) == "outer 'o': inner 'i': bad");
        CHECK(caught.fault() == Fault::InvalidInput);
    }
}

TEST_CASE("run_process collects output and status, run_checked reports the last stderr line") {
    auto r = run_process({"sh", "-c", "echo out; echo err >&2; exit 3"});
    CHECK(r.exit_status == 3);
    CHECK(r.out == "out\n");
    CHECK(r.err == "err\n");
    try {
        run_checked({"sh", "-c", "echo first >&2; echo 'the real reason' >&2; exit 1"});
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "run 'sh': the real reason");
    }
    CHECK_THROWS_AS(run_checked({"/nonexistent/program"}), Error);
}

TEST_CASE("a child starts with the caller's signal mask and streams, and a missing program is named") {
    // The parent blocks every signal around starting the child; the program must not inherit that.
    const auto r = run_checked({"sh", "-c", "grep SigBlk /proc/self/status; read line; echo \"[$line]\""});
    CHECK(r.out == "SigBlk:\t0000000000000000\n[]\n");  // stdin is /dev/null
    try {
        run_checked({"strata-no-such-program"});
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "run 'strata-no-such-program': No such file or directory");
    }
    // Children started from several threads at once (the decoder's gzip helpers and btrfs receive).
    std::vector<std::thread> threads;
    std::atomic<int> ok = 0;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&ok, t] {
            for (int i = 0; i < 10; ++i)
                if (run_process({"sh", "-c", "exit " + std::to_string(t + i)}).exit_status == t + i) ++ok;
        });
    for (auto& t : threads) t.join();
    CHECK(ok == 40);
}

TEST_CASE("write_file_atomic replaces content whole and leaves no temporary file") {
    char tmpl[] = "/tmp/strata-unit-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    const Dir d = Dir::open(tmpl);
    write_file_atomic(d, "f", "one", 0600);
    write_file_atomic(d, "f", "two");
    CHECK(read_file(d, "f") == "two");
    CHECK((d.stat("f")->st_mode & 0777) == 0644);
    CHECK(d.entries() == std::vector<std::string>{"f"});

    // The lock excludes a second holder and says why.
    auto held = FileLock::acquire(d, "lock", 0ms, "busy");
    try {
        FileLock::acquire(d, "lock", 50ms, "pool is busy");
        FAIL("acquired twice");
    } catch (const Error& e) {
        CHECK(e.fault() == Fault::Busy);
        CHECK(std::string(e.what()).find("pool is busy") != std::string::npos);
    }
    std::filesystem::remove_all(tmpl);
}

TEST_CASE("a shared library opened at run time gives typed functions, or says what is missing") {
    const SharedLibrary libc("libc.so.6");
    CHECK(libc.function<decltype(::getpid)>("getpid")() == ::getpid());

    struct LibC {
        SharedLibrary library{"libc.so.6"};
        STRATA_IMPORT(library, getppid);
    };
    CHECK(LibC{}.getppid() == ::getppid());

    CHECK_THROWS_WITH_AS(libc.address("strata_no_such_function"),
                         doctest::Contains("load symbol 'libc.so.6:strata_no_such_function'"), Error);
    CHECK_THROWS_WITH_AS(SharedLibrary("libstrata-no-such-library.so.9"),
                         doctest::Contains("load library 'libstrata-no-such-library.so.9'"), Error);
}

TEST_CASE("Ahead hands over a producer's pieces in order, keeps at most its bound waiting, and passes its error on") {
    std::atomic<int> produced = 0;
    {
        Ahead ahead(
            [&]() -> std::optional<std::string> {
                const int n = produced++;
                if (n == 100) return std::nullopt;
                return std::string(10, static_cast<char>('a' + n % 26));
            },
            35);
        // Waiting pieces stop the producer once 35 bytes or more wait: four of ten bytes.
        for (int i = 0; i < 200 && produced < 4; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        CHECK(produced == 4);
        for (int n = 0; n < 100; ++n) CHECK(ahead.take() == std::string(10, static_cast<char>('a' + n % 26)));
        CHECK_FALSE(ahead.take());
        CHECK_FALSE(ahead.take());
    }

    int calls = 0;
    Ahead failing(
        [&]() -> std::optional<std::string> {
            if (++calls == 3) throw Error("read", "/some/file", EIO);
            return std::string("piece");
        },
        1 << 20);
    CHECK(failing.take() == "piece");
    CHECK(failing.take() == "piece");
    try {
        failing.take();
        FAIL("the producer's error was not passed on");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "read '/some/file': Input/output error");
    }
    CHECK_FALSE(failing.take());

    // Destroyed with pieces waiting and the producer blocked on the bound: stops and joins.
    const Ahead abandoned([] { return std::optional<std::string>(std::string(100, 'x')); }, 1000);
}

TEST_CASE("Behind consumes what is fed in order and in batches, holds the feeder at its bound, and passes its error on") {
    std::string consumed;
    std::vector<size_t> batches;
    std::mutex mutex;
    std::condition_variable changed;
    bool blocked = true;
    {
        Behind behind(
            [&](std::string_view batch) {
                std::unique_lock lock(mutex);
                changed.wait(lock, [&] { return !blocked; });
                consumed += batch;
                batches.push_back(batch.size());
            },
            100, 250);
        std::string fed;
        std::atomic<size_t> fed_bytes = 0;
        std::thread feeder([&] {
            for (size_t n = 0; n < 200; ++n) {
                const std::string piece(7 + n % 13, static_cast<char>('a' + n % 26));
                behind.feed(piece);
                fed += piece;
                fed_bytes += piece.size();
            }
            behind.finish();
        });
        // The consumer holds its first batch: the feeder stops once 250 bytes or more wait.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        CHECK(fed_bytes < 500);
        {
            const std::lock_guard lock(mutex);
            blocked = false;
        }
        changed.notify_all();
        feeder.join();
        CHECK(consumed == fed);
        // Batches of at least 100 bytes (a piece completes them), the last one what was left.
        for (size_t i = 0; i + 1 < batches.size(); ++i) CHECK((batches[i] >= 100 && batches[i] < 120));
    }

    int calls = 0;
    Behind failing(
        [&](std::string_view) {
            if (++calls == 2) throw Error("write to", "btrfs receive", EPIPE);
        },
        10, 1000);
    CHECK_THROWS_WITH_AS(
        [&] {
            for (int n = 0; n < 1000; ++n) failing.feed("0123456789");
        }(),
        "write to 'btrfs receive': Broken pipe", Error);
    CHECK_THROWS_WITH_AS(failing.finish(), "write to 'btrfs receive': Broken pipe", Error);
    CHECK(calls == 2);

    // Destroyed without finish(), batches waiting behind a consumer that is slow: joins.
    Behind abandoned([](std::string_view) { std::this_thread::sleep_for(std::chrono::milliseconds(5)); }, 10, 1000);
    for (int n = 0; n < 50; ++n) abandoned.feed("0123456789");
}
