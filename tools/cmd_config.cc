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
  // Takes the mount's value options (a preview of their effect), nothing else.
  std::vector<OptionSpec> table;
  for (const auto& o : MountOptionTable())
    if (o.value_name) table.push_back(o);
  Result<ParsedArgs> parsed = ParseArgs({args.begin() + 1, args.end()}, table, "modelfs config");
  if (!parsed.ok() || !parsed->positional.empty()) {
    *err += "modelfs config show: " +
            (parsed.ok() ? "unexpected argument " + parsed->positional[0] : parsed.status().message()) + "\n";
    return 2;
  }
  const ParsedArgs& flags = parsed.value();
  std::vector<std::string> endpoints;
  if (auto it = flags.values.find("--endpoint"); it != flags.values.end()) endpoints = it->second;
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
    const std::string key = o.flag + 2;
    Sourced v = ResolveOption(o, flags, env, files.value()).value_or(Sourced{o.default_text, "default"});
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
