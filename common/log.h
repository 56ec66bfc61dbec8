// Tiny leveled logger: one line per message on stderr. Three formats, chosen by tools/ from a flag:
//   text    2024-05-01T12:00:00.123Z W file.cc:42] msg
//   logfmt  ts=2024-05-01T12:00:00.123Z level=warn src=file.cc:42 msg="msg"
//   json    {"ts":"2024-05-01T12:00:00.123Z","level":"warn","src":"file.cc:42","msg":"msg"}
// Thread-safe (one write(2) per line, so concurrent lines never interleave).
//
// Log file (LogToFile): stderr is pointed at a file, and the file is rotated when a line takes it
// to max_bytes or past: FILE becomes FILE.1 (replacing the previous one) and a new FILE is opened,
// so the log never takes more disk than LogDiskBound(max_bytes) (the cache quota reserves that when
// the log lives in the cache directory). Writes and rotation share one mutex in that mode. The minimum level and
// the format are process-wide atomics that tools/ sets from flags; a disabled level costs one
// relaxed load.
//
// Secrets: callers must not pass them (fetch/ strips tokens and signed-URL query strings, see
// fetch/protocol.h StripQuery). As a second line of defence every message is scrubbed before it
// is written: the query string of any http(s) URL becomes "?[redacted]", "Bearer <x>" and
// hf_<token-like> words become "[redacted]", and so does every string registered with
// RegisterLogSecret (the configured token).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

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

// Sends every later line (and anything else written to stderr: libfuse's messages) to `path`,
// appended, rotated at max_bytes (0: never). Call once, before threads start logging. An error if
// the file cannot be opened (the log stays where it was). An empty path ends rotation (stderr is
// left where it points).
Status LogToFile(const std::string& path, uint64_t max_bytes);
// The most disk space (allocated, in 4 KiB pages) the log file and its one rotated copy can take
// with LogToFile(path, max_bytes): each holds less than max_bytes plus one line (at most
// kMaxLogLine bytes) and a few lines others write to stderr between two of ours.
uint64_t LogDiskBound(uint64_t max_bytes);
// The longest line LogMessage writes: a 2 KiB message, framed and quoted.
constexpr uint64_t kMaxLogLine = 8192;

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
