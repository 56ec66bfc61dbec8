#include "tools/config_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <sstream>

#include "common/file_util.h"
#include "tools/options.h"  // the --endpoint entry's default

namespace modelfs::cli {
namespace {

std::string Trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r");
  return s.substr(a, b - a + 1);
}

// Config files are small; anything bigger is not one (and must not eat memory).
constexpr size_t kMaxConfigBytes = 1u << 20;

}  // namespace

std::vector<std::string> ConfigPaths(const Environment& env) {
  std::string sys = env.Get("MODELFS_SYSTEM_CONFIG");
  if (sys.empty()) sys = "/etc/modelfs/config";
  std::string user = env.Get("MODELFS_CONFIG");
  if (user.empty()) {
    const std::string xdg = env.Get("XDG_CONFIG_HOME");
    user = (xdg.empty() ? env.Home() + "/.config" : xdg) + "/modelfs/config";
  }
  return {sys, user};
}

Status ParseConfigText(const std::string& text, const std::string& origin,
                       const std::vector<std::string>& allowed_keys, ConfigLayers* into) {
  std::istringstream in(text);
  std::string line;
  std::vector<Sourced> endpoints;
  std::map<std::string, Sourced> singles;
  for (int n = 1; std::getline(in, line); ++n) {
    std::string t = Trim(line);
    if (t.empty() || t[0] == '#') continue;
    const std::string where = origin + ":" + std::to_string(n);
    size_t eq = t.find('=');
    if (eq == std::string::npos) return Status::InvalidArgument(where + ": expected 'key = value'");
    std::string key = Trim(t.substr(0, eq));
    std::string value = Trim(t.substr(eq + 1));
    if (key.rfind("--", 0) == 0) key = key.substr(2);
    if (std::find(allowed_keys.begin(), allowed_keys.end(), key) == allowed_keys.end())
      return Status::InvalidArgument(where + ": unknown key '" + key + "'");
    if (value.empty()) return Status::InvalidArgument(where + ": empty value for '" + key + "'");
    if (key == "endpoint") {
      endpoints.push_back({value, where});
    } else {
      singles[key] = {value, where};
    }
  }
  // A file that names endpoints replaces the list of the layers below it.
  if (!endpoints.empty()) into->values["endpoint"] = std::move(endpoints);
  for (auto& [k, v] : singles) into->values[k] = {std::move(v)};
  return Status::Ok();
}

Result<ConfigLayers> LoadConfigFiles(const std::vector<std::string>& paths,
                                     const std::vector<std::string>& allowed_keys) {
  ConfigLayers layers;
  for (const std::string& p : paths) {
    struct stat st;
    if (stat(p.c_str(), &st) != 0) {
      layers.files.push_back(p + " (absent)");
      continue;
    }
    if (!S_ISREG(st.st_mode)) return Status::InvalidArgument("config file " + p + " is not a regular file");
    if (static_cast<uint64_t>(st.st_size) > kMaxConfigBytes)
      return Status::InvalidArgument("config file " + p + " is too large");
    std::string text;
    if (!ReadFile(p, &text)) return Status::InvalidArgument("cannot read config file " + p);
    Status s = ParseConfigText(text, p, allowed_keys, &layers);
    if (!s.ok()) return s;
    layers.files.push_back(p + " (read)");
  }
  return layers;
}

Result<ConfigLayers> LoadConfigLayers(const std::vector<std::string>& allowed_keys, const Environment& env) {
  return LoadConfigFiles(ConfigPaths(env), allowed_keys);
}

Result<std::vector<Sourced>> EffectiveEndpoints(const ConfigLayers& files,
                                                const std::vector<std::string>& flag_endpoints,
                                                const Environment& env) {
  std::vector<Sourced> list;
  if (!flag_endpoints.empty()) {
    for (const auto& e : flag_endpoints) list.push_back({e, "--endpoint"});
  } else {
    std::string hf = Trim(env.Get("HF_ENDPOINT"));
    if (!hf.empty()) list.push_back({hf, "HF_ENDPOINT"});
    std::string mirrors = env.Get("MODELFS_MIRRORS");
    for (char& c : mirrors)
      if (c == ',' || c == '\t' || c == '\n') c = ' ';
    std::istringstream in(mirrors);
    for (std::string e; in >> e;) list.push_back({e, "MODELFS_MIRRORS"});
    if (list.empty()) {
      auto it = files.values.find("endpoint");
      if (it != files.values.end()) list = it->second;
    }
    if (list.empty()) list.push_back({FindOption(MountOptionTable(), "--endpoint")->default_text, "default"});
  }
  std::vector<Sourced> out;
  for (Sourced s : list) {
    while (!s.value.empty() && s.value.back() == '/') s.value.pop_back();
    if (s.value.rfind("http://", 0) != 0 && s.value.rfind("https://", 0) != 0)
      return Status::InvalidArgument("endpoint must be an http:// or https:// URL: " + s.value + " (from " +
                                     s.origin + ")");
    bool dup = false;
    for (const auto& o : out) dup = dup || o.value == s.value;
    if (!dup) out.push_back(std::move(s));
  }
  return out;
}

}  // namespace modelfs::cli
