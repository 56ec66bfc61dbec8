#include "tools/cmd_config.h"


#include <cstdio>

#include <map>

#include "tools/config_file.h"
#include "tools/options.h"

namespace modelfs::cli {
namespace {

const char* kUsage =
    "Usage: modelfs config show [--endpoint URL]... [--OPTION VALUE]...\n"
    "Prints the effective mount settings and where each came from (flag, environment, config file,\n"
    "default). Config files: $MODELFS_SYSTEM_CONFIG or /etc/modelfs/config, then $MODELFS_CONFIG or\n"
    "$XDG_CONFIG_HOME/modelfs/config (~/.config/modelfs/config); lines are 'key = value' with the\n"
    "long option names as keys; 'endpoint' may repeat.\n"
    "Exit codes: 0 printed; 1 a config file or an endpoint is invalid; 2 usage error.\n";

}  // namespace

int ConfigCommand(const std::vector<std::string>& args, const Environment& env, std::string* out,
                  std::string* err) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    *(args.empty() ? err : out) += kUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] != "show") {
    *err += "modelfs config: unknown subcommand '" + args[0] + "'\n" + kUsage;
    return 2;
  }
  std::map<std::string, std::string> flags;
  std::vector<std::string> endpoints;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string a = args[i], value;
    bool has_value = false;
    if (size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    const OptionSpec* spec = nullptr;
    for (const auto& o : MountOptionTable())
      if (a == o.flag && o.value_name) spec = &o;
    if (!spec) {
      *err += "modelfs config show: unknown or valueless option " + a + "\n";
      return 2;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        *err += "modelfs config show: " + a + " needs a value\n";
        return 2;
      }
      value = args[++i];
    }
    flags[a] = value;
    if (a == "--endpoint") endpoints.push_back(value);
  }
  Result<ConfigLayers> files = LoadConfigLayers(ConfigKeys(), env);
  if (!files.ok()) {
    *err += "modelfs config show: " + files.status().message() + "\n";
    return 1;
  }
  Result<std::vector<Sourced>> eps = EffectiveEndpoints(files.value(), endpoints, env);
  if (!eps.ok()) {
    *err += "modelfs config show: " + eps.status().message() + "\n";
    return 1;
  }
  *out += "endpoints (in order of preference until measured):\n";
  for (const auto& e : eps.value()) *out += "  " + e.value + "    [" + e.origin + "]\n";
  *out += "settings:\n";
  for (const auto& o : MountOptionTable()) {
    if (!o.value_name || std::string(o.flag) == "--endpoint") continue;
    Sourced v{o.default_text ? o.default_text : "", "default"};
    std::string key = o.flag + 2;
    if (const Sourced* f = files->Find(key)) v = *f;
    if (o.env && !env.Get(o.env).empty()) v = {env.Get(o.env), o.env};
    if (auto it = flags.find(o.flag); it != flags.end()) v = {it->second, o.flag};
    if (key == "token-file" && (!env.Get("HF_TOKEN").empty() || !env.Get("HUGGING_FACE_HUB_TOKEN").empty())) {
      v.value = "(unused: the token comes from $" +
                std::string(!env.Get("HF_TOKEN").empty() ? "HF_TOKEN" : "HUGGING_FACE_HUB_TOKEN") + ")";
    }
    *out += "  " + key + " = " + v.value + "    [" + v.origin + "]\n";
  }
  *out += "config files:\n";
  for (const auto& f : files->files) *out += "  " + f + "\n";
  return 0;
}

int RunConfig(const std::vector<std::string>& args) {
  std::string out, err;
  int rc = ConfigCommand(args, Environment::Process(), &out, &err);
  fputs(out.c_str(), stdout);
  fputs(err.c_str(), stderr);
  return rc;
}

}  // namespace modelfs::cli
