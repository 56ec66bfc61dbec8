#include "cache/disk_blob_store.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <shared_mutex>
#include <thread>

#include "cache/hash.h"
#include "common/log.h"

namespace modelfs {
namespace {

// A read within this distance of a stream's position continues the stream (anchors.md 13.B: both
// mountpoint-s3 and hf-mount tolerate 1 MiB back and 16 MiB forward). Kernel readahead and several
// FUSE threads deliver one sequential stream slightly out of order, so strict equality would
// misclassify it as random.
constexpr uint64_t kSeekBackTolerance = 1ull << 20;
constexpr uint64_t kSeekForwardTolerance = 16ull << 20;
// Streams tracked per blob: enough for tensor-parallel ranks (4-8) reading one shard.
constexpr size_t kMaxCursors = 8;
// A fetched small blob whose hash mismatches is fetched again this many times before EIO.
constexpr int kSmallBlobRetries = 2;

Status MkdirP(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); i++) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) {
        return Status::IoError("mkdir " + cur + ": " + strerror(errno));
      }
    }
    if (i < path.size()) cur.push_back(path[i]);
  }
  return Status::Ok();
}

}  // namespace

struct DiskBlobStore::Inflight {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;   // guarded by mu
  Status status;       // valid once done
  std::vector<char> data;  // the chunk's bytes, valid once done and status.ok()
};

struct DiskBlobStore::Blob {
  BlobRef ref;                        // as last seen (any repo/path naming this content)
  std::unique_ptr<BlockFile> file;    // null: cache unusable for this blob, serve uncached
  std::mutex mu;                      // guards everything below
  std::map<uint64_t, std::shared_ptr<Inflight>> inflight;  // by chunk index
  std::vector<Cursor> cursors;
  int opens = 0;
  std::set<std::string> sources;      // hosts that served this blob's bytes since start
  // Hosts whose bytes for this blob failed the whole-file hash in this run. Their answers are
  // still served (with one mirror there is nothing else) but never cached again, so known-bad
  // bytes cannot linger in the cache until the file completes and fails once more.
  std::set<std::string> bad_sources;
  uint64_t generation = 0;            // bumped when blocks are dropped; older fetches are not stored
  bool verifying = false;
  // Held shared while a fetched chunk is checked against `generation` and written, and exclusively
  // while blocks are dropped, so a fetch that started before a drop can never write after it.
  // Taken before mu.
  std::shared_mutex drop_mu;
};

Result<std::unique_ptr<DiskBlobStore>> DiskBlobStore::Open(const CacheOptions& opts,
                                                           RangeSource* source) {
  Status s = MkdirP(opts.dir + "/blobs");
  if (!s.ok()) return s;
  std::unique_ptr<DiskBlobStore> store(new DiskBlobStore(opts, source));
  store->ScanExisting();
  return store;
}

DiskBlobStore::DiskBlobStore(const CacheOptions& opts, RangeSource* source)
    : opts_(opts),
      source_(source),
      pool_(new ThreadPool(std::max(1u, opts.fetch_threads))),
      verify_pool_(new ThreadPool(1)) {}

DiskBlobStore::~DiskBlobStore() {
  // Stop background work before members it touches go away.
  pool_.reset();
  verify_pool_.reset();
}

std::string DiskBlobStore::BlobDir(const std::string& key) const {
  // Fan out by the first two hex digits of the hash so no directory grows huge.
  size_t dash = key.find('-');
  std::string hex = dash == std::string::npos ? key : key.substr(dash + 1);
  return opts_.dir + "/blobs/" + hex.substr(0, 2);
}

void DiskBlobStore::ScanExisting() {
  // Account the space of blobs left by earlier runs, so the quota covers them too. Only the index
  // headers and entries are read; a blob is opened fully when first used.
  std::string root = opts_.dir + "/blobs";
  DIR* top = opendir(root.c_str());
  if (!top) return;
  while (dirent* d = readdir(top)) {
    if (d->d_name[0] == '.') continue;
    std::string sub = root + "/" + d->d_name;
    DIR* dd = opendir(sub.c_str());
    if (!dd) continue;
    while (dirent* e = readdir(dd)) {
      std::string name = e->d_name;
      if (name.size() < 5 || name.compare(name.size() - 4, 4, ".idx") != 0) continue;
      std::string key = name.substr(0, name.size() - 4);
      std::string path = sub + "/" + name;
      FILE* f = fopen(path.c_str(), "rb");
      if (!f) continue;
      char header[64];
      uint64_t bytes = 0;
      if (fread(header, 1, 64, f) == 64) {
        char entry[16];
        while (fread(entry, 1, 16, f) == 16) {
          uint64_t sum;
          uint32_t len;
          memcpy(&sum, entry, 8);
          memcpy(&len, entry + 8, 4);
          if (sum) bytes += len;
        }
      }
      fclose(f);
      struct stat st;
      uint64_t mtime = stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_mtime) : 0;
      usage_[key] = Usage{bytes, mtime};  // older runs sort before anything touched now
      used_bytes_ += bytes;
    }
    closedir(dd);
  }
  closedir(top);
  // Logical clock starts above every mtime so blobs used in this run are newer.
  clock_ = static_cast<uint64_t>(time(nullptr)) + 1;
}

std::shared_ptr<DiskBlobStore::Blob> DiskBlobStore::GetBlob(const BlobRef& ref) {
  std::shared_ptr<Blob> b;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = blobs_.find(ref.key);
    if (it != blobs_.end()) {
      usage_[ref.key].last_access = ++clock_;
      return it->second;
    }
    b = std::make_shared<Blob>();
    b->ref = ref;
    std::string dir = BlobDir(ref.key);
    Status s = MkdirP(dir);
    if (s.ok()) {
      auto f = BlockFile::Open(dir, ref.key, ref.size);
      if (f.ok()) {
        b->file = std::move(f).value();
      } else {
        s = f.status();
      }
    }
    if (!s.ok()) MODELFS_LOG(kWarn, "cache unusable for %s, serving uncached: %s", ref.key.c_str(),
                             s.ToString().c_str());
    blobs_[ref.key] = b;
    Usage& u = usage_[ref.key];
    u.last_access = ++clock_;
    uint64_t present = b->file ? b->file->PresentBytes() : 0;
    used_bytes_ = used_bytes_ - u.bytes + present;  // the index may have been reset on open
    u.bytes = present;
  }
  MaybeScheduleVerify(b);  // complete but unverified (e.g. a crash before verification)
  return b;
}

void DiskBlobStore::OpenBlob(const BlobRef& ref) {
  auto b = GetBlob(ref);
  std::lock_guard<std::mutex> l(b->mu);
  b->opens++;
}

void DiskBlobStore::CloseBlob(const BlobRef& ref) {
  auto b = GetBlob(ref);
  std::lock_guard<std::mutex> l(b->mu);
  if (b->opens > 0) b->opens--;
}

Status DiskBlobStore::Read(const BlobRef& ref, uint64_t offset, size_t len, char* buf, size_t* n) {
  *n = 0;
  if (offset >= ref.size || len == 0) return Status::Ok();
  uint64_t end = std::min<uint64_t>(ref.size, offset + len);
  auto b = GetBlob(ref);
  Prefetch(b, offset, end - offset);

  std::vector<char> scratch;
  std::shared_ptr<Inflight> last;  // the chunk fetched for an earlier block of this read
  bool waited = false;             // this read had to wait for the network
  uint64_t last_chunk = UINT64_MAX;
  for (uint64_t pos = offset; pos < end;) {
    uint32_t i = static_cast<uint32_t>(pos / kBlockSize);
    uint64_t bstart = static_cast<uint64_t>(i) * kBlockSize;
    uint64_t blen = std::min<uint64_t>(kBlockSize, ref.size - bstart);
    uint64_t take = std::min(blen - (pos - bstart), end - pos);
    uint64_t c = pos / kChunkSize;
    char* out = buf + (pos - offset);
    if (c != last_chunk || !last) {
      bool whole = pos == bstart && take == blen;
      char* target = out;
      if (!whole) {
        scratch.resize(blen);
        target = scratch.data();
      }
      if (b->file && b->file->ReadBlock(i, target)) {
        if (!whole) memcpy(out, scratch.data() + (pos - bstart), take);
        hit_bytes_ += take;
        pos += take;
        continue;
      }
      last = FetchChunk(b, c);
      last_chunk = c;
      waited = true;
      if (!last->status.ok()) return last->status;
    }
    memcpy(out, last->data.data() + (pos - c * kChunkSize), take);
    miss_bytes_ += take;
    pos += take;
  }
  if (waited) GrowWindow(b, end);
  *n = end - offset;
  return Status::Ok();
}

std::shared_ptr<DiskBlobStore::Inflight> DiskBlobStore::FetchChunk(const std::shared_ptr<Blob>& b,
                                                                   uint64_t c) {
  std::shared_ptr<Inflight> f;
  bool mine = false;
  {
    std::lock_guard<std::mutex> l(b->mu);
    auto it = b->inflight.find(c);
    if (it != b->inflight.end()) {
      f = it->second;
    } else {
      f = std::make_shared<Inflight>();
      b->inflight[c] = f;
      mine = true;
    }
  }
  if (mine) {
    inflight_chunks_++;
    busy_++;
    RunFetch(b, c, f);
  }
  // Bounded: the fetch owner always completes (RangeSource calls have timeouts and retry caps).
  std::unique_lock<std::mutex> l(f->mu);
  f->cv.wait(l, [&] { return f->done; });
  return f;
}

void DiskBlobStore::RunFetch(const std::shared_ptr<Blob>& b, uint64_t c,
                             const std::shared_ptr<Inflight>& f) {
  const BlobRef ref = b->ref;
  uint64_t start = c * kChunkSize;
  uint64_t len = std::min<uint64_t>(kChunkSize, ref.size - start);
  uint64_t generation;
  {
    std::lock_guard<std::mutex> l(b->mu);
    generation = b->generation;
  }
  std::vector<char> data(len);
  std::string served_by;
  Status st;
  // A blob that fits in one chunk is verified before any byte of it is returned.
  bool whole_blob = start == 0 && len == ref.size;
  auto t0 = std::chrono::steady_clock::now();
  for (int attempt = 0;; attempt++) {
    fetches_++;
    st = source_->ReadAt(ref, start, len, data.data(), &served_by);
    if (st.ok()) fetched_bytes_ += len;
    if (!st.ok() || !whole_blob) break;
    if (HashHex(ref.hash_kind, data.data(), len) == ref.hash) break;
    verify_failures_++;
    MODELFS_LOG(kError, "hash mismatch for %s %s (%s): bytes from %s are wrong; refetching",
                ref.repo.Id().c_str(), ref.path.c_str(), ref.key.c_str(), served_by.c_str());
    if (attempt >= kSmallBlobRetries) {
      st = Status::Corruption("content of " + ref.path + " does not match its hash");
      break;
    }
  }
  // Hand the bytes to waiting readers first: they need not wait for the disk write. The entry
  // stays in the inflight map (done, data readable) until the blocks are on disk, so a reader that
  // arrives meanwhile copies from memory instead of missing on disk and fetching again.
  {
    std::lock_guard<std::mutex> l(f->mu);
    f->status = st;
    if (st.ok()) f->data = std::move(data);
    f->done = true;
  }
  f->cv.notify_all();
  if (st.ok()) {
    std::shared_lock<std::shared_mutex> drop(b->drop_mu);
    bool store;
    {
      std::lock_guard<std::mutex> l(b->mu);
      store = generation == b->generation && !b->bad_sources.count(served_by);
      if (store) b->sources.insert(served_by);
    }
    auto t1 = std::chrono::steady_clock::now();
    if (store) {
      StoreChunk(b, c, f->data.data(), len);
    } else {
      uncached_bytes_ += len;
    }
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    MODELFS_LOG(kDebug, "chunk %s#%llu: fetched in %.1f ms, stored in %.1f ms", ref.key.c_str(),
                (unsigned long long)c, ms(t1 - t0), ms(std::chrono::steady_clock::now() - t1));
  } else {
    MODELFS_LOG(kWarn, "fetch %s %s [%llu, +%llu) failed: %s", ref.repo.Id().c_str(),
                ref.path.c_str(), (unsigned long long)start, (unsigned long long)len,
                st.ToString().c_str());
  }
  {
    std::lock_guard<std::mutex> l(b->mu);
    b->inflight.erase(c);
  }
  if (st.ok()) MaybeScheduleVerify(b);
  inflight_chunks_--;
  busy_--;
}

void DiskBlobStore::StoreChunk(const std::shared_ptr<Blob>& b, uint64_t c, const char* data,
                               uint64_t len) {
  if (!b->file) {
    uncached_bytes_ += len;
    return;
  }
  uint64_t start = c * kChunkSize;
  for (uint64_t off = 0; off < len; off += kBlockSize) {
    uint32_t i = static_cast<uint32_t>((start + off) / kBlockSize);
    uint32_t blen = b->file->BlockLen(i);
    if (b->file->Present(i)) continue;
    if (!Admit(b->ref.key, blen)) {
      uncached_bytes_ += blen;
      continue;
    }
    Status s = b->file->WriteBlock(i, data + off);
    if (!s.ok()) {
      MODELFS_LOG(kWarn, "cache write failed, serving uncached: %s", s.ToString().c_str());
      std::lock_guard<std::mutex> l(mu_);
      usage_[b->ref.key].bytes -= blen;
      used_bytes_ -= blen;
      uncached_bytes_ += blen;
    }
  }
}

bool DiskBlobStore::Admit(const std::string& key, uint64_t bytes) {
  std::vector<std::string> victims;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (opts_.max_bytes && used_bytes_ + bytes > opts_.max_bytes) {
      // Evict least recently used blobs that nobody has open or is fetching.
      std::vector<std::pair<uint64_t, std::string>> lru;
      for (auto& [k, u] : usage_) {
        if (k == key || u.bytes == 0) continue;
        auto it = blobs_.find(k);
        if (it != blobs_.end()) {
          std::lock_guard<std::mutex> bl(it->second->mu);
          if (it->second->opens > 0 || !it->second->inflight.empty() || it->second->verifying) continue;
        }
        lru.emplace_back(u.last_access, k);
      }
      std::sort(lru.begin(), lru.end());
      uint64_t freed = 0;
      for (auto& [t, k] : lru) {
        if (used_bytes_ - freed + bytes <= opts_.max_bytes) break;
        freed += usage_[k].bytes;
        victims.push_back(k);
      }
      if (used_bytes_ - freed + bytes > opts_.max_bytes) return false;
      for (auto& k : victims) {
        used_bytes_ -= usage_[k].bytes;
        evicted_bytes_ += usage_[k].bytes;
        usage_[k].bytes = 0;
      }
    }
    used_bytes_ += bytes;
    usage_[key].bytes += bytes;
    for (auto& k : victims) {
      auto it = blobs_.find(k);
      if (it != blobs_.end() && it->second->file) {
        it->second->file->DropAll();
      } else {
        std::string base = BlobDir(k) + "/" + k;
        unlink((base + ".data").c_str());
        unlink((base + ".idx").c_str());
      }
    }
  }
  return true;
}

void DiskBlobStore::Prefetch(const std::shared_ptr<Blob>& b, uint64_t off, uint64_t len) {
  std::vector<std::pair<uint64_t, std::shared_ptr<Inflight>>> todo;
  {
    std::lock_guard<std::mutex> l(b->mu);
    static std::atomic<uint64_t> tick{0};
    uint64_t now = ++tick;
    Cursor* cur = nullptr;
    for (auto& c : b->cursors) {
      if (off + kSeekBackTolerance >= c.next && off <= c.next + kSeekForwardTolerance) {
        cur = &c;
        break;
      }
    }
    if (!cur) {
      if (b->cursors.size() >= kMaxCursors) {
        auto lru = std::min_element(b->cursors.begin(), b->cursors.end(),
                                    [](const Cursor& x, const Cursor& y) { return x.last_use < y.last_use; });
        b->cursors.erase(lru);
      }
      b->cursors.push_back(Cursor{off + len, opts_.initial_window, 0, 0, now});
      return;  // a lone read is not a stream yet: fetch only what it needs
    }
    cur->hits++;
    cur->next = std::max(cur->next, off + len);
    cur->last_use = now;
    uint64_t from = std::max(cur->prefetched_to, ((off + len) / kChunkSize) * kChunkSize);
    uint64_t to = std::min(b->ref.size, off + len + cur->window);
    uint64_t pos = from;
    for (; pos < to; pos += kChunkSize) {
      uint64_t c = pos / kChunkSize;
      if (b->inflight.count(c)) continue;
      bool present = b->file != nullptr;
      uint32_t first = static_cast<uint32_t>(c * kChunkSize / kBlockSize);
      uint32_t last = static_cast<uint32_t>((std::min(b->ref.size, (c + 1) * kChunkSize) - 1) / kBlockSize);
      for (uint32_t i = first; present && i <= last; i++) present = b->file->Present(i);
      if (present) continue;
      if (inflight_chunks_ >= opts_.max_inflight_chunks) break;  // budget: resume on a later read
      auto f = std::make_shared<Inflight>();
      b->inflight[c] = f;
      inflight_chunks_++;
      busy_++;
      todo.emplace_back(c, f);
    }
    cur->prefetched_to = std::max(cur->prefetched_to, pos);
  }
  for (auto& [c, f] : todo) {
    auto blob = b;
    uint64_t chunk = c;
    auto fl = f;
    if (!pool_->Submit([this, blob, chunk, fl] { RunFetch(blob, chunk, fl); })) {
      RunFetch(blob, chunk, fl);  // shutting down: complete it so no waiter hangs
    }
  }
}

void DiskBlobStore::GrowWindow(const std::shared_ptr<Blob>& b, uint64_t end) {
  // The reader of a stream caught up with its prefetch and waited: the window (and with it the
  // number of chunks in flight, i.e. parallel connections) is too small for this link's
  // bandwidth-delay product, so double it. While prefetch keeps ahead it stays as it is: on a fast
  // local link a few connections suffice, and more only compete for the server and the CPU.
  std::lock_guard<std::mutex> l(b->mu);
  for (auto& c : b->cursors) {
    if (end + kSeekBackTolerance >= c.next && end <= c.next + kSeekForwardTolerance && c.hits > 0) {
      c.window = std::min(c.window * 2, opts_.max_window);
      return;
    }
  }
}

void DiskBlobStore::MaybeScheduleVerify(const std::shared_ptr<Blob>& b) {
  if (!b->file || b->file->verified() || !b->file->AllPresent()) return;
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (b->verifying) return;
    b->verifying = true;
  }
  busy_++;
  auto blob = b;
  if (!verify_pool_->Submit([this, blob] { Verify(blob); })) busy_--;
}

void DiskBlobStore::Verify(const std::shared_ptr<Blob>& b) {
  const BlobRef ref = b->ref;
  FileHasher hasher(ref.hash_kind, ref.size);
  std::vector<char> buf(kBlockSize);
  bool complete = true;
  for (uint32_t i = 0; i < b->file->num_blocks(); i++) {
    if (!b->file->ReadBlock(i, buf.data())) {  // vanished or corrupt: refetched on a later read
      complete = false;
      break;
    }
    hasher.Update(buf.data(), b->file->BlockLen(i));
  }
  if (complete) {
    std::string got = hasher.FinishHex();
    if (got == ref.hash) {
      Status s = b->file->MarkVerified();
      if (s.ok()) {
        verified_++;
        MODELFS_LOG(kInfo, "verified %s %s (%s)", ref.repo.Id().c_str(), ref.path.c_str(), ref.key.c_str());
      } else {
        MODELFS_LOG(kWarn, "could not persist verification of %s: %s", ref.key.c_str(), s.ToString().c_str());
      }
    } else {
      std::string sources;
      {
        std::lock_guard<std::mutex> l(b->mu);
        for (auto& s : b->sources) sources += (sources.empty() ? "" : ",") + s;
      }
      verify_failures_++;
      MODELFS_LOG(kError,
                  "hash mismatch for %s %s: expected %s, got %s; served by %s; dropping its blocks",
                  ref.repo.Id().c_str(), ref.path.c_str(), ref.hash.c_str(), got.c_str(),
                  sources.empty() ? "(earlier run)" : sources.c_str());
      ForgetBlocks(b);
    }
  }
  {
    std::lock_guard<std::mutex> l(b->mu);
    b->verifying = false;
  }
  busy_--;
}

void DiskBlobStore::ForgetBlocks(const std::shared_ptr<Blob>& b) {
  {
    std::unique_lock<std::shared_mutex> drop(b->drop_mu);
    {
      std::lock_guard<std::mutex> l(b->mu);
      b->bad_sources.insert(b->sources.begin(), b->sources.end());
      b->sources.clear();
      b->generation++;
      for (auto& c : b->cursors) c.prefetched_to = 0;
    }
    b->file->DropAll();
  }
  std::function<void(const std::string&)> cb;
  {
    std::lock_guard<std::mutex> l(mu_);
    used_bytes_ -= usage_[b->ref.key].bytes;
    usage_[b->ref.key].bytes = 0;
    cb = invalidate_cb_;
  }
  if (cb) cb(b->ref.key);
}

void DiskBlobStore::SetInvalidateCallback(std::function<void(const std::string&)> cb) {
  std::lock_guard<std::mutex> l(mu_);
  invalidate_cb_ = std::move(cb);
}

bool DiskBlobStore::IsVerified(const std::string& key) {
  std::shared_ptr<Blob> b;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = blobs_.find(key);
    if (it == blobs_.end()) return false;
    b = it->second;
  }
  return b->file && b->file->verified();
}

bool DiskBlobStore::WaitIdle(int timeout_ms) {
  // Polling keeps busy_ a plain atomic, usable under any lock; only tests and tools call this.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (busy_.load() != 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

CacheStats DiskBlobStore::Stats() const {
  CacheStats s;
  s.hit_bytes = hit_bytes_;
  s.miss_bytes = miss_bytes_;
  s.fetched_bytes = fetched_bytes_;
  s.fetches = fetches_;
  s.verified = verified_;
  s.verify_failures = verify_failures_;
  s.evicted_bytes = evicted_bytes_;
  s.uncached_bytes = uncached_bytes_;
  std::lock_guard<std::mutex> l(mu_);
  s.used_bytes = used_bytes_;
  uint64_t corrupt = 0;
  for (auto& [k, b] : blobs_)
    if (b->file) corrupt += b->file->corrupt_blocks();
  s.corrupt_blocks = corrupt;
  return s;
}

}  // namespace modelfs
