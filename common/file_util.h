// Small filesystem helpers shared by the layers that read and write files on disk (cache/, tools/).
#pragma once

#include <string>

#include "common/status.h"

namespace modelfs {

// mkdir -p; each directory it creates gets `mode` (0700 by default: cache contents are private to
// the user). OK if the directory already exists.
[[nodiscard]] Status MkdirP(const std::string& path, unsigned mode = 0700);

// Reads the whole file at `path` into *out (binary, no size limit: meant for small files such as
// metadata, pins, tokens and config). False if it cannot be opened or read; *out is then
// unspecified. A caller that needs to tell "absent" from "unreadable" checks errno.
[[nodiscard]] bool ReadFile(const std::string& path, std::string* out);

// What a file written by WriteFileAtomic must survive once the call has returned.
enum class Durability {
  // A crash of this process (kill -9), not a power cut: the page cache still holds it. For files
  // that describe the running process (status, metrics), which are stale after a reboot anyway,
  // and written often enough that an fsync each time would cost the disk for nothing.
  kProcess,
  // A power cut too: the file is fsync'd before the rename and its directory after it. For state
  // that a later run reads (stored refs and trees, pins).
  kPowerCut,
};

// Replaces `path` with `data` atomically, with one rule for every caller: the data goes to a
// temporary file beside it (`<path>.tmp.<pid>.<n>`, mode `mode` whatever the umask), which is then
// renamed over `path`. A reader, or a run after any crash, sees the old file or the new one in
// full, never a torn one or a mix; `durability` says only whether the new one survives a power
// cut. The directory must exist. On failure the temporary file is removed and `path` is untouched,
// except when only the directory's fsync failed (kPowerCut): the new file is then in place but
// may not survive a power cut, and the error says so.
// Thread-safe (each call uses its own temporary name).
[[nodiscard]] Status WriteFileAtomic(const std::string& path, const std::string& data, Durability durability,
                                     unsigned mode = 0600);

}  // namespace modelfs
