#include "tools/environment.h"

#include <stdlib.h>

#include <cctype>

namespace modelfs::cli {

const Environment& Environment::Process() {
  static const Environment env;
  return env;
}

std::string Environment::Get(const std::string& name) const {
  if (process_) {
    const char* v = getenv(name.c_str());
    return v ? v : "";
  }
  auto it = vars_.find(name);
  return it == vars_.end() ? "" : it->second;
}

bool Environment::GetBool(const std::string& name) const {
  std::string v = Get(name);
  for (char& c : v) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return v == "1" || v == "true" || v == "yes" || v == "on";
}

std::string Environment::Home() const {
  const std::string h = Get("HOME");
  return h.empty() ? "/root" : h;
}

}  // namespace modelfs::cli
