// ModelFs, the file side: open (with the shard hints a sharded checkpoint gives the store), release,
// and reads, with what each open handle was asked for and given (ModelFs::OpenFile) so that a
// whole-file reader gets the file's last bytes only once its hash judged it (docs/ARCHITECTURE.md,
// "Fail closed at the end of a file"). The tree and the lookups are in fs/model_fs.cc.
#include "fs/model_fs.h"

#include <fcntl.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>

#include "common/log.h"
#include "fs/model_fs_internal.h"

namespace modelfs {

std::string NextShardName(const std::string& name) {
  // <stem>-<i>-of-<n><ext>, i and n of the same width (model-00001-of-00004.safetensors,
  // pytorch_model-00002-of-00003.bin): the same name with i + 1, or "" after the last.
  const size_t of = name.rfind("-of-");
  if (of == std::string::npos) return "";
  size_t n_end = of + 4;
  while (n_end < name.size() && isdigit(static_cast<unsigned char>(name[n_end]))) n_end++;
  size_t i_begin = of;
  while (i_begin > 0 && isdigit(static_cast<unsigned char>(name[i_begin - 1]))) i_begin--;
  const size_t width = of - i_begin;
  if (width == 0 || width > 9 || n_end - (of + 4) != width || i_begin == 0 || name[i_begin - 1] != '-') return "";
  const unsigned long i = std::stoul(name.substr(i_begin, width));
  const unsigned long total = std::stoul(name.substr(of + 4, width));
  if (i + 1 > total) return "";
  std::string next = std::to_string(i + 1);
  if (next.size() > width) return "";
  next.insert(0, width - next.size(), '0');
  return name.substr(0, i_begin) + next + name.substr(of);
}

std::string FirstShardName(const std::string& index_name, const std::vector<std::string>& siblings) {
  // <base>.index.json names the shards <stem>-<i>-of-<n><ext> of <base> = <stem><ext>
  // (model.safetensors.index.json: model-00001-of-00004.safetensors).
  static const std::string kIndex = ".index.json";
  if (index_name.size() <= kIndex.size() ||
      index_name.compare(index_name.size() - kIndex.size(), kIndex.size(), kIndex) != 0) {
    return "";
  }
  const std::string base = index_name.substr(0, index_name.size() - kIndex.size());
  const size_t dot = base.rfind('.');
  if (dot == std::string::npos || dot == 0) return "";
  const std::string prefix = base.substr(0, dot) + "-", ext = base.substr(dot);
  for (const std::string& name : siblings) {
    if (name.size() <= prefix.size() + ext.size() || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - ext.size(), ext.size(), ext) != 0) {
      continue;
    }
    // The first shard is the one whose successor is numbered 2 (or a checkpoint of one shard).
    const std::string middle = name.substr(prefix.size(), name.size() - prefix.size() - ext.size());
    const size_t of = middle.find("-of-");
    if (of == std::string::npos || of == 0 || of + 4 + of != middle.size()) continue;
    const std::string i = middle.substr(0, of), n = middle.substr(of + 4);
    if (i.find_first_not_of("0123456789") != std::string::npos || n.find_first_not_of("0123456789") != std::string::npos)
      continue;
    if (std::stoul(i) == 1) return name;
  }
  return "";
}

Status ModelFs::Open(uint64_t ino, int flags, uint64_t* fh, bool* keep_cache) {
  if (fh != nullptr) *fh = 0;
  if (keep_cache != nullptr) *keep_cache = true;
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_APPEND | O_CREAT)) != 0) {
    return Status::ReadOnly("modelfs is read-only");
  }
  const Node* n;
  {
    std::shared_lock lock(table_mu_);
    n = FindLocked(ino);
  }
  if (n == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  if (n->kind == Kind::kRefFile) return Status::Ok();  // content lives in the node
  if (n->kind != Kind::kFile) return Status::InvalidArgument("not a file");
  store_.OpenBlob(n->blob);  // n is an immutable kFile node: safe without the lock
  if (keep_cache != nullptr) *keep_cache = store_.IsVerified(n->blob.key);
  if (fh != nullptr) *fh = reinterpret_cast<uint64_t>(new OpenFile);
  // A sharded checkpoint is loaded shard after shard: tell the store which files follow this one
  // (two deep, so the store can look ahead past the next shard).
  const Node* cur = n;
  for (int depth = 0; depth < 2; depth++) {
    const std::string next_name = NextShardName(cur->name);
    if (next_name.empty()) break;
    const Node* next = nullptr;
    {
      std::shared_lock lock(table_mu_);
      auto ino_next = FindChildLocked(cur->parent, next_name);
      if (ino_next) next = FindLocked(*ino_next);
    }
    if (next == nullptr || next->kind != Kind::kFile) break;
    store_.HintNext(cur->blob, next->blob);
    cur = next;
  }
  // A sharded checkpoint's index is read by a loader of the model, which opens the first shard
  // next and reads all of it: the store may fetch its head now (and needs no evidence that the
  // reader reads all of the file).
  if (n->name.size() > 11 && n->name.compare(n->name.size() - 11, 11, ".index.json") == 0) {
    const Node* first = nullptr;
    {
      std::shared_lock lock(table_mu_);
      const Node* dir = FindLocked(n->parent);
      std::vector<std::string> names;
      if (dir != nullptr) {
        for (const auto& [name, child] : dir->children) names.push_back(name);
      }
      const std::string first_name = FirstShardName(n->name, names);
      if (!first_name.empty()) {
        auto ino_first = FindChildLocked(n->parent, first_name);
        if (ino_first) first = FindLocked(*ino_first);
      }
    }
    if (first != nullptr && first->kind == Kind::kFile) store_.HintLoad(first->blob);
  }
  return Status::Ok();
}

void ModelFs::Release(uint64_t ino, uint64_t fh) {
  delete reinterpret_cast<OpenFile*>(fh);
  const Node* n;
  {
    std::shared_lock lock(table_mu_);
    n = FindLocked(ino);
  }
  if (n != nullptr && n->kind == Kind::kFile) store_.CloseBlob(n->blob);
}

void ModelFs::OpenFile::Ask(uint64_t begin, uint64_t end) {
  // Merge [begin, end) with the ranges it touches or adjoins.
  auto it = asked.upper_bound(begin);
  if (it != asked.begin() && std::prev(it)->second >= begin) {
    --it;
    begin = it->first;
    end = std::max(end, it->second);
    it = asked.erase(it);
  }
  while (it != asked.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = asked.erase(it);
  }
  asked.emplace(begin, end);
  // A random reader leaves many ranges: keep the one from the start (all that Asked looks at)
  // and a bounded number of others.
  if (asked.size() > kMaxAskedRanges) {
    auto head = asked.find(0);
    const uint64_t head_end = head != asked.end() ? head->second : 0;
    asked.clear();
    if (head_end > 0) asked.emplace(0, head_end);
  }
}

uint64_t ModelFs::OpenFile::AskedBytes() const {
  uint64_t total = 0;
  for (const auto& [begin, end] : asked) total += end - begin;
  return total;
}

bool ModelFs::OpenFile::Asked(uint64_t end) const {
  if (end == 0) return true;
  auto it = asked.find(0);
  return it != asked.end() && it->second >= end;
}

Status ModelFs::Read(uint64_t ino, uint64_t offset, size_t size, ReadDest dest, size_t* n, uint64_t fh,
                     BlobStore::FileSpan* span) {
  *n = 0;
  const Node* node;
  {
    std::shared_lock lock(table_mu_);
    node = FindLocked(ino);
  }
  if (node == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  if (node->kind == Kind::kRefFile) {  // immutable once published, like a kFile node
    if (offset < node->data.size()) {
      *n = std::min<size_t>(size, node->data.size() - offset);
      memcpy(dest.get(), node->data.data() + offset, *n);
    }
    return Status::Ok();
  }
  if (node->kind != Kind::kFile) return Status::InvalidArgument("not a file");
  // A reader given bytes of a file whose hash failed since: every later read fails, EOF included.
  auto* const handle = reinterpret_cast<OpenFile*>(fh);
  const uint64_t failures = handle != nullptr ? store_.HashFailures(node->blob) : 0;
  if (handle != nullptr) {
    std::lock_guard<std::mutex> l(handle->mu);
    if (handle->served && handle->failures != failures) {
      return Status::Corruption(node->blob.repo.Id() + " " + node->blob.path +
                                " failed its hash after this reader was given bytes of it; "
                                "open it again to read the refetched file");
    }
  }
  const uint64_t file_size = node->blob.size;
  if (offset >= file_size || size == 0) return Status::Ok();
  const size_t len = static_cast<size_t>(std::min<uint64_t>(size, file_size - offset));
  // Fail closed at the end of a file: a reader that asked for all of it before these last bytes
  // gets them only once the whole-file hash judged the file (what it was given but the cache
  // could not keep is fetched again for that), and EIO if the hash failed.
  bool whole = false;
  if (handle != nullptr) {
    std::lock_guard<std::mutex> l(handle->mu);
    // Kernel readahead reaches the threads in any order: the file's last read may come before
    // reads of the window ahead of it. A reader that asked for all but that window, and for half
    // of the file at least, is reading the whole file.
    const uint64_t window = OpenFile::kReadaheadReorderBytes;
    whole = offset + len == file_size && handle->Asked(offset > window ? offset - window : 0) &&
            2 * (handle->AskedBytes() + len) >= file_size;
    handle->Ask(offset, offset + len);
  }
  if (whole) {
    Status c = store_.CompleteForReader(node->blob);
    if (!c.ok()) {
      MODELFS_LOG(kWarn, "read %s %s [%llu, +%zu): %s", node->blob.repo.Id().c_str(), node->blob.path.c_str(),
                  (unsigned long long)offset, len, c.ToString().c_str());
      return c;
    }
  }
  Status s = store_.ReadOrSpan(node->blob, offset, len, std::move(dest), n, span);
  if (s.ok() && *n > 0 && handle != nullptr) {
    // As of before this read, so that a failure during it counts; but a first read that waited
    // for the file to verify (after a failure the store serves it only verified) got verified
    // bytes: failures before that are not this reader's.
    const bool verified_now = failures > 0 && store_.IsVerified(node->blob.key);
    const uint64_t baseline = verified_now ? store_.HashFailures(node->blob) : failures;
    std::lock_guard<std::mutex> l(handle->mu);
    if (!handle->served) {
      handle->served = true;
      handle->failures = baseline;
    }
  }
  if (!s.ok()) {
    MODELFS_LOG(kWarn, "read %s %s [%llu, +%zu): %s", node->blob.repo.Id().c_str(), node->blob.path.c_str(),
                (unsigned long long)offset, len, s.ToString().c_str());
  }
  return s;
}

}  // namespace modelfs
