#include "cache/pins.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/file_util.h"

namespace modelfs {

std::string PinFileName(const RepoId& repo) {
  std::string out = repo.type + "--";
  for (char c : repo.ns + "--" + repo.name) out.push_back(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ? c : '_');
  return out + ".json";
}

std::vector<Pin> ListPins(const std::string& cache_dir) {
  std::vector<Pin> out;
  std::string dir = cache_dir + "/pins";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() < 6 || name.compare(name.size() - 5, 5, ".json") != 0) continue;
    std::string text;
    if (!ReadFile(dir + "/" + name, &text)) continue;  // removed meanwhile (unpin)
    try {
      auto j = nlohmann::json::parse(text);
      Pin p;
      p.repo = j.at("repo").get<std::string>();
      p.commit = j.at("commit").get<std::string>();
      p.keys = j.at("keys").get<std::vector<std::string>>();
      p.bytes = j.at("bytes").get<uint64_t>();
      out.push_back(std::move(p));
    } catch (const std::exception&) {
      continue;  // torn or foreign: ignored (pins are written atomically, so not ours)
    }
  }
  closedir(d);
  return out;
}

Status SavePin(const std::string& cache_dir, const std::string& file_name, const Pin& pin) {
  std::string dir = cache_dir + "/pins";
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IoError("mkdir " + dir + ": " + strerror(errno));
  }
  std::string text = nlohmann::json({{"repo", pin.repo}, {"commit", pin.commit}, {"keys", pin.keys},
                                     {"bytes", pin.bytes}}).dump();
  // A pin outlives the mount and the machine's next boot: kPowerCut.
  return WriteFileAtomic(dir + "/" + file_name, text, Durability::kPowerCut);
}

bool RemovePin(const std::string& cache_dir, const std::string& file_name) {
  return unlink((cache_dir + "/pins/" + file_name).c_str()) == 0;
}

}  // namespace modelfs
