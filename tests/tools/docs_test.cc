// docs/commands/ against the built binary: for every command in tools/main.cc's command table,
// `modelfs CMD --help` must work and print a usage line, docs/commands/CMD.md must exist, every
// flag and environment variable the help lists must be documented on the page, and every flag the
// page documents (its "## Options" section and its `modelfs CMD ...` example lines) must be one the
// help lists, so a renamed or removed flag cannot linger in the docs.
//
// The command list is read from tools/main.cc (the kCommands table) rather than exported from
// tools/, so a new command without a page fails here. The binary is run with popen, as a user would:
// it is the `modelfs` next to this test binary (both land in <build>/bin), or MODELFS_BINARY when
// the build defines it.
#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "tests/testing/temp_dir.h"

namespace modelfs {
namespace {

using testing::TempDir;

// Known gaps in the help texts, each checked to be still there: once a command's help is fixed,
// the test fails and asks for the entry to be removed, so these lists can only shrink.
// Commands whose `--help` is not an option yet (exit 2 with a usage line on stderr); the usage
// line they print instead is what their page is checked against meanwhile.
const std::set<std::string> kHelpNotYetAnOption = {};
// Commands whose help does not document their exit codes yet (the ecosystem conventions ask for
// it; the pages do).
const std::set<std::string> kHelpLacksExitCodes = {};

std::string ReadFile(const std::string& path) {
  FILE* f = fopen(path.c_str(), "r");
  if (!f) return "";
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  fclose(f);
  return s;
}

std::string DocsDir() { return std::string(MODELFS_SOURCE_DIR) + "/docs/commands"; }

[[maybe_unused]] std::string BinDir() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return ".";
  self[n] = '\0';
  std::string p(self);
  return p.substr(0, p.rfind('/'));
}

std::string ModelfsBinary() {
#ifdef MODELFS_BINARY
  return MODELFS_BINARY;
#else
  return BinDir() + "/modelfs";
#endif
}

std::string HelperBinary() {
#ifdef MODELFS_MOUNT_HELPER
  return MODELFS_MOUNT_HELPER;
#else
  return BinDir() + "/mount.modelfs";
#endif
}

struct RunResult {
  int rc = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `binary args` with HOME and the cache pointed at a scratch directory, so a command that
// (wrongly) did real work on --help could touch nothing of the user's.
RunResult RunBinary(const std::string& binary, const std::string& args) {
  TempDir tmp("modelfs-docs");
  const std::string err_file = tmp.Sub("stderr");
  const std::string cmd = "env HOME=" + tmp.path() + " MODELFS_CACHE=" + tmp.Sub("cache") +
                          " XDG_CONFIG_HOME=" + tmp.Sub("config") + " '" + binary + "' " + args +
                          " 2>'" + err_file + "' </dev/null";
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = ReadFile(err_file);
  return r;
}

// One row of the command table; `alias_of` names the first command with the same function.
struct Command {
  std::string name;
  std::string alias_of;
};

// The kCommands table of tools/main.cc: {"name", &function} rows.
std::vector<Command> CommandTable() {
  const std::string src = ReadFile(std::string(MODELFS_SOURCE_DIR) + "/tools/main.cc");
  const size_t begin = src.find("kCommands[] = {");
  const size_t end = src.find("};", begin);
  if (begin == std::string::npos || end == std::string::npos) return {};
  const std::string table = src.substr(begin, end - begin);
  std::vector<Command> out;
  std::map<std::string, std::string> first_by_fn;
  const std::regex row(R"re(\{\s*"([^"]+)"\s*,\s*&?\s*([A-Za-z_:]+)\s*\})re");
  for (std::sregex_iterator it(table.begin(), table.end(), row), e; it != e; ++it) {
    const std::string name = (*it)[1], fn = (*it)[2];
    auto [pos, fresh] = first_by_fn.emplace(fn, name);
    out.push_back({name, fresh ? "" : pos->second});
  }
  return out;
}

// Long flags in a text: "--cache-dir", "--format", ... ("--OPTION" placeholders are upper case).
std::set<std::string> Flags(const std::string& text) {
  std::set<std::string> out;
  const std::regex flag(R"((^|[^A-Za-z0-9_-])(--[a-z][a-z0-9]*(-[a-z0-9]+)*))");
  for (std::sregex_iterator it(text.begin(), text.end(), flag), e; it != e; ++it) out.insert((*it)[2]);
  return out;
}

// Environment variables the help names as "env: NAME".
std::set<std::string> EnvVars(const std::string& help) {
  std::set<std::string> out;
  const std::regex env(R"(env: ([A-Z][A-Z0-9_]*))");
  for (std::sregex_iterator it(help.begin(), help.end(), env), e; it != e; ++it) out.insert((*it)[1]);
  return out;
}

// A markdown section: from the "## Title" line to the next "## " heading.
std::string Section(const std::string& page, const std::string& title) {
  const size_t at = page.find("\n## " + title);
  if (at == std::string::npos) return "";
  const size_t next = page.find("\n## ", at + 1);
  return page.substr(at, next == std::string::npos ? std::string::npos : next - at);
}

// Lines of the page that run this command: "modelfs CMD ..." or "$ modelfs CMD ...".
std::string CommandLines(const std::string& page, const std::string& cmd) {
  std::string out;
  size_t start = 0;
  while (start < page.size()) {
    size_t nl = page.find('\n', start);
    if (nl == std::string::npos) nl = page.size();
    std::string line = page.substr(start, nl - start);
    start = nl + 1;
    size_t b = line.find_first_not_of(" $");
    if (b != std::string::npos && line.compare(b, 9 + cmd.size(), "modelfs " + cmd + " ") == 0) {
      out += line + "\n";
    }
  }
  return out;
}

TEST(DocsTest, CommandTableIsReadFromMainCc) {
  std::vector<Command> cmds = CommandTable();
  std::set<std::string> names;
  for (const auto& c : cmds) names.insert(c.name);
  // The parser is regex-based: make sure it still sees the table (these two never go away).
  EXPECT_TRUE(names.count("mount")) << "could not parse kCommands in tools/main.cc";
  EXPECT_TRUE(names.count("download"));
  EXPECT_GE(cmds.size(), 9u);
}

TEST(DocsTest, MainHelpAndIndexListEveryCommand) {
  RunResult r = RunBinary(ModelfsBinary(), "--help");
  ASSERT_EQ(r.rc, 0) << ModelfsBinary() << " --help failed (is the modelfs target built?)\n"
                     << r.err;
  const std::string index = ReadFile(DocsDir() + "/README.md");
  ASSERT_FALSE(index.empty()) << DocsDir() << "/README.md is missing";
  for (const auto& c : CommandTable()) {
    const std::string& page = c.alias_of.empty() ? c.name : c.alias_of;
    if (c.alias_of.empty()) {
      EXPECT_NE(r.out.find("modelfs " + c.name + " "), std::string::npos)
          << "`modelfs --help` does not list " << c.name;
    }
    EXPECT_NE(index.find("(" + page + ".md)"), std::string::npos)
        << "docs/commands/README.md does not link " << page << ".md";
  }
  EXPECT_NE(index.find("(mount.modelfs.md)"), std::string::npos);
}

TEST(DocsTest, EveryCommandHelpMatchesItsPage) {
  const std::vector<Command> cmds = CommandTable();
  ASSERT_FALSE(cmds.empty());
  for (const auto& c : cmds) {
    SCOPED_TRACE("modelfs " + c.name);
    const std::string canonical = c.alias_of.empty() ? c.name : c.alias_of;
    // (1) the help works, on stdout, with a usage line (and, by convention, the exit codes).
    RunResult r = RunBinary(ModelfsBinary(), c.name + " --help");
    std::string help;
    if (kHelpNotYetAnOption.count(canonical)) {
      EXPECT_NE(r.rc, 0) << "`modelfs " << c.name << " --help` works now: remove " << canonical
                         << " from kHelpNotYetAnOption in tests/tools/docs_test.cc";
      help = r.err;  // the usage line printed on the error
    } else {
      EXPECT_EQ(r.rc, 0) << r.err;
      EXPECT_TRUE(r.err.empty()) << "help belongs on stdout, stderr had: " << r.err;
      help = r.out;
      if (kHelpLacksExitCodes.count(canonical)) {
        EXPECT_EQ(help.find("Exit codes"), std::string::npos)
            << "the help documents exit codes now: remove " << canonical
            << " from kHelpLacksExitCodes in tests/tools/docs_test.cc";
      } else {
        EXPECT_NE(help.find("Exit codes"), std::string::npos) << "help does not document exit codes";
      }
    }
    EXPECT_NE(help.find("Usage: modelfs " + canonical), std::string::npos)
        << "no usage line in:\n" << help;

    // (2) the page exists (an alias is documented on its command's page).
    const std::string path = DocsDir() + "/" + canonical + ".md";
    const std::string page = ReadFile(path);
    ASSERT_FALSE(page.empty()) << path << " is missing or empty";
    if (!c.alias_of.empty()) {
      EXPECT_NE(page.find("modelfs " + c.name), std::string::npos)
          << canonical << ".md does not mention the alias " << c.name;
      continue;  // the canonical command's turn checks the rest
    }
    EXPECT_NE(page.find("\n## Exit codes"), std::string::npos) << path << " has no Exit codes section";

    // (3) every flag and variable of the help is on the page.
    const std::set<std::string> help_flags = Flags(help);
    if (canonical == "mount") {
      EXPECT_GE(help_flags.size(), 20u) << "the flag pattern no longer matches the help's layout";
    }
    const std::set<std::string> page_flags = Flags(page);
    for (const auto& f : help_flags) {
      if (f == "--help") continue;  // every command takes it; a page need not say so
      EXPECT_TRUE(page_flags.count(f)) << f << " (in --help) is not documented in " << path;
    }
    for (const auto& v : EnvVars(help)) {
      EXPECT_NE(page.find(v), std::string::npos) << v << " (in --help) is not documented in " << path;
    }

    // (4) every flag the page documents for this command is one the help lists. A help that
    // delegates to mount's table ("--OPTION VALUE", "[mount options]") accepts those too.
    std::set<std::string> accepted = help_flags;
    if (help.find("--OPTION") != std::string::npos || help.find("mount options") != std::string::npos) {
      RunResult m = RunBinary(ModelfsBinary(), "mount --help");
      EXPECT_EQ(m.rc, 0);
      for (const auto& f : Flags(m.out)) accepted.insert(f);
    }
    const std::string options = Section(page, "Options");
    EXPECT_FALSE(options.empty()) << path << " has no Options section";
    accepted.insert("--help");  // every command takes it: checked above
    for (const auto& f : Flags(options + CommandLines(page, c.name))) {
      EXPECT_TRUE(accepted.count(f)) << f << " is documented in " << path
                                       << " but `modelfs " << c.name << " --help` does not list it";
    }
  }
}

// The mount(8) helper is not in the table; it has its own page.
TEST(DocsTest, MountHelperHelpAndPage) {
  RunResult r = RunBinary(HelperBinary(), "--help");
  EXPECT_EQ(r.rc, 0) << HelperBinary() << " --help failed (is the mount.modelfs target built?)";
  EXPECT_NE((r.out + r.err).find("Usage: mount.modelfs SOURCE DIR"), std::string::npos) << r.out << r.err;
  const std::string page = ReadFile(DocsDir() + "/mount.modelfs.md");
  ASSERT_FALSE(page.empty());
  EXPECT_NE(page.find("\n## Exit codes"), std::string::npos);
  // Every `-o` option the page shows as key= must be a `modelfs mount` flag with "_" for "-".
  RunResult m = RunBinary(ModelfsBinary(), "mount --help");
  ASSERT_EQ(m.rc, 0);
  const std::set<std::string> mount_flags = Flags(m.out);
  const std::regex key(R"(`([a-z][a-z0-9_]*)=`)");
  int seen = 0;
  for (std::sregex_iterator it(page.begin(), page.end(), key), e; it != e; ++it) {
    std::string k = (*it)[1];
    if (k == "comment") continue;  // a mount(8) option the helper drops
    std::replace(k.begin(), k.end(), '_', '-');
    EXPECT_TRUE(mount_flags.count("--" + k)) << "mount.modelfs.md shows `" << (*it)[1]
                                             << "=` but modelfs mount has no --" << k;
    seen++;
  }
  EXPECT_GT(seen, 3);
}

}  // namespace
}  // namespace modelfs
