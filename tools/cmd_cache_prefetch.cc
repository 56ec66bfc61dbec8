// `modelfs prefetch` and `modelfs unpin` (contracts in tools/cmd_cache.h). Prefetch reads each
// selected file once through DiskBlobStore in chunk-sized sequential reads, so the store's own
// prefetch streams it over several connections and verifies it when complete; nothing is written
// outside the cache.
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cache/pins.h"
#include "common/log.h"
#include "tools/cmd_cache.h"
#include "tools/cmd_download.h"
#include "tools/engine.h"
#include "tools/options.h"

namespace modelfs::cli {
namespace {

// Progress redraw interval on a terminal (10 Hz).
constexpr auto kRedraw = std::chrono::milliseconds(100);

std::string Mib(uint64_t b) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f MiB", b / 1048576.0);
  return buf;
}

// The `modelfs mount` options prefetch forwards and that mean something without a mount.
const std::vector<std::string> kForwarded = {
    "--endpoint",      "--token-file",    "--cache-dir",    "--cache-size",   "--cache-min-free",
    "--offline",       "--revision-ttl",  "--fetch-threads", "--connect-timeout",
    "--stall-timeout", "--retries",       "--mirror-retry", "--ca-file",      "--tls-min-version",
    "--log-level",     "--log-format"};

const std::vector<OptionSpec>& PrefetchOptionTable() {
  static const std::vector<OptionSpec> kTable = CommandOptionTable(
      {
          {"--include", nullptr, nullptr, "GLOB", "everything",
           "Prefetch only files matching GLOB (repeatable; '*' also matches '/')."},
          {"--exclude", nullptr, nullptr, "GLOB", "nothing",
           "Skip files matching GLOB (repeatable); wins over --include."},
          {"--pin", nullptr, nullptr, nullptr, "off",
           "Pin the selected files first: a mount never evicts them (release with 'modelfs unpin')."},
          // Half by default, so that unpinned reads always have room.
          {"--pin-share", nullptr, nullptr, "PERCENT", "50%",
           "Refuse the pin if all pins together would take more than this share of the cache quota."},
          {"--quiet", nullptr, nullptr, nullptr, "off", "No progress line, even on a terminal."},
          {"--format", nullptr, nullptr, "FORMAT", "text", "Summary as 'text' or 'json'."},
      },
      kForwarded);
  return kTable;
}

std::string PrefetchHelp() {
  return "Usage: modelfs prefetch [OPTIONS] ORG/NAME[@REV]\n"
         "       modelfs prefetch [OPTIONS] datasets/ORG/NAME[@REV]\n\n"
         "Fills the cache with the selected files of the repo at REV (default branch if absent),\n"
         "through the same stack as a mount, and verifies each. A progress line is drawn on a\n"
         "terminal.\n\nOptions:\n" +
         FormatOptionTable(PrefetchOptionTable()) +
         "\nExit codes: 0 every selected file is cached and verified; 1 the repo or revision could\n"
         "not be resolved, no file matched, the pin was refused, or a file failed; 2 usage error.\n";
}

}  // namespace

int RunPrefetch(const std::vector<std::string>& args) {
  Result<ParsedArgs> parsed = ParseArgs(args, PrefetchOptionTable(), "modelfs prefetch");
  if (parsed.ok() && parsed->Has("--help")) {
    fputs(PrefetchHelp().c_str(), stdout);
    return 0;
  }
  Status usage = parsed.status();
  std::vector<std::string> forwarded, positional, include, exclude;
  bool pin = false, quiet = false, json = false;
  double share = 0;
  if (parsed.ok()) {
    const ParsedArgs& p = parsed.value();
    positional = p.positional;
    if (auto it = p.values.find("--include"); it != p.values.end()) include = it->second;
    if (auto it = p.values.find("--exclude"); it != p.values.end()) exclude = it->second;
    pin = p.Has("--pin");
    quiet = p.Has("--quiet");
    json = p.Last("--format") && *p.Last("--format") == "json";
    const std::string* v = p.Last("--pin-share");
    auto pct = ParsePercent(v ? *v : FindOption(PrefetchOptionTable(), "--pin-share")->default_text);
    if (pct.ok()) share = pct.value();
    else usage = Status::InvalidArgument("--pin-share: " + pct.status().message());
    // The mount options among them mean what they mean for a mount: ParseMount reads them.
    forwarded = ForwardedMountArgs(p, kForwarded, Environment::Process());
  }
  std::string rev;
  Result<RepoId> repo = positional.size() == 1 ? ParseRepoArg(positional[0], &rev)
                                               : Result<RepoId>(Status::InvalidArgument("expected one ORG/NAME[@REV]"));
  MountConfig cfg;
  bool help = false;
  forwarded.insert(forwarded.end(), {"-f", "/"});  // ParseMount wants a mount point; unused
  Status s = !usage.ok() ? usage
             : repo.ok() ? ParseMount(forwarded, Environment::Process(), &cfg, &help)
                         : repo.status();
  if (!s.ok()) {
    fprintf(stderr, "modelfs prefetch: %s\nUsage: modelfs prefetch ORG/NAME[@REV] [--include GLOB] "
            "[--exclude GLOB] [--pin] [--pin-share PERCENT] [--quiet] [--format json] [mount options]\n",
            s.message().c_str());
    return 2;
  }
  LogLevel level;
  if (ParseLogLevel(cfg.log_level, &level)) SetLogLevel(level);
  mkdir(cfg.cache.dir.c_str(), 0700);
  auto engine = OpenEngine(cfg.fetch, cfg.cache);
  if (!engine.ok()) {
    fprintf(stderr, "modelfs prefetch: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  Engine& e = **engine;
  auto commit = e.hub->ResolveRevision(*repo, rev);
  if (!commit.ok()) {
    fprintf(stderr, "modelfs prefetch: %s: %s\n", positional[0].c_str(), commit.status().ToString().c_str());
    return 1;
  }
  auto tree = e.hub->ListTree(*repo, *commit);
  if (!tree.ok()) {
    fprintf(stderr, "modelfs prefetch: %s: %s\n", positional[0].c_str(), tree.status().ToString().c_str());
    return 1;
  }
  std::vector<FileEntry> files;
  uint64_t total = 0;
  for (const auto& f : *tree) {
    if (f.is_dir || !SelectedByGlobs(f.path, include, exclude)) continue;
    files.push_back(f);
    total += f.size;
  }
  if (files.empty()) {
    fprintf(stderr, "modelfs prefetch: no file of %s matches the globs\n", positional[0].c_str());
    return 1;
  }
  if (pin) {
    const std::string name = PinFileName(*repo);
    uint64_t others = 0;
    std::string id = repo->type == "model" ? repo->Id() : repo->ApiType() + "/" + repo->Id();
    for (const auto& p : ListPins(cfg.cache.dir))
      if (p.repo != id) others += p.bytes;
    uint64_t quota = e.store->Stats().quota_bytes;
    if (quota && others + total > quota * share / 100) {
      fprintf(stderr, "modelfs prefetch: pinning %s would pin %s of a %s quota, over the %.0f%% "
              "share pins may take (--pin-share); not pinned, nothing fetched\n",
              id.c_str(), Mib(others + total).c_str(), Mib(quota).c_str(), share);
      return 1;
    }
    Pin p{id, *commit, {}, total};
    for (const auto& f : files) p.keys.push_back(f.ContentKey());
    Status ps = SavePin(cfg.cache.dir, name, p);  // before fetching: our own store must not evict it
    if (!ps.ok()) {
      fprintf(stderr, "modelfs prefetch: %s\n", ps.ToString().c_str());
      return 1;
    }
  }
  const bool tty = !quiet && isatty(STDERR_FILENO);
  auto last = std::chrono::steady_clock::now() - kRedraw;
  auto t0 = std::chrono::steady_clock::now();
  uint64_t done = 0;
  int failed = 0;
  std::vector<char> buf(kChunkSize);
  for (const auto& f : files) {
    BlobRef ref = BlobRef::For(*repo, *commit, f);
    e.store->OpenBlob(ref);
    Status rs;
    for (uint64_t off = 0; off < f.size;) {
      size_t n = 0;
      rs = e.store->Read(ref, off, buf.size(), buf.data(), &n);
      if (!rs.ok() || n == 0) break;
      off += n;
      done += n;
      if (tty && std::chrono::steady_clock::now() - last >= kRedraw) {
        last = std::chrono::steady_clock::now();
        fprintf(stderr, "\r[%5.1f%%] %s of %s  %-40.40s", total ? 100.0 * done / total : 100.0,
                Mib(done).c_str(), Mib(total).c_str(), f.path.c_str());
      }
    }
    e.store->CloseBlob(ref);
    if (!rs.ok()) {
      failed++;
      fprintf(stderr, "%smodelfs prefetch: %s: %s\n", tty ? "\n" : "", f.path.c_str(), rs.ToString().c_str());
    }
  }
  e.store->WaitIdle(120000);  // let the last files' verification finish (bounded)
  int verified = 0;
  for (const auto& f : files) verified += e.store->IsVerified(f.ContentKey()) ? 1 : 0;
  if (tty) fprintf(stderr, "\n");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (json) {
    printf("%s\n", nlohmann::json({{"repo", repo->Id()}, {"commit", *commit}, {"files", files.size()},
                                   {"bytes", total}, {"verified", verified}, {"failed", failed},
                                   {"pinned", pin}, {"seconds", secs}}).dump().c_str());
  } else {
    printf("%s@%s: %zu files, %s; %d verified in the cache, %d failed%s (%.1f s)\n",
           repo->Id().c_str(), commit->substr(0, 12).c_str(), files.size(), Mib(total).c_str(),
           verified, failed, pin ? ", pinned" : "", secs);
  }
  return failed == 0 && verified == static_cast<int>(files.size()) ? 0 : 1;
}

int RunUnpin(const std::vector<std::string>& args) {
  const std::vector<OptionSpec> table = {
      CacheDirOption(),
      {"--help", "-h", nullptr, nullptr, "", "Show this help."},
  };
  Result<ParsedArgs> parsed = ParseArgs(args, table, "modelfs unpin");
  if (parsed.ok() && parsed->Has("--help")) {
    fputs(("Usage: modelfs unpin ORG/NAME [--cache-dir DIR]\n\n"
           "Releases the pin 'modelfs prefetch --pin' put on a repo (datasets/ORG/NAME for a\n"
           "dataset); its files become ordinary, evictable cache content.\n\n"
           "Options:\n" +
           FormatOptionTable(table) + "\nExit codes: 0 unpinned; 1 the repo was not pinned; 2 usage error.\n")
              .c_str(),
          stdout);
    return 0;
  }
  std::string rev;
  Result<RepoId> repo = !parsed.ok()                     ? Result<RepoId>(parsed.status())
                        : parsed->positional.size() == 1 ? ParseRepoArg(parsed->positional[0], &rev)
                                                         : Result<RepoId>(Status::InvalidArgument("expected ORG/NAME"));
  if (!repo.ok()) {
    fprintf(stderr, "modelfs unpin: %s\nUsage: modelfs unpin ORG/NAME [--cache-dir DIR]\n",
            repo.status().message().c_str());
    return 2;
  }
  Result<std::string> dir = CacheDirOf(*parsed, Environment::Process());
  if (!dir.ok()) {
    fprintf(stderr, "modelfs unpin: %s\n", dir.status().message().c_str());
    return 1;
  }
  if (!RemovePin(*dir, PinFileName(*repo))) {
    fprintf(stderr, "modelfs unpin: %s is not pinned in %s\n", repo->Id().c_str(), dir->c_str());
    return 1;
  }
  printf("unpinned %s\n", repo->Id().c_str());
  return 0;
}

}  // namespace modelfs::cli
