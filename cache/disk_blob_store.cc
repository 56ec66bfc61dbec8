#include "cache/disk_blob_store.h"
#include "common/file_util.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <shared_mutex>
#include <thread>
#include <tuple>

#include "cache/hash.h"
#include "cache/pins.h"
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

// Filesystems allocate whole pages: a 100-byte last block still takes 4 KiB of disk. Charging pages
// makes the quota a bound on real disk use. Only a blob's last block can be unaligned, so the charge
// of a blob's present bytes is the page-rounded sum.
constexpr uint64_t kDiskPage = 4096;
uint64_t Charge(uint64_t bytes) { return (bytes + kDiskPage - 1) / kDiskPage * kDiskPage; }

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
  std::map<uint64_t, std::shared_ptr<Inflight>> spill;     // done, not cached, kept in memory
  std::vector<Cursor> cursors;
  int opens = 0;
  std::set<std::string> sources;      // hosts that served this blob's bytes since start
  // Hosts whose bytes for this blob failed the whole-file hash in this run. Their answers are
  // still served (with one mirror there is nothing else) but never cached again, so known-bad
  // bytes cannot linger in the cache until the file completes and fails once more.
  std::set<std::string> bad_sources;
  uint64_t generation = 0;            // bumped when blocks are dropped; older fetches are not stored
  bool verifying = false;
  uint64_t corrupt_logged = 0;        // BlockFile::corrupt_blocks() when last logged
  // Held shared while a fetched chunk is checked against `generation` and written, and exclusively
  // while blocks are dropped, so a fetch that started before a drop can never write after it.
  // Taken before mu.
  std::shared_mutex drop_mu;
};

Result<std::unique_ptr<DiskBlobStore>> DiskBlobStore::Open(const CacheOptions& opts,
                                                           RangeSource* source) {
  Status s = MkdirP(opts.dir + "/blobs");
  if (!s.ok() && access(opts.dir.c_str(), F_OK) != 0) return s;
  if (!s.ok()) {  // read-only or full cache filesystem: serve what is there, the rest uncached
    MODELFS_LOG(kWarn, "cache %s is not writable (%s): reads not cached", opts.dir.c_str(),
                s.ToString().c_str());
  }
  std::unique_ptr<DiskBlobStore> store(new DiskBlobStore(opts, source));
  store->quota_bytes_ = opts.max_bytes;
  if (opts.max_fs_percent > 0 || opts.min_free_percent > 0) {
    struct statvfs vfs;
    if (statvfs(opts.dir.c_str(), &vfs) != 0) {
      return Status::IoError("statvfs " + opts.dir + ": " + strerror(errno));
    }
    double fs_size = static_cast<double>(vfs.f_blocks) * static_cast<double>(vfs.f_frsize);
    if (opts.max_fs_percent > 0) {
      store->quota_bytes_ = static_cast<uint64_t>(fs_size * std::min(opts.max_fs_percent, 100.0) / 100);
    }
    store->min_free_bytes_ = static_cast<uint64_t>(fs_size * std::min(opts.min_free_percent, 100.0) / 100);
  }
  store->ScanExisting();
  MODELFS_LOG(kInfo, "cache %s: quota %llu bytes (0 = none), keeping %llu bytes of its filesystem "
              "free, %llu bytes cached", opts.dir.c_str(), (unsigned long long)store->quota_bytes_,
              (unsigned long long)store->min_free_bytes_, (unsigned long long)store->used_bytes_);
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
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".data") == 0) {
        // A data file whose index is gone (a crash between the two unlinks of an eviction) would
        // hold space the quota does not see: remove it.
        std::string stem = sub + "/" + name.substr(0, name.size() - 5);
        if (access((stem + ".idx").c_str(), F_OK) != 0 && errno == ENOENT) {
          unlink((stem + ".data").c_str());
        }
        continue;
      }
      if (name.size() < 5 || name.compare(name.size() - 4, 4, ".idx") != 0) continue;
      std::string key = name.substr(0, name.size() - 4);
      std::string path = sub + "/" + name;
      BlockFileSummary sum;
      if (!BlockFile::Peek(path, &sum)) continue;
      uint64_t bytes = Charge(sum.present_bytes);
      struct stat st;
      uint64_t mtime = stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_mtime) : 0;
      // Older runs sort before anything touched now.
      usage_[key] = Usage{bytes, mtime, sum.verified && sum.present_blocks == sum.num_blocks};
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
    uint64_t present = b->file ? Charge(b->file->PresentBytes()) : 0;
    used_bytes_ = used_bytes_ - u.bytes + present;  // the index may have been reset on open
    u.bytes = present;
    u.verified = b->file && b->file->verified();
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
      if (b->file) NoteCorruption(b);
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
    auto sp = b->spill.find(c);
    if (it != b->inflight.end()) {
      f = it->second;
    } else if (sp != b->spill.end()) {
      return sp->second;  // fetched before but not cacheable: no second request
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
    bool cached = store && StoreChunk(b, c, f->data.data(), len);
    if (!store) uncached_bytes_ += len;
    if (store && !cached) Spill(b, c, f);
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

void DiskBlobStore::Spill(const std::shared_ptr<Blob>& b, uint64_t c,
                          const std::shared_ptr<Inflight>& f) {
  std::lock_guard<std::mutex> sl(spill_mu_);
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (!b->spill.emplace(c, f).second) return;
  }
  spill_fifo_.emplace_back(b, c);
  while (spill_fifo_.size() > kMaxSpillChunks) {
    auto [wb, oc] = spill_fifo_.front();
    spill_fifo_.pop_front();
    if (auto ob = wb.lock()) {
      std::lock_guard<std::mutex> l(ob->mu);
      ob->spill.erase(oc);
    }
  }
}

bool DiskBlobStore::StoreChunk(const std::shared_ptr<Blob>& b, uint64_t c, const char* data,
                               uint64_t len) {
  if (!b->file) {
    uncached_bytes_ += len;
    return false;
  }
  bool all = true;
  uint64_t start = c * kChunkSize;
  for (uint64_t off = 0; off < len; off += kBlockSize) {
    uint32_t i = static_cast<uint32_t>((start + off) / kBlockSize);
    uint32_t blen = b->file->BlockLen(i);
    if (b->file->Present(i)) continue;
    if (!Admit(b->ref.key, Charge(blen))) {
      uncached_bytes_ += blen;
      refused_bytes_ += blen;
      all = false;
      continue;
    }
    Status s = b->file->WriteBlock(i, data + off);
    {
      std::lock_guard<std::mutex> l(mu_);
      pending_bytes_ -= Charge(blen);  // written (or failed): statvfs now sees it
    }
    if (!s.ok()) {
      // ENOSPC from another process filling the disk, a read-only or vanished directory: the
      // reader still gets its bytes (they are in memory); only caching is skipped.
      MODELFS_LOG(kWarn, "cache write failed, serving uncached: %s", s.ToString().c_str());
      std::lock_guard<std::mutex> l(mu_);
      usage_[b->ref.key].bytes -= Charge(blen);
      used_bytes_ -= Charge(blen);
      uncached_bytes_ += blen;
      all = false;
    }
  }
  return all;
}

bool DiskBlobStore::EvictUntil(const std::string& key,
                               const std::function<bool(uint64_t freed)>& fits) {
  if (fits(0)) return true;
  RefreshPins();
  // Candidates: blobs with cached bytes that nobody has open, is fetching or verifying. Whole
  // verified files go first (a partial file is likely being filled and would be fetched again at
  // once), least recently used first within each class.
  std::vector<std::tuple<bool, uint64_t, std::string>> lru;
  for (auto& [k, u] : usage_) {
    if (k == key || u.bytes == 0 || pinned_.count(k)) continue;
    auto it = blobs_.find(k);
    if (it != blobs_.end()) {
      std::lock_guard<std::mutex> bl(it->second->mu);
      if (it->second->opens > 0 || !it->second->inflight.empty() || it->second->verifying) continue;
    }
    lru.emplace_back(!u.verified, u.last_access, k);
  }
  std::sort(lru.begin(), lru.end());
  std::vector<std::string> victims;
  uint64_t freed = 0;
  for (auto& [partial, t, k] : lru) {
    if (fits(freed)) break;
    freed += usage_[k].bytes;
    victims.push_back(k);
  }
  if (!fits(freed)) return false;
  // Drop before returning: the caller writes only after the space is really released.
  for (auto& k : victims) {
    Usage& u = usage_[k];
    used_bytes_ -= u.bytes;
    evicted_bytes_ += u.bytes;
    MODELFS_LOG(kDebug, "evicting %s (%llu bytes, %s)", k.c_str(), (unsigned long long)u.bytes,
                u.verified ? "verified" : "partial");
    u.bytes = 0;
    u.verified = false;
    auto it = blobs_.find(k);
    if (it != blobs_.end() && it->second->file) {
      it->second->file->DropAll();
    } else {
      std::string base = BlobDir(k) + "/" + k;
      unlink((base + ".idx").c_str());  // index first: a data file without one is never read
      unlink((base + ".data").c_str());
    }
  }
  return true;
}

void DiskBlobStore::RefreshPins() {
  // One stat per eviction; the pins are re-read only when the directory changed.
  struct stat st;
  int64_t stamp = 0;
  if (stat((opts_.dir + "/pins").c_str(), &st) == 0) {
    stamp = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  if (stamp == pins_stamp_) return;
  pins_stamp_ = stamp;
  pinned_.clear();
  for (const auto& p : ListPins(opts_.dir)) pinned_.insert(p.keys.begin(), p.keys.end());
}

bool DiskBlobStore::Admit(const std::string& key, uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  bool ok = true;
  if (quota_bytes_) {
    ok = EvictUntil(key, [&](uint64_t freed) { return used_bytes_ - freed + bytes <= quota_bytes_; });
  }
  if (ok && min_free_bytes_) {
    struct statvfs vfs;
    if (statvfs(opts_.dir.c_str(), &vfs) == 0) {
      uint64_t avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
      // Blocks admitted but not yet written are not in statvfs's answer yet: count them, so
      // concurrent writers cannot each see the same free space.
      ok = EvictUntil(key, [&](uint64_t freed) {
        return avail + freed >= bytes + min_free_bytes_ + pending_bytes_;
      });
    }
  }
  if (!ok) {
    if (!full_logged_) {
      MODELFS_LOG(kWarn,
                  "cache full (%llu of %llu bytes used, everything else in use or the filesystem "
                  "below its free-space floor of %llu bytes): serving uncached",
                  (unsigned long long)used_bytes_, (unsigned long long)quota_bytes_,
                  (unsigned long long)min_free_bytes_);
      full_logged_ = true;
    }
    return false;
  }
  full_logged_ = false;
  used_bytes_ += bytes;
  pending_bytes_ += bytes;
  peak_used_bytes_ = std::max(peak_used_bytes_, used_bytes_);
  usage_[key].bytes += bytes;
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
      if (b->inflight.count(c) || b->spill.count(c)) continue;
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
        {
          std::lock_guard<std::mutex> l(mu_);
          usage_[ref.key].verified = true;
        }
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
      ForgetBlocks(b);  // first, so that once the line below is logged the bad bytes are gone
      MODELFS_LOG(kError,
                  "hash mismatch for %s %s: expected %s, got %s; served by %s; dropped its blocks",
                  ref.repo.Id().c_str(), ref.path.c_str(), ref.hash.c_str(), got.c_str(),
                  sources.empty() ? "(earlier run)" : sources.c_str());
    }
  }
  {
    std::lock_guard<std::mutex> l(b->mu);
    b->verifying = false;
  }
  busy_--;
}

void DiskBlobStore::ForgetBlocks(const std::shared_ptr<Blob>& b) {
  std::set<std::string> bad;
  {
    std::unique_lock<std::shared_mutex> drop(b->drop_mu);
    {
      std::lock_guard<std::mutex> l(b->mu);
      bad = b->sources;
      b->bad_sources.insert(b->sources.begin(), b->sources.end());
      b->sources.clear();
      b->generation++;
      b->spill.clear();
      for (auto& c : b->cursors) c.prefetched_to = 0;
    }
    b->file->DropAll();
  }
  // Tell the source which hosts served bytes that failed the hash, so that with several mirrors
  // the refetch goes elsewhere (fetch/mirror_set.h).
  for (const auto& host : bad) source_->ReportBadSource(b->ref, host);
  {
    std::lock_guard<std::mutex> l(mu_);
    used_bytes_ -= usage_[b->ref.key].bytes;
    usage_[b->ref.key].bytes = 0;
    usage_[b->ref.key].verified = false;
  }
  std::lock_guard<std::mutex> l(cb_mu_);
  if (invalidate_cb_) invalidate_cb_(b->ref.key);
}

void DiskBlobStore::NoteCorruption(const std::shared_ptr<Blob>& b) {
  // A miss on a block that was present means its bytes changed or vanished under us (a torn
  // write after a crash, a cache file truncated or overwritten by someone else): say so once per
  // newly found block, then the chunk is refetched like any miss.
  uint64_t now = b->file->corrupt_blocks();
  std::lock_guard<std::mutex> l(b->mu);
  if (now == b->corrupt_logged) return;
  MODELFS_LOG(kWarn, "cached data of %s %s (%s) was unreadable or corrupt (%llu blocks so far); refetching",
              b->ref.repo.Id().c_str(), b->ref.path.c_str(), b->ref.key.c_str(),
              (unsigned long long)now);
  b->corrupt_logged = now;
}

void DiskBlobStore::SetInvalidateCallback(std::function<void(const std::string&)> cb) {
  std::lock_guard<std::mutex> l(cb_mu_);
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
  s.peak_used_bytes = peak_used_bytes_;
  s.quota_bytes = quota_bytes_;
  s.refused_bytes = refused_bytes_;
  uint64_t corrupt = 0;
  for (auto& [k, b] : blobs_)
    if (b->file) corrupt += b->file->corrupt_blocks();
  s.corrupt_blocks = corrupt;
  return s;
}

}  // namespace modelfs
