#include "tools/cmd_download.h"
#include "common/file_util.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "cache/hash.h"
#include "common/log.h"
#include "tools/engine.h"

namespace modelfs::cli {
namespace {

// Copy buffer: one cache chunk, so each store Read maps to one aligned chunk and the store's
// sequential prefetch sees a plain sequential reader.
constexpr size_t kCopyBytes = kChunkSize;
// The progress line is redrawn at most this often (10 Hz), so a fast cached copy is not slowed by
// terminal writes.
constexpr auto kProgressInterval = std::chrono::milliseconds(100);
// Suffix of a file being written; it is renamed to its real name only once verified.
constexpr const char* kPartialSuffix = ".modelfs-partial";

// Options forwarded to ParseMount (same meaning as for `modelfs mount`).
const std::vector<std::string> kForwarded = {"--endpoint",      "--token-file",    "--cache-dir",
                                             "--cache-size",    "--fetch-threads", "--connect-timeout",
                                             "--stall-timeout", "--retries",       "--log-level",
                                             "--log-format"};

// RAII fd.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// Hashes a local file as the hub does; "" if it cannot be read or its size is not `size`.
std::string HashLocalFile(const std::string& path, HashKind kind, uint64_t size) {
  Fd f(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (f.fd < 0 || fstat(f.fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != size) return "";
  FileHasher h(kind, size);
  std::vector<char> buf(kCopyBytes);
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(f.fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return "";
    }
    if (n == 0) break;
    h.Update(buf.data(), static_cast<size_t>(n));
    total += static_cast<uint64_t>(n);
  }
  return total == size ? h.FinishHex() : "";
}

std::string HumanBytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    u++;
  }
  char out[32];
  snprintf(out, sizeof(out), u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return out;
}

// A one-line progress bar on stderr, drawn only when stderr is a terminal.
class Progress {
 public:
  Progress(bool enabled, uint64_t total) : enabled_(enabled), total_(total) {}
  void Add(uint64_t n, const std::string& file) {
    done_ += n;
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < kProgressInterval && done_ < total_) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double pct = total_ ? 100.0 * done_ / total_ : 100.0;
    constexpr int kWidth = 30;  // bar cells
    const int fill = static_cast<int>(pct * kWidth / 100);
    std::string bar(fill, '#');
    bar.resize(kWidth, '.');
    std::string name = file.size() > 40 ? "..." + file.substr(file.size() - 37) : file;
    fprintf(stderr, "\r[%s] %3.0f%% %s / %s  %s/s  %-40s", bar.c_str(), pct,
            HumanBytes(done_).c_str(), HumanBytes(total_).c_str(),
            HumanBytes(secs > 0 ? done_ / secs : 0).c_str(), name.c_str());
    fflush(stderr);
  }
  void Finish() {
    if (enabled_) fprintf(stderr, "\r%*s\r", 110, "");  // clear the line before the summary
  }

 private:
  bool enabled_;
  uint64_t total_;
  uint64_t done_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_{};
};

// Copies one file through the store into dest (via dest + kPartialSuffix) and verifies what was
// written. OK only if the file now at dest has the hub's hash.
Status CopyAndVerify(DiskBlobStore& store, const BlobRef& ref, const std::string& dest,
                     Progress* progress) {
  const std::string tmp = dest + kPartialSuffix;
  {
    Fd out(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (out.fd < 0) return Status::IoError("cannot create " + tmp + ": " + strerror(errno));
    store.OpenBlob(ref);
    std::vector<char> buf(kCopyBytes);
    Status s = Status::Ok();
    for (uint64_t off = 0; off < ref.size && s.ok();) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), ref.size - off));
      size_t n = 0;
      s = store.Read(ref, off, want, buf.data(), &n);
      if (s.ok() && n != want) s = Status::IoError("short read from the cache");
      for (size_t w = 0; s.ok() && w < n;) {
        ssize_t k = write(out.fd, buf.data() + w, n - w);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) s = Status::IoError("cannot write " + tmp + ": " + strerror(errno));
        else w += static_cast<size_t>(k);
      }
      off += n;
      if (s.ok()) progress->Add(n, ref.path);
    }
    store.CloseBlob(ref);
    if (s.ok() && fsync(out.fd) != 0) s = Status::IoError("fsync " + tmp + ": " + strerror(errno));
    if (!s.ok()) return s;
  }
  // Verify what is on disk now, not what passed through memory.
  if (HashLocalFile(tmp, ref.hash_kind, ref.size) != ref.hash) {
    unlink(tmp.c_str());
    return Status::Corruption("hash mismatch after writing " + ref.path);
  }
  if (rename(tmp.c_str(), dest.c_str()) != 0) {
    return Status::IoError("cannot rename " + tmp + ": " + strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

const std::vector<OptionSpec>& DownloadOptionTable() {
  static const std::vector<OptionSpec> kTable = CommandOptionTable(
      {
          {"--local-dir", nullptr, nullptr, "DIR", "",
           "Directory to write the files into (created if needed). Required."},
          {"--include", nullptr, nullptr, "GLOB", "everything",
           "Download only files matching GLOB (repeatable; '*' also matches '/')."},
          {"--exclude", nullptr, nullptr, "GLOB", "nothing",
           "Skip files matching GLOB (repeatable); wins over --include."},
          {"--format", nullptr, nullptr, "FORMAT", "text", "Summary as 'text' or 'json'."},
          {"--quiet", "-q", nullptr, nullptr, "off", "No progress bar, even on a terminal."},
      },
      kForwarded);
  return kTable;
}

std::string DownloadHelp() {
  std::string out =
      "Usage: modelfs download [OPTIONS] ORG/NAME[@REV] --local-dir DIR\n"
      "       modelfs download [OPTIONS] datasets/ORG/NAME[@REV] --local-dir DIR\n\n"
      "Writes a verified copy of the repo at REV (default branch if absent) into DIR, reading\n"
      "through the modelfs block cache: files already in DIR with the right hash are kept, and a\n"
      "run that was interrupted resumes from the cache. A progress bar is drawn on a terminal.\n\n"
      "Options:\n";
  out += FormatOptionTable(DownloadOptionTable());
  out +=
      "\nExit codes: 0 every selected file is in DIR and verified; 1 a file failed, the repo or\n"
      "revision could not be resolved, or no file matched the globs; 2 usage error.\n";
  return out;
}

bool SelectedByGlobs(const std::string& path, const std::vector<std::string>& include,
                     const std::vector<std::string>& exclude) {
  auto matches = [&](std::string pattern) {
    if (!pattern.empty() && pattern.back() == '/') pattern += "*";
    return fnmatch(pattern.c_str(), path.c_str(), 0) == 0;
  };
  bool in = include.empty();
  for (const auto& g : include) in = in || matches(g);
  if (!in) return false;
  for (const auto& g : exclude) {
    if (matches(g)) return false;
  }
  return true;
}

Status ParseDownload(const std::vector<std::string>& args, const Environment& env, DownloadConfig* cfg,
                     bool* help) {
  *help = false;
  Result<ParsedArgs> parsed = ParseArgs(args, DownloadOptionTable(), "modelfs download");
  if (!parsed.ok()) return parsed.status();
  const ParsedArgs& p = parsed.value();
  if (p.Has("--help")) {
    *help = true;
    return Status::Ok();
  }
  auto all = [&](const char* flag) {
    auto it = p.values.find(flag);
    return it == p.values.end() ? std::vector<std::string>{} : it->second;
  };
  cfg->include = all("--include");
  cfg->exclude = all("--exclude");
  cfg->quiet = p.Has("--quiet");
  const std::string format = p.Last("--format") ? *p.Last("--format") : "text";
  if (format != "text" && format != "json") {
    return Status::InvalidArgument("--format must be text or json, not '" + format + "'");
  }
  cfg->json = format == "json";
  if (p.positional.size() != 1) {
    return Status::InvalidArgument("expected one ORG/NAME[@REV] (see modelfs download --help)");
  }
  if (const std::string* dir = p.Last("--local-dir")) cfg->local_dir = *dir;
  if (cfg->local_dir.empty()) return Status::InvalidArgument("--local-dir DIR is required");
  Result<RepoId> repo = ParseRepoArg(p.positional[0], &cfg->rev);
  if (!repo.ok()) return repo.status();
  cfg->repo = *repo;
  // The mount options among them mean what they mean for a mount: ParseMount reads them.
  std::vector<std::string> forwarded = ForwardedMountArgs(p, kForwarded, env);
  forwarded.push_back("-f");                  // no daemon-only defaults (log file)
  forwarded.push_back(cfg->local_dir);        // ParseMount wants a mount point; unused here
  bool mount_help = false;
  return ParseMount(forwarded, env, &cfg->base, &mount_help);
}

int RunDownload(const std::vector<std::string>& args) {
  DownloadConfig cfg;
  bool help = false;
  Status s = ParseDownload(args, Environment::Process(), &cfg, &help);
  if (help) {
    fputs(DownloadHelp().c_str(), stdout);
    return 0;
  }
  if (!s.ok()) {
    fprintf(stderr, "modelfs download: %s\n", s.message().c_str());
    return 2;
  }
  LogLevel level = LogLevel::kWarn;
  ParseLogLevel(cfg.base.log_level, &level);  // validated by ParseMount
  SetLogLevel(level);
  LogFormat format = LogFormat::kText;
  ParseLogFormat(cfg.base.log_format, &format);  // validated by ParseMount
  SetLogFormat(format);
  RegisterLogSecret(cfg.base.fetch.token);
  const auto start = std::chrono::steady_clock::now();
  s = MkdirP(cfg.base.cache.dir, 0700);
  if (s.ok()) s = MkdirP(cfg.local_dir, 0755);
  if (!s.ok()) {
    fprintf(stderr, "modelfs download: %s\n", s.message().c_str());
    return 1;
  }
  auto engine = OpenEngine(cfg.base.fetch, cfg.base.cache);
  if (!engine.ok()) {
    fprintf(stderr, "modelfs download: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  Engine& e = **engine;
  const std::string shown = (cfg.repo.type == "model" ? "" : cfg.repo.ApiType() + "/") +
                            cfg.repo.Id() + (cfg.rev.empty() ? "" : "@" + cfg.rev);
  Result<std::string> commit = e.hub->ResolveRevision(cfg.repo, cfg.rev);
  if (!commit.ok()) {
    fprintf(stderr, "modelfs download: %s: %s\n", shown.c_str(), commit.status().ToString().c_str());
    return 1;
  }
  Result<std::vector<FileEntry>> tree = e.hub->ListTree(cfg.repo, *commit);
  if (!tree.ok()) {
    fprintf(stderr, "modelfs download: %s: %s\n", shown.c_str(), tree.status().ToString().c_str());
    return 1;
  }
  std::vector<FileEntry> files;
  uint64_t total = 0;
  for (const FileEntry& f : *tree) {
    if (f.is_dir || !SelectedByGlobs(f.path, cfg.include, cfg.exclude)) continue;
    files.push_back(f);
    total += f.size;
  }
  if (files.empty()) {
    fprintf(stderr, "modelfs download: no file of %s matches the --include/--exclude globs\n",
            shown.c_str());
    return 1;
  }

  const CacheStats before = e.store->Stats();
  Progress progress(!cfg.quiet && isatty(STDERR_FILENO), total);
  int downloaded = 0, kept = 0;
  uint64_t downloaded_bytes = 0;
  std::map<std::string, std::string> failed;  // path -> reason
  for (const FileEntry& f : files) {
    const BlobRef ref = BlobRef::For(cfg.repo, *commit, f);
    const std::string dest = cfg.local_dir + "/" + f.path;
    if (HashLocalFile(dest, ref.hash_kind, ref.size) == ref.hash) {  // done by an earlier run
      kept++;
      progress.Add(f.size, f.path);
      continue;
    }
    const size_t slash = dest.rfind('/');
    Status st = MkdirP(dest.substr(0, slash), 0755);
    if (st.ok()) st = CopyAndVerify(*e.store, ref, dest, &progress);
    if (st.ok()) {
      downloaded++;
      downloaded_bytes += f.size;
    } else {
      failed[f.path] = st.ToString();
      MODELFS_LOG(kWarn, "%s: %s", f.path.c_str(), st.ToString().c_str());
    }
  }
  progress.Finish();
  const CacheStats after = e.store->Stats();
  const uint64_t network = after.fetched_bytes - before.fetched_bytes;
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const bool all_ok = failed.empty();

  if (cfg.json) {
    nlohmann::json j = {{"repo", cfg.repo.Id()},
                        {"type", cfg.repo.type},
                        {"revision", cfg.rev.empty() ? "(default)" : cfg.rev},
                        {"commit", *commit},
                        {"local_dir", cfg.local_dir},
                        {"files", files.size()},
                        {"bytes", total},
                        {"downloaded", downloaded},
                        {"downloaded_bytes", downloaded_bytes},
                        {"already_present", kept},
                        {"network_bytes", network},
                        {"seconds", secs},
                        {"failed", failed},
                        {"verified", all_ok}};
    printf("%s\n", j.dump().c_str());
  } else {
    printf("%s at commit %s -> %s\n", shown.c_str(), commit->c_str(), cfg.local_dir.c_str());
    printf("  %zu files, %s: %d written (%s, %s from the network), %d already present\n",
           files.size(), HumanBytes(total).c_str(), downloaded, HumanBytes(downloaded_bytes).c_str(),
           HumanBytes(network).c_str(), kept);
    for (const auto& [path, why] : failed) printf("  FAILED %s: %s\n", path.c_str(), why.c_str());
    printf("  %s in %.1f s\n",
           all_ok ? "every file verified (SHA-256 or git blob id)"
                  : (std::to_string(failed.size()) + " file(s) NOT verified").c_str(),
           secs);
  }
  return all_ok ? 0 : 1;
}

}  // namespace modelfs::cli
