#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>

namespace modelfs {
namespace {

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kWarn)};

char LevelChar(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return 'D';
    case LogLevel::kInfo:
      return 'I';
    case LogLevel::kWarn:
      return 'W';
    case LogLevel::kError:
      return 'E';
    case LogLevel::kOff:
      break;
  }
  return '?';
}

}  // namespace

namespace log_internal {
int MinLevel() { return g_min_level.load(std::memory_order_relaxed); }
}  // namespace log_internal

void SetLogLevel(LogLevel level) { g_min_level.store(static_cast<int>(level), std::memory_order_relaxed); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_min_level.load(std::memory_order_relaxed)); }

bool ParseLogLevel(const std::string& name, LogLevel* out) {
  std::string n;
  for (char c : name) n += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (n == "debug")
    *out = LogLevel::kDebug;
  else if (n == "info")
    *out = LogLevel::kInfo;
  else if (n == "warn" || n == "warning")
    *out = LogLevel::kWarn;
  else if (n == "error")
    *out = LogLevel::kError;
  else if (n == "off" || n == "none")
    *out = LogLevel::kOff;
  else
    return false;
  return true;
}

void LogMessage(LogLevel level, const char* file, int line, const char* fmt, ...) {
  // One fixed buffer per line: a log line longer than this is truncated, never split.
  char buf[2048];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  const char* base = strrchr(file, '/');
  base = base ? base + 1 : file;
  int n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %c %s:%d] ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                   LevelChar(level), base, line);
  if (n < 0) return;
  size_t used = static_cast<size_t>(n) < sizeof(buf) ? static_cast<size_t>(n) : sizeof(buf) - 1;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(buf + used, sizeof(buf) - used, fmt, ap);
  va_end(ap);
  if (m > 0) used += static_cast<size_t>(m);
  if (used > sizeof(buf) - 2) used = sizeof(buf) - 2;
  buf[used++] = '\n';
  // A single write(2) of < PIPE_BUF-ish size keeps lines whole across threads without a mutex.
  ssize_t w = write(STDERR_FILENO, buf, used);
  (void)w;
}

}  // namespace modelfs
