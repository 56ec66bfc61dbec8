#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <mutex>
#include <string>
#include <vector>

namespace modelfs {
namespace {

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kWarn)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};
// Registered secrets. Written only before threads start (RegisterLogSecret's contract).
std::vector<std::string>& Secrets() {
  static std::vector<std::string> s;
  return s;
}
// The log file (LogToFile): where stderr points, its rotation size and the bytes in it. Guarded by
// mu; `on` is read without it to keep the stderr-only path lock-free.
struct LogFile {
  std::mutex mu;
  std::string path;
  uint64_t max_bytes = 0;
  uint64_t bytes = 0;
  std::atomic<bool> on{false};
};
LogFile& TheLogFile() {
  static LogFile f;
  return f;
}
// Bytes others (libfuse, the C library) may write to stderr between two of our lines and before
// a rotation notices them: a few short lines. Part of LogDiskBound, not enforced.
constexpr uint64_t kForeignBytes = 4096;
constexpr uint64_t kDiskPage = 4096;

// Points stderr at `path`, appended; sets *size to what the file already holds.
bool OpenOnStderr(const std::string& path, uint64_t* size) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  struct stat st;
  *size = fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  if (fd != STDERR_FILENO) {
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  return true;
}

// Requires f.mu: FILE -> FILE.1, a new FILE on stderr. On failure the log goes on in the old file
// (it then grows past max_bytes: a full or read-only disk is logged about elsewhere).
void RotateLocked(LogFile& f) {
  if (rename(f.path.c_str(), (f.path + ".1").c_str()) != 0) return;
  uint64_t size = 0;
  if (OpenOnStderr(f.path, &size)) f.bytes = size;
}

// Shortest registered secret: shorter strings would redact ordinary words.
constexpr size_t kMinSecretLen = 8;
// An "hf_" word at least this long after the prefix is taken for a token (real ones have 34).
constexpr size_t kMinHfTokenTail = 16;

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kOff:
      break;
  }
  return "?";
}

bool TokenChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; }
bool UrlEnd(char c) {
  return std::isspace(static_cast<unsigned char>(c)) || c == '"' || c == '\'' || c == '>' || c == ')';
}

// Quotes s for JSON or logfmt (the same escapes serve both): escapes ", \ and control characters.
void AppendQuoted(std::string* out, const std::string& s) {
  out->push_back('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof(b), "\\u%04x", c);
      out->append(b);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
  out->push_back('"');
}

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

void SetLogFormat(LogFormat f) { g_format.store(static_cast<int>(f), std::memory_order_relaxed); }

bool ParseLogFormat(const std::string& name, LogFormat* out) {
  if (name == "text") *out = LogFormat::kText;
  else if (name == "logfmt") *out = LogFormat::kLogfmt;
  else if (name == "json") *out = LogFormat::kJson;
  else return false;
  return true;
}

void RegisterLogSecret(const std::string& secret) {
  if (secret.size() >= kMinSecretLen) Secrets().push_back(secret);
}

std::string RedactSecrets(const std::string& in) {
  std::string s = in;
  for (const std::string& secret : Secrets()) {
    for (size_t p = s.find(secret); p != std::string::npos; p = s.find(secret, p)) {
      s.replace(p, secret.size(), "[redacted]");
    }
  }
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    // URL query strings (signed CDN URLs carry their signature there).
    if (s.compare(i, 7, "http://") == 0 || s.compare(i, 8, "https://") == 0) {
      size_t end = i;
      while (end < s.size() && !UrlEnd(s[end])) end++;
      const size_t q = s.find('?', i);
      if (q != std::string::npos && q < end) {
        out.append(s, i, q - i);
        out.append("?[redacted]");
      } else {
        out.append(s, i, end - i);
      }
      i = end;
      continue;
    }
    // "Bearer <credential>".
    if (s.compare(i, 7, "Bearer ") == 0) {
      size_t end = i + 7;
      while (end < s.size() && !std::isspace(static_cast<unsigned char>(s[end]))) end++;
      out.append("Bearer [redacted]");
      i = end;
      continue;
    }
    // hf_... access tokens, at a word start.
    if (s.compare(i, 3, "hf_") == 0 && (i == 0 || !TokenChar(s[i - 1]))) {
      size_t end = i + 3;
      while (end < s.size() && TokenChar(s[end])) end++;
      if (end - i - 3 >= kMinHfTokenTail) {
        out.append("[redacted]");
        i = end;
        continue;
      }
    }
    out.push_back(s[i++]);
  }
  return out;
}

void LogMessage(LogLevel level, const char* file, int line, const char* fmt, ...) {
  // The message is formatted into a fixed buffer first: a longer message is truncated, never
  // split over two lines. Then it is scrubbed and framed in the chosen format.
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  const std::string clean = RedactSecrets(msg);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[80];  // 24 bytes in practice; room for what -Wformat-truncation assumes
  snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
  const char* base = strrchr(file, '/');
  base = base ? base + 1 : file;
  const std::string src = std::string(base) + ":" + std::to_string(line);
  std::string out;
  switch (static_cast<LogFormat>(g_format.load(std::memory_order_relaxed))) {
    case LogFormat::kJson:
      out = std::string("{\"ts\":\"") + when + "\",\"level\":\"" + LevelName(level) +
            "\",\"src\":\"" + src + "\",\"msg\":";
      AppendQuoted(&out, clean);
      out += "}\n";
      break;
    case LogFormat::kLogfmt:
      out = std::string("ts=") + when + " level=" + LevelName(level) + " src=" + src + " msg=";
      AppendQuoted(&out, clean);
      out += "\n";
      break;
    case LogFormat::kText:
      out = std::string(when) + " " + LevelChar(level) + " " + src + "] " + clean + "\n";
      break;
  }
  if (out.size() > kMaxLogLine) {  // quoting can grow a message: keep LogDiskBound's line bound
    out.resize(kMaxLogLine - 1);
    out.push_back('\n');
  }
  LogFile& lf = TheLogFile();
  if (!lf.on.load(std::memory_order_acquire)) {
    // A single write(2) per line keeps lines whole across threads without a mutex.
    ssize_t w = write(STDERR_FILENO, out.data(), out.size());
    (void)w;
    return;
  }
  // With a log file the write and the size check are one step, so a file never holds more than
  // max_bytes plus one line (LogDiskBound).
  std::lock_guard<std::mutex> l(lf.mu);
  ssize_t w = write(STDERR_FILENO, out.data(), out.size());
  if (w > 0) lf.bytes += static_cast<uint64_t>(w);
  if (lf.max_bytes > 0 && lf.bytes >= lf.max_bytes) RotateLocked(lf);
}

Status LogToFile(const std::string& path, uint64_t max_bytes) {
  LogFile& lf = TheLogFile();
  std::lock_guard<std::mutex> l(lf.mu);
  if (path.empty()) {
    lf.on.store(false, std::memory_order_release);
    return Status::Ok();
  }
  uint64_t size = 0;
  if (!OpenOnStderr(path, &size)) return Status::IoError("open " + path + ": " + strerror(errno));
  lf.path = path;
  lf.max_bytes = max_bytes;
  lf.bytes = size;
  lf.on.store(true, std::memory_order_release);
  if (max_bytes > 0 && size >= max_bytes) RotateLocked(lf);  // a full file from an earlier run
  return Status::Ok();
}

uint64_t LogDiskBound(uint64_t max_bytes) {
  if (max_bytes == 0) return UINT64_MAX;
  // A file is rotated as soon as a line takes it to max_bytes, so it holds at most
  // max_bytes - 1 + one line + what others wrote meanwhile; two such files (FILE and FILE.1).
  const uint64_t file = max_bytes - 1 + kMaxLogLine + kForeignBytes;
  return 2 * ((file + kDiskPage - 1) / kDiskPage * kDiskPage);
}

}  // namespace modelfs
