// Internals of ModelFs shared by its source files:
//   model_fs.cc           the inode table, attributes, the plain layout (ORG/NAME@REV, single repo),
//                         single flight, building and publishing a pinned tree, readdir
//   model_fs_hf_cache.cc  the hub-cache layout (models--ORG--NAME/{refs,snapshots,blobs})
//   model_fs_read.cc      open, release and reads, with each handle's record of what it asked for
// Not part of the fs interface: include it from those files only.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "fs/model_fs.h"

namespace modelfs {

struct ModelFs::Node {
  uint64_t ino = 0;
  uint64_t parent = 0;
  Kind kind = Kind::kDir;
  std::string name;
  // Dirs: name -> ino, sorted so readdir order is stable. Grows for kRoot/kDatasets/kOrg (under
  // table_mu_ exclusive); fixed once published for kRepo/kDir.
  std::map<std::string, uint64_t> children;
  std::string repo_type;  // kOrg: "model" or "dataset"
  BlobRef blob;           // kFile: what to read (size in blob.size)
  RepoId repo;            // kHfRepo, kHfRefs, kHfSnapshots, kHfBlobs: the repo they belong to
  std::string data;       // kRefFile: the whole content (a 40-hex commit, no newline)
};

}  // namespace modelfs
