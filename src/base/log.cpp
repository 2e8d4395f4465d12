#include "base/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace strata::log {

bool stderr_is_journal() {
    // systemd sets JOURNAL_STREAM=<dev>:<ino> for services whose stderr is the journal.
    const char* env = std::getenv("JOURNAL_STREAM");
    if (!env) return false;
    struct stat st {};
    if (::fstat(2, &st) < 0) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
    return dev == st.st_dev && ino == st.st_ino;
}

void setup(Verbosity verbosity, std::string_view level_name) {
    std::shared_ptr<spdlog::logger> logger;
    if (stderr_is_journal()) {
        logger = std::make_shared<spdlog::logger>(
            "strata", std::make_shared<spdlog::sinks::systemd_sink_mt>("strata"));
        logger->set_pattern("%v");
    } else {
        logger = spdlog::stderr_color_mt("strata");
        logger->set_pattern("%^%l%$: %v");
    }
    spdlog::level::level_enum level = spdlog::level::from_str(std::string(level_name));
    switch (verbosity) {
    case Verbosity::Quiet: level = spdlog::level::err; break;
    case Verbosity::Verbose: level = std::min(level, spdlog::level::debug); break;
    case Verbosity::Trace: level = spdlog::level::trace; break;
    case Verbosity::Normal: break;
    }
    logger->set_level(level);
    spdlog::set_default_logger(logger);
}

}  // namespace strata::log
