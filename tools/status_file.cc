// Status file names, the stale-file sweep, the size bound and the atomic rewrite: see
// status_file.h. No locks.
#include "tools/status_file.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "common/file_util.h"
#include "common/log.h"
#include "common/status.h"

namespace modelfs::cli {

std::string StatusFileName(int pid) { return "status-" + std::to_string(pid) + ".json"; }

int StatusFilePid(const std::string& name) {
  int pid = 0;
  char tail[8] = "";
  if (sscanf(name.c_str(), "status-%d.%5s", &pid, tail) != 2 || std::string(tail) != "json" ||
      name != StatusFileName(pid))
    return 0;
  return pid;
}

void RemoveDeadStatusFiles(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    const int pid = StatusFilePid(e->d_name);
    if (pid > 0 && pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH) unlink((dir + "/" + e->d_name).c_str());
  }
  closedir(d);
}

std::string StatusText(nlohmann::json j) {
  std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (text.size() > kStatusFileMax) {
    const size_t transfers = j.contains("transfers") ? j["transfers"].size() : 0;
    j["transfers"] = nlohmann::json::array();
    j["transfers_dropped"] = transfers;
    text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (text.size() > kStatusFileMax) text = "{\"error\":\"status larger than its bound\"}\n";
  }
  return text;
}

void RewrittenFile::Write(const std::string& content) {
  Status s = WriteFileAtomic(path_, content, Durability::kProcess, mode_);
  if (!s.ok() && !failing_) MODELFS_LOG(kWarn, "%s", s.ToString().c_str());
  failing_ = !s.ok();
}

}  // namespace modelfs::cli
