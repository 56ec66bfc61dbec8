// Tiny leveled logger: one line per message on stderr. Three formats, chosen by tools/ from a flag:
//   text    2024-05-01T12:00:00.123Z W file.cc:42] msg
//   logfmt  ts=2024-05-01T12:00:00.123Z level=warn src=file.cc:42 msg="msg"
//   json    {"ts":"2024-05-01T12:00:00.123Z","level":"warn","src":"file.cc:42","msg":"msg"}
// Thread-safe (one write(2) per line, so concurrent lines never interleave). The minimum level and
// the format are process-wide atomics that tools/ sets from flags; a disabled level costs one
// relaxed load.
//
// Secrets: callers must not pass them (fetch/ strips tokens and signed-URL query strings, see
// fetch/protocol.h StripQuery). As a second line of defence every message is scrubbed before it
// is written: the query string of any http(s) URL becomes "?[redacted]", "Bearer <x>" and
// hf_<token-like> words become "[redacted]", and so does every string registered with
// RegisterLogSecret (the configured token).
#pragma once

#include <string>

namespace modelfs {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

// Process-wide minimum level; messages below it are dropped. Default kWarn (quiet for tests).
void SetLogLevel(LogLevel level);
inline bool LogEnabled(LogLevel level);

// Parses "debug" | "info" | "warn" | "error" | "off" (case-insensitive). False if unknown.
bool ParseLogLevel(const std::string& name, LogLevel* out);

enum class LogFormat { kText = 0, kLogfmt = 1, kJson = 2 };
// Process-wide line format (default kText). Thread-safe.
void SetLogFormat(LogFormat format);
// Parses "text" | "logfmt" | "json". False if unknown.
bool ParseLogFormat(const std::string& name, LogFormat* out);
// Adds a string (at least 8 bytes; shorter ones are ignored as too likely to hit ordinary words)
// that is replaced by "[redacted]" wherever it appears in a message. Call before threads start;
// not safe concurrently with logging.
void RegisterLogSecret(const std::string& secret);
// The scrubbing LogMessage applies (exposed for tests).
std::string RedactSecrets(const std::string& msg);

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
