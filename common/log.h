// Tiny leveled logger: one line per message on stderr, "2024-05-01T12:00:00.123Z W file.cc:42] msg".
// Thread-safe (one write(2) per line, so concurrent lines never interleave). The minimum level is a
// process-wide atomic that tools/ sets from flags; everything below it costs one relaxed load.
//
// Never pass secrets: callers strip tokens and signed-URL query strings (see fetch/protocol.h
// StripQuery) before logging.
#pragma once

#include <string>

namespace modelfs {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

// Process-wide minimum level; messages below it are dropped. Default kWarn (quiet for tests).
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
inline bool LogEnabled(LogLevel level);

// Parses "debug" | "info" | "warn" | "error" | "off" (case-insensitive). False if unknown.
bool ParseLogLevel(const std::string& name, LogLevel* out);

// Formats (printf-style) and writes one line. Prefer the MODELFS_LOG macro, which skips argument
// evaluation when the level is disabled.
void LogMessage(LogLevel level, const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));

namespace log_internal {
int MinLevel();  // current minimum as int (relaxed atomic load)
}  // namespace log_internal

inline bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= log_internal::MinLevel(); }

}  // namespace modelfs

// MODELFS_LOG(kInfo, "fetched %zu bytes from %s", n, host.c_str());
#define MODELFS_LOG(level, ...)                                                           \
  do {                                                                                    \
    if (::modelfs::LogEnabled(::modelfs::LogLevel::level))                                \
      ::modelfs::LogMessage(::modelfs::LogLevel::level, __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
