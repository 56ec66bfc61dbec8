// Small filesystem helpers shared by the layers that write to disk (cache/, tools/).
#pragma once

#include <string>

#include "common/status.h"

namespace modelfs {

// mkdir -p; each directory it creates gets `mode` (0700 by default: cache contents are private to
// the user). OK if the directory already exists.
Status MkdirP(const std::string& path, unsigned mode = 0700);

}  // namespace modelfs
