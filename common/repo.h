// Plain value types that every layer shares: which repo, which file, which content.
//
// Content identity: a file's bytes are named by a content key, never by repo/path, so the same
// weights in two revisions or two repos are cached once. LFS files are keyed by the SHA-256 the hub
// reports (lfs.oid / X-Linked-Etag); small git files by their git blob id (SHA-1 of
// "blob <size>\0" + content). The key is also the hash that whole-file verification checks.
#pragma once

#include <cstdint>
#include <string>

namespace modelfs {

// A hub repository. `type` is "model" (default), "dataset" or "space".
struct RepoId {
  std::string type = "model";
  std::string ns;    // organisation or user
  std::string name;  // repository name

  std::string Id() const { return ns + "/" + name; }             // "org/name"
  std::string ApiType() const { return type + "s"; }             // "models" for /api/models/...
  std::string ResolvePrefix() const {                            // "" or "datasets/" for /resolve
    return type == "model" ? "" : type + "s/";
  }
  bool operator==(const RepoId& o) const { return type == o.type && ns == o.ns && name == o.name; }
};

// How a file's expected hash is computed.
enum class HashKind { kSha256, kGitSha1 };

// One entry of a repo tree at a pinned commit, as the tree API lists it (already validated: `path`
// is relative, has no "." / ".." / empty segments and no NUL).
struct FileEntry {
  std::string path;     // "a/b/c.safetensors", relative to the repo root
  bool is_dir = false;
  uint64_t size = 0;    // real content size (lfs.size for LFS files)
  std::string git_oid;  // 40-hex git blob id (for LFS files: of the pointer)
  std::string sha256;   // 64-hex content SHA-256 for LFS files, empty otherwise

  HashKind hash_kind() const { return sha256.empty() ? HashKind::kGitSha1 : HashKind::kSha256; }
  const std::string& expected_hash() const { return sha256.empty() ? git_oid : sha256; }
  // "sha256-<64hex>" or "gitsha1-<40hex>": the cache's content key.
  std::string ContentKey() const {
    return sha256.empty() ? "gitsha1-" + git_oid : "sha256-" + sha256;
  }
};

// Everything needed to fetch and verify one file's bytes at one commit.
struct BlobRef {
  RepoId repo;
  std::string commit;  // 40-hex, never a branch name
  std::string path;    // file path inside the repo
  uint64_t size = 0;
  HashKind hash_kind = HashKind::kSha256;
  std::string hash;    // hex digest the whole content must match
  std::string key;     // content key (FileEntry::ContentKey)

  static BlobRef For(const RepoId& r, const std::string& commit, const FileEntry& e) {
    return BlobRef{r, commit, e.path, e.size, e.hash_kind(), e.expected_hash(), e.ContentKey()};
  }
};

}  // namespace modelfs
