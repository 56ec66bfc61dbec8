// The syntax of option values: sizes, percentages, durations, rates, repo arguments, tokens (see
// option_values.h). Pure functions: no state, no locks.
#include "tools/option_values.h"

#include <cmath>
#include <cstdlib>

#include "fs/model_fs.h"

namespace modelfs::cli {

Result<double> ParsePercent(const std::string& text) {
  char* end = nullptr;
  double v = strtod(text.c_str(), &end);
  if (end == text.c_str() || std::string(end) != "%" || !std::isfinite(v) || v < 0 || v > 100) {
    return Status::InvalidArgument("not a percentage between 0% and 100%: '" + text + "'");
  }
  return v;
}

Result<int64_t> ParseDuration(const std::string& text) {
  char* end = nullptr;
  double v = strtod(text.c_str(), &end);
  std::string unit(end ? end : "");
  double mult = unit.empty() || unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600
              : unit == "d" ? 86400 : -1;
  if (end == text.c_str() || mult < 0 || !std::isfinite(v) || v < 0 || v * mult > 1e10) {
    return Status::InvalidArgument("not a duration: '" + text + "' (e.g. 72h, 30m, 0)");
  }
  return static_cast<int64_t>(v * mult);
}

Result<uint64_t> ParseRate(const std::string& text) {
  std::string t = text;
  if (t.size() > 2 && t.compare(t.size() - 2, 2, "/s") == 0) t.resize(t.size() - 2);
  auto v = ParseSize(t);
  if (!v.ok()) return Status::InvalidArgument("not a rate: '" + text + "' (e.g. 100MB/s, 1GiB/s, 0)");
  return v;
}

Result<uint64_t> ParseSize(const std::string& text) {
  char* end = nullptr;
  double v = strtod(text.c_str(), &end);
  if (end == text.c_str() || v < 0 || !std::isfinite(v)) {
    return Status::InvalidArgument("not a size: '" + text + "' (try 20GiB)");
  }
  std::string unit(end);
  double mult;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "K" || unit == "KiB") mult = 1024.0;
  else if (unit == "M" || unit == "MiB") mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TiB") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "KB" || unit == "kB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "TB") mult = 1e12;
  else return Status::InvalidArgument("unknown size unit in '" + text + "' (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)");
  double bytes = v * mult;
  if (bytes > 9.0e18) return Status::InvalidArgument("size too large: " + text);
  return static_cast<uint64_t>(bytes);
}

Result<RepoId> ParseRepoArg(const std::string& text, std::string* rev) {
  std::string s = text;
  RepoId repo;
  rev->clear();
  size_t at = s.find('@');
  if (at != std::string::npos) {
    *rev = s.substr(at + 1);
    s = s.substr(0, at);
    if (rev->empty()) return Status::InvalidArgument("empty revision in '" + text + "'");
  }
  if (s.rfind("datasets/", 0) == 0) {
    repo.type = "dataset";
    s = s.substr(9);
  } else if (s.rfind("models/", 0) == 0) {
    s = s.substr(7);
  }
  size_t slash = s.find('/');
  if (slash == std::string::npos || s.find('/', slash + 1) != std::string::npos) {
    return Status::InvalidArgument("repo must be ORG/NAME[@REV], got '" + text + "'");
  }
  repo.ns = s.substr(0, slash);
  repo.name = s.substr(slash + 1);
  if (!ModelFs::IsValidHubName(repo.ns) || !ModelFs::IsValidHubName(repo.name)) {
    return Status::InvalidArgument("not a valid repo id: '" + text + "'");
  }
  return repo;
}

std::string CleanToken(const std::string& raw) {
  std::string t;
  for (char c : raw)
    if (c != '\r' && c != '\n') t.push_back(c);
  size_t a = t.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  size_t b = t.find_last_not_of(" \t");
  return t.substr(a, b - a + 1);
}

}  // namespace modelfs::cli
