// Parsing the command line with the option tables: the one tokenizer (ParseArgs), the resolution
// of a value from flag > variable > config file > default (ResolveOption), `modelfs mount`'s
// parse into MountConfig (ParseMount: the table's `apply` functions, then the endpoint list, the
// token chain and the values computed from others), the tables of the commands that forward mount
// options, and the --help text. The mount's table itself is tools/mount_option_table.cc; value
// syntax is tools/option_values.cc. No state, no locks.
#include "tools/options.h"

#include <unistd.h>

#include <algorithm>
#include <map>

#include "common/file_util.h"
#include "common/log.h"
#include "tools/config_file.h"
#include "tools/status_file.h"

namespace modelfs::cli {
namespace {

// The log level of a command that forwards mount options (download, prefetch): log lines would
// tear its progress line.
constexpr const char* kForwardedLogLevel = "warn";

// The built-in default of --cache-dir: the table's "~/..." under $HOME.
std::string DefaultCacheDir(const Environment& env) {
  return env.Home() + (FindOption(MountOptionTable(), "--cache-dir")->default_text + 1);
}

}  // namespace

std::string MainHelp() {
  return "modelfs: Hugging Face hub repos as a read-only, lazily fetched, verified filesystem.\n\n"
         "Usage:\n"
         "  modelfs mount [OPTIONS] [ORG/NAME[@REV]] MOUNTPOINT\n"
         "  modelfs unmount MOUNTPOINT\n"
         "  modelfs download ORG/NAME[@REV] --local-dir DIR [--include GLOB] [--exclude GLOB]\n"
         "  modelfs config show [--endpoint URL]...   (effective settings and their sources)\n"
         "  modelfs status [--cache-dir DIR] [--format json]       (cache use, per-file state)\n"
         "  modelfs verify [ORG/NAME[@REV]] [--format json]        (re-hash, drop bad data)\n"
         "  modelfs gc [--size SIZE] [--format json]               (drop unreferenced, shrink)\n"
         "  modelfs prefetch ORG/NAME[@REV] [--include GLOB] [--exclude GLOB] [--pin]\n"
         "  modelfs unpin ORG/NAME [--cache-dir DIR]\n"
         "  modelfs metrics --list                                 (every metric a mount exports)\n"
         "  modelfs --version\n\n"
         "Without ORG/NAME, MOUNTPOINT shows every repo on first lookup: MOUNTPOINT/ORG/NAME for the\n"
         "default branch, MOUNTPOINT/ORG/NAME@REV for a branch, tag or commit (write '/' in REV as\n"
         "%2F), MOUNTPOINT/datasets/ORG/NAME for datasets. Each repo directory stays pinned to the\n"
         "commit it resolved to for the life of the mount.\n\n"
         "Run 'modelfs COMMAND --help' for a command's options; docs/commands/ has a page per command.\n"
         "Exit codes: 0 success, 1 runtime failure, 2 usage error.\n";
}

std::string FormatOptionTable(const std::vector<OptionSpec>& table) {
  std::string out;
  for (const auto& o : table) {
    std::string left = "  ";
    if (o.short_flag) left += std::string(o.short_flag) + ", ";
    left += o.flag;
    if (o.value_name) left += std::string(" ") + o.value_name;
    out += left + "\n      " + o.help;
    std::string extra;
    if (o.default_text && *o.default_text) extra += std::string("default: ") + o.default_text;
    if (o.env) extra += std::string(extra.empty() ? "" : "; ") + "env: " + o.env;
    if (!extra.empty()) out += " [" + extra + "]";
    out += "\n";
  }
  return out;
}

std::string MountHelp() {
  std::string out =
      "Usage: modelfs mount [OPTIONS] [ORG/NAME[@REV]] MOUNTPOINT\n\n"
      "Mounts hub repos read-only at MOUNTPOINT and returns once the mount is live (unless -f).\n"
      "With ORG/NAME the mount root is that one repo. Unmount with 'modelfs unmount MOUNTPOINT'\n"
      "or 'fusermount3 -u MOUNTPOINT'.\n\nOptions:\n";
  out += FormatOptionTable(MountOptionTable());
  out += "\nThe token comes from $HF_TOKEN, else --token-file, else $HF_TOKEN_PATH, else\n"
         "$HF_HOME/token (HF_HOME defaults to ~/.cache/huggingface).\n"
         "\nExit codes: 0 the mount is live (with -f: unmounted cleanly); 1 the mount failed (repo,\n"
         "revision, mount point, cache directory, FUSE); 2 usage error.\n"
         "\nExamples:\n"
         "  modelfs mount /mnt/hf && ls /mnt/hf/ORG/NAME\n"
         "  modelfs mount --cache-size 100GiB ORG/NAME@v1.0 /mnt/model\n"
         "  modelfs mount --hf-cache /mnt/hf   # then HF_HUB_CACHE=/mnt/hf HF_HUB_OFFLINE=1\n";
  return out;
}

Result<std::string> CacheDirSetting(const Environment& env) {
  if (std::string dir = env.Get("MODELFS_CACHE"); !dir.empty()) return dir;
  Result<ConfigLayers> files = LoadConfigLayers(ConfigKeys(), env);
  if (!files.ok()) return files.status();
  if (const Sourced* v = files->Find("cache-dir")) return v->value;
  return DefaultCacheDir(env);
}

OptionSpec CacheDirOption() {
  OptionSpec o = *FindOption(MountOptionTable(), "--cache-dir");
  o.help = "The cache directory (without the flag or the variable: the config files' cache-dir, as for a mount).";
  o.apply = nullptr;
  return o;
}

Result<std::string> CacheDirOf(const ParsedArgs& args, const Environment& env) {
  if (const std::string* v = args.Last("--cache-dir"); v && !v->empty()) return *v;
  return CacheDirSetting(env);
}

const OptionSpec* FindOption(const std::vector<OptionSpec>& table, const std::string& flag) {
  for (const auto& o : table)
    if (flag == o.flag || (o.short_flag && flag == o.short_flag)) return &o;
  return nullptr;
}

const std::string* ParsedArgs::Last(const std::string& flag) const {
  auto it = values.find(flag);
  return it == values.end() || it->second.empty() ? nullptr : &it->second.back();
}

Result<ParsedArgs> ParseArgs(const std::vector<std::string>& args, const std::vector<OptionSpec>& table,
                             const std::string& command) {
  ParsedArgs out;
  for (size_t i = 0; i < args.size(); i++) {
    std::string a = args[i];
    if (a.empty() || a[0] != '-' || a == "-") {
      out.positional.push_back(a);
      continue;
    }
    std::string value;
    bool has_value = false;
    if (size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    const OptionSpec* spec = FindOption(table, a);
    if (!spec) return Status::InvalidArgument("unknown option " + a + " (see " + command + " --help)");
    if (spec->value_name) {
      if (!has_value) {
        if (i + 1 >= args.size()) return Status::InvalidArgument(a + " needs a value");
        value = args[++i];
      }
      out.values[spec->flag].push_back(value);
    } else if (has_value) {
      return Status::InvalidArgument(a + " takes no value");
    } else {
      out.values[spec->flag].emplace_back("1");  // (constructed: assigning "1" trips GCC 12's -Wrestrict)
    }
  }
  return out;
}

std::vector<OptionSpec> CommandOptionTable(std::vector<OptionSpec> own, const std::vector<std::string>& forwarded) {
  for (const OptionSpec& o : MountOptionTable()) {
    if (std::find(forwarded.begin(), forwarded.end(), o.flag) == forwarded.end()) continue;
    own.push_back(o);
    if (std::string(o.flag) == "--log-level") own.back().default_text = kForwardedLogLevel;
  }
  own.push_back(*FindOption(MountOptionTable(), "--help"));
  return own;
}

std::vector<std::string> ForwardedMountArgs(const ParsedArgs& args, const std::vector<std::string>& forwarded,
                                            const Environment& env) {
  std::vector<std::string> out;
  for (const std::string& f : forwarded) {
    auto it = args.values.find(f);
    if (it == args.values.end()) continue;
    const bool takes_value = FindOption(MountOptionTable(), f)->value_name != nullptr;
    for (const std::string& v : it->second) {
      out.push_back(f);
      if (takes_value) out.push_back(v);
    }
  }
  if (!args.Has("--log-level") && env.Get("MODELFS_LOG_LEVEL").empty()) out.insert(out.end(), {"--log-level", kForwardedLogLevel});
  return out;
}

std::optional<Sourced> ResolveOption(const OptionSpec& o, const ParsedArgs& args, const Environment& env,
                                     const ConfigLayers& files) {
  if (const std::string* v = args.Last(o.flag)) return Sourced{*v, o.flag};
  if (!o.value_name) {  // a switch: no config key; its variable says yes or is ignored
    if (o.env && env.GetBool(o.env)) return Sourced{"1", o.env};
    return Sourced{"", "default"};
  }
  if (o.env && !env.Get(o.env).empty()) return Sourced{env.Get(o.env), o.env};
  if (const Sourced* f = files.Find(o.flag + 2)) return *f;
  if (o.default_is_value) return Sourced{o.default_text, "default"};
  return std::nullopt;
}

Status ParseMount(const std::vector<std::string>& args, const Environment& env, MountConfig* cfg, bool* help) {
  *help = false;
  Result<ParsedArgs> parsed = ParseArgs(args, MountOptionTable(), "modelfs mount");
  if (!parsed.ok()) return parsed.status();
  const ParsedArgs& flags = parsed.value();
  if (flags.Has("--help")) {
    *help = true;
    return Status::Ok();
  }
  const std::vector<std::string>& positional = flags.positional;
  if (positional.size() < 1 || positional.size() > 2) {
    return Status::InvalidArgument("expected [ORG/NAME[@REV]] MOUNTPOINT (see modelfs mount --help)");
  }
  cfg->mount.mountpoint = positional.back();
  if (positional.size() == 2) {
    auto repo = ParseRepoArg(positional[0], &cfg->fs.single_rev);
    if (!repo.ok()) return repo.status();
    cfg->fs.single_repo = repo.value();
  }
  Result<ConfigLayers> files = LoadConfigLayers(ConfigKeys(), env);
  if (!files.ok()) return files.status();

  // Every option with an `apply`: its value from flag > variable > config file > default.
  for (const OptionSpec& o : MountOptionTable()) {
    if (!o.apply) continue;
    std::optional<Sourced> v = ResolveOption(o, flags, env, files.value());
    if (!v) continue;
    if (Status s = o.apply(v->value, cfg); !s.ok()) {
      const std::string from = v->origin == o.flag ? "" : " (from " + v->origin + ")";
      return Status::InvalidArgument(std::string(o.flag) + from + ": " + s.message());
    }
  }

  // Endpoints (mirrors): flags > HF_ENDPOINT + MODELFS_MIRRORS > config files > default.
  std::vector<std::string> flag_endpoints;
  if (auto it = flags.values.find("--endpoint"); it != flags.values.end()) flag_endpoints = it->second;
  Result<std::vector<Sourced>> eps = EffectiveEndpoints(files.value(), flag_endpoints, env);
  if (!eps.ok()) return eps.status();
  cfg->fetch.endpoints.clear();
  for (const auto& e : eps.value()) cfg->fetch.endpoints.push_back(e.value);
  cfg->fetch.endpoint = cfg->fetch.endpoints.front();

  // Token: $HF_TOKEN (or its legacy name) wins, then the token file chain, in huggingface_hub's order.
  std::string hf_home = env.Get("HF_HOME");
  if (hf_home.empty()) {
    std::string xdg = env.Get("XDG_CACHE_HOME");
    hf_home = (xdg.empty() ? env.Home() + "/.cache" : xdg) + "/huggingface";
  }
  std::string token = CleanToken(env.Get("HF_TOKEN"));
  if (token.empty()) token = CleanToken(env.Get("HUGGING_FACE_HUB_TOKEN"));
  if (token.empty()) {
    const OptionSpec& tf = *FindOption(MountOptionTable(), "--token-file");
    const std::optional<Sourced> chosen = ResolveOption(tf, flags, env, files.value());
    const std::string path = chosen ? chosen->value : hf_home + "/token";
    std::string raw;
    if (ReadFile(path, &raw)) {
      token = CleanToken(raw);
    } else if (flags.Has("--token-file")) {
      return Status::InvalidArgument("cannot read token file " + path);
    }
  }
  cfg->fetch.token = token;

  // Defaults computed from others, and checks across options.
  if (cfg->cache.dir.empty()) cfg->cache.dir = DefaultCacheDir(env);
  cfg->mount.foreground = cfg->mount.foreground || cfg->mount.debug;
  if (!cfg->mount.foreground && cfg->log_file.empty()) cfg->log_file = cfg->cache.dir + "/modelfs.log";
  // The quota covers the whole cache directory: the store keeps room for the files it does not
  // write itself (docs/ARCHITECTURE.md, "Quota and eviction").
  cfg->cache.reserved_bytes = kStatusDiskBound;
  if (!cfg->log_file.empty() && cfg->log_file.rfind(cfg->cache.dir + "/", 0) == 0) {
    if (cfg->log_max_bytes == 0 && (cfg->cache.max_bytes > 0 || cfg->cache.max_fs_percent > 0)) {
      return Status::InvalidArgument("--log-max-size 0 (a log that grows without bound) inside the cache "
                                     "directory cannot be held to --cache-size; give a size or a --log-file elsewhere");
    }
    cfg->cache.reserved_bytes += LogDiskBound(cfg->log_max_bytes);
  }
  if (cfg->fs.layout == FsLayout::kHfCache && cfg->fs.single_repo) {
    return Status::InvalidArgument("--hf-cache shows every repo; it takes no ORG/NAME");
  }
  cfg->mount.notify_socket = env.Get("NOTIFY_SOCKET");  // systemd Type=notify (sd_notify protocol)
  cfg->monitor.status_dir = cfg->cache.dir + "/run";
  cfg->monitor.mountpoint = cfg->mount.mountpoint;
  cfg->fs.uid = getuid();
  cfg->fs.gid = getgid();
  return Status::Ok();
}

}  // namespace modelfs::cli
