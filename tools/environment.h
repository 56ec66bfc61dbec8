// Environment: the one way tools/ reads environment variables. The binary reads the process's own
// (getenv); a test passes a fixed set, so it never depends on the caller's environment, nor on the
// machine's config files (their paths come from these variables: tools/config_file.h).
#pragma once

#include <map>
#include <string>

namespace modelfs::cli {

class Environment {
 public:
  // The process's environment, read at each Get (so setenv before a call is seen).
  static const Environment& Process();
  // Exactly these variables; every other one is unset.
  explicit Environment(std::map<std::string, std::string> vars) : vars_(std::move(vars)) {}

  // The variable's value; "" when unset (an empty value counts as unset everywhere in modelfs).
  std::string Get(const std::string& name) const;
  // A yes/no variable, read one way for all of them (as huggingface_hub reads HF_HUB_OFFLINE):
  // "1", "true", "yes" or "on" in any case is true; anything else, or unset, is false.
  bool GetBool(const std::string& name) const;
  // $HOME, or "/root" when unset.
  std::string Home() const;

 private:
  Environment() : process_(true) {}
  bool process_ = false;
  std::map<std::string, std::string> vars_;
};

}  // namespace modelfs::cli
