#include "cache/disk_blob_store.h"
#include "common/file_util.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <shared_mutex>
#include <thread>
#include <tuple>

#include "cache/hash.h"
#include "cache/pins.h"
#include "cache/safetensors.h"
#include "common/log.h"

namespace modelfs {
namespace {

// A read within this distance of a stream's position continues the stream (anchors.md 13.B: both
// mountpoint-s3 and hf-mount tolerate 1 MiB back and 16 MiB forward). Kernel readahead and several
// FUSE threads deliver one sequential stream slightly out of order, so strict equality would
// misclassify it as random.
constexpr uint64_t kSeekBackTolerance = 1ull << 20;
constexpr uint64_t kSeekForwardTolerance = 16ull << 20;
// A stream that began in a safetensors header and reads this far past its end (at least; see
// RegionSlack) is a sequential reader of the file.
constexpr uint64_t kHeaderSlack = 1ull << 20;
// The kernel's page: reads through the page cache begin on a page boundary.
constexpr uint64_t kPageSize = 4096;
// Streams tracked per blob: enough for tensor-parallel ranks (4-8) reading one shard.
constexpr size_t kMaxCursors = 8;
// A reader of a safetensors file that goes back this many times, to bytes neither on disk nor on
// the wire further before the furthest read than the kernel reorders a stream, reads the file in
// an order of its own (mmap in a framework's module order, a random order): it is taken to read
// all of the file, which is then filled in the background (ScheduleFill) instead of being
// discovered tensor by tensor, each at a round trip's cost. A reader of a few tensors in file
// order (the header and one tensor, a pipeline stage's layers) never goes back, so never
// triggers it; one that reads two tensors, the second before the first, pays for the file.
constexpr uint32_t kScatterBackJumps = 1;
// A fetched small blob whose hash mismatches is fetched again this many times before EIO.
constexpr int kSmallBlobRetries = 2;
// An answer from a host blamed for this blob's hash failure is fetched again up to this many times
// (the source tries that host last) before it is used.
constexpr int kDistrustedRefetches = 2;
// A reader waiting for a whole-file fill (verify before read) gives up after this long without
// any chunk ending or any hashing progress: a backstop, as every fetch is bounded by itself.
constexpr int kFillStallSeconds = 300;

// Filesystems allocate whole pages: a 100-byte last block still takes 4 KiB of disk. Charging pages
// makes the quota a bound on real disk use. Only a blob's last block can be unaligned, so the charge
// of a blob's present bytes is the page-rounded sum.
constexpr uint64_t kDiskPage = 4096;
uint64_t Charge(uint64_t bytes) { return (bytes + kDiskPage - 1) / kDiskPage * kDiskPage; }
// An ext4 inode holds 4 extents; more need a 4 KiB leaf of 340. A sparse data file has at most
// one extent per present block (1 MiB, under ext4's 128 MiB extent limit), so a leaf page per
// 340 blocks bounds its extent tree (a file that big has a page for its index node too).
constexpr uint64_t kExtentsPerPage = 340;
// The disk a blob's files take besides block data: its index (64-byte header, 16 bytes per block)
// and its data file's extent pages.
uint64_t FilesCharge(uint64_t size) {
  const uint64_t blocks = (size + kBlockSize - 1) / kBlockSize;
  return Charge(64 + 16 * blocks) + kDiskPage * ((blocks + kExtentsPerPage - 1) / kExtentsPerPage);
}
// Allocated bytes of a path (st_blocks), and of everything under it if it is a directory.
uint64_t AllocatedTree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return 0;
  uint64_t total = static_cast<uint64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) return total;
  DIR* d = opendir(path.c_str());
  if (!d) return total;
  while (dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    total += AllocatedTree(path + "/" + e->d_name);
  }
  closedir(d);
  return total;
}

}  // namespace

// Chunk buffers (4 MiB) are recycled rather than freed: allocating one per fetch either zero-fills
// and faults it in afresh (an mmap per buffer: cold reads ran at half speed) or, once glibc raises
// its mmap threshold, leaves freed buffers scattered over per-thread arenas (RSS grew far past what
// was in use). The pool keeps up to `keep` free buffers; more than that in use at once are freed.
class DiskBlobStore::BufferPool {
 public:
  explicit BufferPool(size_t keep) : keep_(keep) {}
  std::unique_ptr<char[]> Get() {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!free_.empty()) {
        std::unique_ptr<char[]> p = std::move(free_.back());
        free_.pop_back();
        return p;
      }
    }
    return std::unique_ptr<char[]>(new char[kChunkSize]);  // uninitialized: a fetch fills it
  }
  void Put(std::unique_ptr<char[]> p) {
    std::lock_guard<std::mutex> l(mu_);
    if (p && free_.size() < keep_) free_.push_back(std::move(p));
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<char[]>> free_;
  const size_t keep_;
};

// One range request: the blocks [first, last] of one chunk (never across a chunk boundary, so a
// full chunk is the same aligned request on every machine). Its bytes are handed to readers as
// they land (`ready`), before the request ends and before the disk write.
struct DiskBlobStore::Inflight {
  ~Inflight() {
    if (pool) pool->Put(std::move(data));
  }
  uint64_t begin = 0, end = 0;       // file offsets of data[0] and one past its last byte; fixed
  uint32_t first = 0, last = 0;      // the blocks it brings; fixed
  std::shared_ptr<BufferPool> pool;  // where data goes back to
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;   // guarded by mu
  Status status;       // valid once done
  // The bytes, from `begin`; allocated before the request is sent, uninitialized (zero-filling
  // 4 MiB per fetch was ~10% of the daemon's CPU on a fast link). data[0, ready) are final.
  std::unique_ptr<char[]> data;
  std::atomic<uint64_t> ready{0};
  // Smallest `ready` a waiting reader needs; the fetch wakes readers only when it is reached,
  // not on every packet.
  std::atomic<uint64_t> wake_at{UINT64_MAX};
  std::string host;  // who served it; guarded by mu, set before done

  bool Covers(uint32_t block) const { return block >= first && block <= last; }
  // Called by the fetch as bytes land.
  void Arrived(uint64_t n) {
    ready.store(n);
    if (n >= wake_at.load()) {
      std::lock_guard<std::mutex> l(mu);
      wake_at.store(UINT64_MAX);
      cv.notify_all();
    }
  }
  // Waits until the file's bytes up to `upto` are in data, or the fetch ended; true if they are.
  // Bounded: the fetch always ends (RangeSource calls have timeouts and retry caps).
  bool WaitFor(uint64_t upto) {
    const uint64_t need = std::min(upto, end) - begin;
    std::unique_lock<std::mutex> l(mu);
    for (;;) {
      // Announce the need before looking at `ready`, so a fetch that moves `ready` past it
      // after the look is sure to see the announcement and wake us.
      uint64_t w = wake_at.load();
      while (need < w && !wake_at.compare_exchange_weak(w, need)) {
      }
      if (ready.load() >= need) return true;
      if (done) return ready.load() >= need;
      cv.wait(l);
    }
  }
};

struct DiskBlobStore::Blob {
  BlobRef ref;                        // as last seen (any repo/path naming this content)
  std::unique_ptr<BlockFile> file;    // null: cache unusable for this blob, serve uncached
  std::mutex mu;                      // guards everything below
  std::map<uint32_t, std::shared_ptr<Inflight>> inflight;  // by first block; never overlapping
  std::map<uint32_t, std::shared_ptr<Inflight>> spill;     // done, not cached, kept in memory
  // HintNext: the file a reader of all of this one is likely to read next.
  std::unique_ptr<BlobRef> next;
  // The file's first kHeadBytes as an open fetched them (RunHeadFetch): memory only, dropped at
  // the last close and with the blocks after a hash failure.
  std::shared_ptr<Inflight> head;
  std::vector<Cursor> cursors;
  int opens = 0;
  std::set<std::string> sources;      // hosts that served this blob's bytes since start
  // Who served each range stored in this run: first block -> (last block, host).
  std::map<uint32_t, std::pair<uint32_t, std::string>> span_host;
  std::map<std::string, int> suspected;        // times each host was blamed for a mismatch
  std::set<std::string> proven_bad;   // hosts that alone served a file that failed its hash
  std::set<std::string> hosts_seen;   // every host that answered for this blob in this run
  uint64_t generation = 0;            // bumped when blocks are dropped; older fetches are not stored
  bool verifying = false;             // a HashAhead task is queued or running
  // Hash as bytes arrive (HashAhead): the whole-file hash of blocks [0, hashed), fed in file order
  // as they land, so the file is verified moments after its last byte, not after a re-read of all
  // of it. Valid while the BlockFile's drops() equals hashed_drops; otherwise it starts over.
  std::unique_ptr<FileHasher> hasher;
  uint32_t hashed = 0;
  uint64_t hashed_drops = 0;
  bool hash_again = false;            // blocks landed while HashAhead ran: it looks once more
  // The whole-file hash matched with the blocks as of this drops() count (UINT64_MAX: not yet);
  // set before the durable flag (BlockFile::MarkVerified syncs the file first), so a reader at
  // the end of the file waits for the hash, not for the disk.
  uint64_t matched_drops = UINT64_MAX;
  // For readers that wait for the whole file to verify (CacheOptions::verify_before_read):
  // notified (with mu) whenever a fetch of this blob ends or a verification ends.
  std::condition_variable changed;
  uint64_t progress = 0;              // fetches ended + verifications ended + 64 MiB hashed
  uint64_t fetch_failures = 0;        // fetches that failed after the source's own retries
  Status last_failure;                // the latest of those
  uint64_t refused = 0;               // fetched chunks that found no room in the cache
  uint64_t untrusted = 0;             // fetched chunks not kept: a proven liar served them
  std::atomic<uint64_t> hash_failures{0};  // whole-file hash mismatches since start
  uint64_t verify_rounds = 0;         // verifications ended, whatever the outcome
  // Bytes handed to readers that were never stored (so never hashed): the head, answers not
  // cached (a blamed host's, a drop during the fetch, no room). (offset, length, XXH3) of each;
  // when the file's hash matches they are compared with the verified bytes, and a difference
  // counts as a hash failure for the readers given them (HashFailures).
  std::vector<std::tuple<uint64_t, uint64_t, uint64_t>> served_unstored;
  bool served_unstored_overflow = false;  // more than kMaxServedUnstored: all count as different
  // Safetensors layout (cache/safetensors.h): region ends, empty if unknown or not safetensors.
  bool filling = false;               // a background fill is running: RunFetch keeps it going
  // Reads back into a hole, and the end of the furthest read: see kScatterBackJumps.
  uint64_t read_end = 0;
  uint32_t back_jumps = 0;
  bool load_expected = false;         // HintLoad: a loader of all of it is coming
  bool layout_known = false;
  std::vector<uint64_t> regions;
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
  {
    std::lock_guard<std::mutex> l(store->mu_);
    store->overhead_bytes_ += opts.reserved_bytes + store->MeasureOtherLocked();
  }
  MODELFS_LOG(kInfo, "cache %s: quota %llu bytes (0 = none) for the whole directory, keeping %llu "
              "bytes of its filesystem free, %llu bytes cached, %llu bytes of index files, "
              "directories, metadata and reserve (log, status)", opts.dir.c_str(),
              (unsigned long long)store->quota_bytes_, (unsigned long long)store->min_free_bytes_,
              (unsigned long long)store->used_bytes_, (unsigned long long)store->overhead_bytes_);
  if (store->quota_bytes_ && store->overhead_bytes_ >= store->quota_bytes_) {
    MODELFS_LOG(kWarn, "cache quota %llu bytes leaves no room for blocks after %llu bytes of index "
                "files, metadata and reserve (the log's --log-max-size, status files): reads are "
                "served uncached", (unsigned long long)store->quota_bytes_,
                (unsigned long long)store->overhead_bytes_);
  }
  return store;
}

DiskBlobStore::DiskBlobStore(const CacheOptions& opts, RangeSource* source)
    : opts_(opts),
      source_(source),
      pool_(new ThreadPool(std::max(1u, opts.fetch_threads))),
      buffers_(std::make_shared<BufferPool>(opts.max_inflight_chunks + opts.max_spill_chunks)),
      verify_pool_(new ThreadPool(1)),
      notify_pool_(new ThreadPool(1)),
      demand_pool_(new ThreadPool(std::max(1u, opts.fetch_threads))) {}

DiskBlobStore::~DiskBlobStore() {
  // Stop background work before members it touches go away.
  demand_pool_.reset();
  pool_.reset();
  verify_pool_.reset();
  notify_pool_.reset();
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
      struct stat st;
      const bool have_stat = stat(path.c_str(), &st) == 0;
      uint64_t mtime = have_stat ? static_cast<uint64_t>(st.st_mtime) : 0;
      if (!BlockFile::Peek(path, &sum)) {
        // Not an index (Open will reset it): its pages are charged until it is evicted or reset.
        const uint64_t files = have_stat ? Charge(static_cast<uint64_t>(st.st_blocks) * 512) : kDiskPage;
        usage_[key] = Usage{0, mtime, false, files};
        overhead_bytes_ += files;
        continue;
      }
      uint64_t bytes = Charge(sum.present_bytes);
      // Older runs sort before anything touched now.
      usage_[key] = Usage{bytes, mtime, sum.verified && sum.present_blocks == sum.num_blocks,
                          FilesCharge(sum.size)};
      used_bytes_ += bytes;
      overhead_bytes_ += usage_[key].files;
    }
    closedir(dd);
  }
  closedir(top);
  // Logical clock starts above every mtime so blobs used in this run are newer.
  clock_ = static_cast<uint64_t>(time(nullptr)) + 1;
}

uint64_t DiskBlobStore::MeasureOtherLocked() {
  // The directories themselves (the root, blobs/ and its fan-out) and everything under meta/ and
  // pins/. Not run/ nor the log: their bound is in reserved_bytes.
  uint64_t total = 0;
  struct stat st;
  for (const std::string& d : {opts_.dir, opts_.dir + "/blobs"}) {
    if (stat(d.c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  if (DIR* top = opendir((opts_.dir + "/blobs").c_str())) {
    while (dirent* e = readdir(top)) {
      if (e->d_name[0] == '.') continue;
      std::string sub = opts_.dir + "/blobs/" + e->d_name;
      if (stat(sub.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
    closedir(top);
  }
  return total + AllocatedTree(opts_.dir + "/meta") + AllocatedTree(opts_.dir + "/pins");
}

bool DiskBlobStore::ChargeNewFilesLocked(const std::string& key, uint64_t size, const std::string& dir) {
  // What is charged already (files found by ScanExisting) counts; an index of another size is
  // reset on open to this size's.
  const uint64_t have = usage_[key].files, files = FilesCharge(size);
  const uint64_t bytes = files - std::min(have, files) + (access(dir.c_str(), F_OK) != 0 ? kDiskPage : 0);
  if (bytes == 0) return true;
  if (!MakeRoomLocked(key, bytes)) return false;
  overhead_bytes_ += bytes;
  usage_[key].files = std::max(have, files);
  peak_used_bytes_ = std::max(peak_used_bytes_, used_bytes_ + overhead_bytes_);
  return true;
}

bool DiskBlobStore::ChargeOther(uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  if (!MakeRoomLocked("", bytes)) return false;
  overhead_bytes_ += bytes;
  peak_used_bytes_ = std::max(peak_used_bytes_, used_bytes_ + overhead_bytes_);
  return true;
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
    // The quota covers the blob's own files: charged before they are created (the index is
    // written at once) unless they are on disk and charged already.
    Status s = ChargeNewFilesLocked(ref.key, ref.size, dir)
                   ? MkdirP(dir)
                   : Status::IoError("no room in the cache quota for its index");
    if (s.ok()) {
      auto f = BlockFile::Open(dir, ref.key, ref.size);
      if (f.ok()) {
        b->file = std::move(f).value();
      } else {
        s = f.status();
      }
    }
    if (!s.ok()) {
      MODELFS_LOG(kWarn, "cache unusable for %s, serving uncached: %s", ref.key.c_str(),
                  s.ToString().c_str());
      if (access((dir + "/" + ref.key + ".idx").c_str(), F_OK) != 0) {  // nothing created: refund
        overhead_bytes_ -= usage_[ref.key].files;
        usage_[ref.key].files = 0;
      }
      // (A new directory's page stays charged: the directory may exist now.)
    }
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
  bool fill = false;
  {
    std::lock_guard<std::mutex> l(b->mu);
    b->opens++;
    if (opts_.fill_on_open && !b->filling && ref.size > kChunkSize && b->file && !b->file->verified() &&
        !b->file->AllPresent()) {
      b->filling = fill = true;
    }
  }
  if (fill) {
    MODELFS_LOG(kDebug, "filling %s %s in the background", ref.repo.Id().c_str(), ref.path.c_str());
    ScheduleFill(b);
  }
  FetchHead(b, ref);
}

void DiskBlobStore::HintLoad(const BlobRef& ref) {
  if (opts_.verify_before_read) return;
  auto b = GetBlob(ref);
  if (!b->file || b->file->verified() || b->file->AllPresent()) return;
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (b->load_expected) return;
    b->load_expected = true;
  }
  MODELFS_LOG(kDebug, "%s: a loader read the model's index: fetching its head", ref.path.c_str());
  FetchHead(b, ref);
}

void DiskBlobStore::FetchHead(const std::shared_ptr<Blob>& b, const BlobRef& ref) {
  // An open is followed by a read of the head (a safetensors header, a config's first bytes):
  // start it now, so that the first read finds its bytes on the wire. kHeadBytes and not a block
  // or a chunk: a loader that reads the header and one tensor must not pay for more.
  if (opts_.verify_before_read || !b->file || b->file->verified()) return;
  std::shared_ptr<Inflight> head;
  {
    std::lock_guard<std::mutex> l(b->mu);
    // Not after a hash failure: every answer may then have to be judged before it is served.
    if (ref.size > kBlockSize && !b->head && b->suspected.empty() && !b->file->Present(0) &&
        !CoveringLocked(*b, 0)) {
      head = std::make_shared<Inflight>();
      head->end = kHeadBytes;
      head->data.reset(new char[kHeadBytes]);
      b->head = head;
      busy_++;
    }
  }
  if (head) {
    auto blob = b;
    if (!demand_pool_->Submit([this, blob, head] { RunHeadFetch(blob, head); })) RunHeadFetch(blob, head);
  } else if (!b->file->AllPresent()) {
    source_->Prepare(ref);
  }
}

void DiskBlobStore::RunHeadFetch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f) {
  std::string served_by;
  fetches_++;
  Status st = source_->ReadAtStreaming(b->ref, 0, f->end, f->data.get(), &served_by,
                                       [&f](size_t n) { f->Arrived(n); });
  if (st.ok()) fetched_bytes_ += f->end;
  {
    std::lock_guard<std::mutex> l(f->mu);
    f->status = st;
    f->host = served_by;
    if (st.ok()) f->ready.store(f->end);
    f->done = true;
  }
  f->cv.notify_all();
  if (st.ok()) NoteServedUnstored(b, 0, f->data.get(), f->end);
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (st.ok()) {
      b->hosts_seen.insert(served_by);
    } else if (b->head == f) {
      b->head.reset();  // the next read fetches block 0
    }
  }
  busy_--;
}

bool DiskBlobStore::ReadHead(const std::shared_ptr<Blob>& b, uint64_t offset, uint64_t end, char* buf) {
  std::shared_ptr<Inflight> head;
  {
    std::lock_guard<std::mutex> l(b->mu);
    head = b->head;
  }
  if (!head || end > head->end || !head->WaitFor(end)) return false;
  memcpy(buf, head->data.get() + offset, end - offset);
  miss_bytes_ += end - offset;
  return true;
}

void DiskBlobStore::PrepareBlob(const BlobRef& ref) {
  // A lookup (stat, ls -l) of a large file: a read may follow, so let the source resolve where to
  // read it from now. No blob files are opened for this; cached files cost nothing.
  if (opts_.verify_before_read || ref.size <= kBlockSize) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = usage_.find(ref.key);
    if (it != usage_.end() && it->second.verified) return;
  }
  source_->Prepare(ref);
}

void DiskBlobStore::HintNext(const BlobRef& ref, const BlobRef& next) {
  if (opts_.verify_before_read || next.key == ref.key) return;
  auto b = GetBlob(ref);
  std::lock_guard<std::mutex> l(b->mu);
  if (!b->next || b->next->key != next.key) b->next = std::make_unique<BlobRef>(next);
}

void DiskBlobStore::Lookahead(const std::shared_ptr<Blob>& from, uint64_t window, int depth) {
  BlobRef ref;
  {
    std::lock_guard<std::mutex> l(from->mu);
    if (!from->next) return;
    ref = *from->next;
  }
  if (ref.size <= kBlockSize) return;  // a file of one block is fetched whole by its first read
  if (quota_bytes_ > 0) {
    // Only into free room, half of it at most: a lookahead must never evict what the reader of
    // this file (or anyone) still needs, or a full cache refetches.
    std::lock_guard<std::mutex> l(mu_);
    const uint64_t used = used_bytes_ + overhead_bytes_ + pending_bytes_;
    window = std::min(window, used < quota_bytes_ ? (quota_bytes_ - used) / 2 : 0);
  }
  if (window < kChunkSize) return;
  auto n = GetBlob(ref);
  if (!n->file || n->file->verified() || n->file->AllPresent()) return;
  std::vector<std::shared_ptr<Inflight>> todo;
  uint64_t rest = 0;  // of the window, once all of this file is scheduled
  {
    std::lock_guard<std::mutex> l(n->mu);
    if (n->opens > 0) return;  // its reader is there: its own stream drives it
    if (n->cursors.empty()) {
      n->cursors.push_back(Cursor{0, window, 0, 1, 0, 0});
      MODELFS_LOG(kDebug, "lookahead: %s after %s, %llu bytes", ref.path.c_str(), from->ref.path.c_str(),
                  (unsigned long long)window);
    }
    Cursor& cur = n->cursors.front();
    if (cur.next != 0) return;  // a reader came and went: not a lookahead cursor any more
    cur.window = std::max(cur.window, window);
    const uint64_t to = std::min(ref.size, (cur.window + kChunkSize - 1) / kChunkSize * kChunkSize);
    cur.prefetched_to = std::max(cur.prefetched_to, ScheduleLocked(*n, cur.prefetched_to, to, &todo));
    if (cur.prefetched_to >= ref.size && window > ref.size) rest = window - ref.size;
  }
  for (auto& f : todo) Launch(n, f, /*demand=*/false);
  if (rest > kChunkSize && depth > 1) Lookahead(n, rest, depth - 1);
}

void DiskBlobStore::CloseBlob(const BlobRef& ref) {
  auto b = GetBlob(ref);
  std::lock_guard<std::mutex> l(b->mu);
  if (b->opens > 0) b->opens--;
  if (b->opens == 0) b->head.reset();
}

Status DiskBlobStore::Read(const BlobRef& ref, uint64_t offset, size_t len, char* buf, size_t* n) {
  *n = 0;
  if (offset >= ref.size || len == 0) return Status::Ok();
  uint64_t end = std::min<uint64_t>(ref.size, offset + len);
  auto b = GetBlob(ref);
  const uint64_t failures0 = b->hash_failures.load();
  // Verify before read: a blob larger than one chunk is filled and hashed before any byte of it
  // is returned, and then served only from its verified blocks (one chunk is verified inline by
  // RunFetch anyway). A block that went missing since (evicted, corrupt on disk) sends the read
  // back to the fill; a few such rounds in a row means something keeps destroying the blocks.
  bool strict = opts_.verify_before_read && ref.size > kChunkSize;
  // A file that failed its hash in this run is read that way too until it verifies: a reader
  // that comes after a failure waits for a refetch that proved itself, rather than being given
  // bytes of a round that may fail again (when both mirrors served the file, blame can first
  // fall on the wrong one). If the fill cannot complete (no room, a fetch failed), it streams
  // as before, and the end-of-file check still applies.
  const bool after_failure = !strict && failures0 > 0 && ref.size > kChunkSize && b->file &&
                             !b->file->verified();
  strict = strict || after_failure;
  int strict_rounds = 0;
  uint32_t demand_last = UINT32_MAX;
  if (strict) {
    Status s = FillAndVerify(b);
    if (!s.ok() && (!after_failure || s.code() == Code::kCorruption)) return s;
    if (!s.ok()) strict = false;
  }
  if (!strict) {
    if (ReadHead(b, offset, end, buf)) {  // a header reader's first reads: no cursor, no block 0
      *n = end - offset;
      return Status::Ok();
    }
    demand_last = Prefetch(b, offset, end - offset);
  }

  // A partial block is read whole (its XXH3 covers all of it) into a per-thread buffer, allocated
  // once: a fresh zero-filled 1 MiB per read was the daemon's largest CPU cost on cold reads.
  thread_local std::unique_ptr<char[]> scratch;
  std::shared_ptr<Inflight> last;  // the range fetched for an earlier block of this read
  bool waited = false;             // this read had to wait for the network
  int refetches = 0;               // blocks that vanished between a miss and their fetch
  for (uint64_t pos = offset; pos < end;) {
    uint32_t i = static_cast<uint32_t>(pos / kBlockSize);
    uint64_t bstart = static_cast<uint64_t>(i) * kBlockSize;
    uint64_t blen = std::min<uint64_t>(kBlockSize, ref.size - bstart);
    uint64_t take = std::min(blen - (pos - bstart), end - pos);
    char* out = buf + (pos - offset);
    if (!last || !last->Covers(i)) {
      last.reset();
      bool whole = pos == bstart && take == blen;
      char* target = out;
      if (!whole) {
        if (!scratch) scratch.reset(new char[kBlockSize]);
        target = scratch.get();
      }
      if (b->file && b->file->ReadBlock(i, target)) {
        if (!whole) memcpy(out, scratch.get() + (pos - bstart), take);
        hit_bytes_ += take;
        pos += take;
        continue;
      }
      if (b->file) NoteCorruption(b);
      if (strict) {
        if (++strict_rounds > 3) {
          return Status::IoError("blocks of " + ref.path + " keep vanishing after verification");
        }
        Status s = FillAndVerify(b);
        if (!s.ok()) return s;
        continue;  // read this block again, now verified
      }
      last = FetchBlock(b, i, demand_last);
      waited = true;
      if (!last) {  // stored meanwhile by another fetch: read it from disk
        if (++refetches > 8) return Status::IoError("blocks of " + ref.path + " keep vanishing");
        continue;
      }
      // Demand first: only this read's bytes are waited for; the rest of the range follows.
      if (!last->WaitFor(end)) {
        std::lock_guard<std::mutex> l(last->mu);
        if (!last->status.ok()) return last->status;
        return Status::Unavailable("fetch of " + ref.path + " ended short");
      }
    }
    memcpy(out, last->data.get() + (pos - last->begin), take);
    miss_bytes_ += take;
    pos += take;
  }
  if (waited) GrowWindow(b, end);
  // Fail closed at the end of a file: a reader that brought in all of it gets its last bytes only
  // once its hash matched (a one-chunk blob was hashed before any byte of it was served).
  if (!strict && end == ref.size && ref.size > kChunkSize && b->file && !b->file->verified()) {
    Status s = WaitForHashAtEnd(b, failures0);
    if (!s.ok()) return s;
  }
  *n = end - offset;
  return Status::Ok();
}

Status DiskBlobStore::WaitForHashAtEnd(const std::shared_ptr<Blob>& b, uint64_t failures0) {
  const BlobRef& ref = b->ref;
  BlockFile* const file = b->file.get();
  const uint32_t n = file->num_blocks();
  std::unique_lock<std::mutex> l(b->mu);
  uint64_t seen = b->progress;
  auto last_progress = std::chrono::steady_clock::now();
  for (;;) {
    if (b->hash_failures.load() != failures0) {
      return Status::Corruption(ref.repo.Id() + " " + ref.path +
                                " failed its hash: bytes already read from it may be wrong");
    }
    if (file->verified() || b->matched_drops == file->drops()) return Status::Ok();
    // Is every block on disk or on the wire? If not, this reader did not bring the whole file in
    // (a header and a few tensors), or the cache could not keep it: nothing to wait for.
    uint64_t coming = file->PresentBytes();
    for (const auto& [first, f] : b->inflight) coming += f->end - f->begin;
    if (coming < ref.size) return Status::Ok();
    for (uint32_t i = 0; i < n; i++) {
      if (file->Present(i)) continue;
      auto it = b->inflight.upper_bound(i);  // a spilled range is never stored: never hashed
      if (it == b->inflight.begin() || !std::prev(it)->second->Covers(i)) return Status::Ok();
    }
    if (b->progress != seen) {
      seen = b->progress;
      last_progress = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - last_progress > std::chrono::seconds(kFillStallSeconds)) {
      return Status::Unavailable("no progress verifying " + ref.repo.Id() + " " + ref.path + " for " +
                                 std::to_string(kFillStallSeconds) + " s");
    }
    if (!b->verifying) {  // e.g. blocks on disk from an earlier run: nothing queued the hash
      l.unlock();
      MaybeScheduleVerify(b);
      l.lock();
    }
    b->changed.wait_for(l, std::chrono::milliseconds(200));
  }
}

uint64_t DiskBlobStore::HashFailures(const BlobRef& ref) {
  return GetBlob(ref)->hash_failures.load();
}

std::shared_ptr<DiskBlobStore::Inflight> DiskBlobStore::CoveringLocked(Blob& b, uint32_t block) {
  for (auto* m : {&b.inflight, &b.spill}) {
    auto it = m->upper_bound(block);
    if (it == m->begin()) continue;
    --it;
    if (it->second->Covers(block)) return it->second;
  }
  return nullptr;
}

std::shared_ptr<DiskBlobStore::Inflight> DiskBlobStore::NewSpanLocked(Blob& b, uint32_t lo, uint32_t hi,
                                                                      uint32_t max_blocks) {
  // The first block in [lo, hi] that is neither on disk nor being fetched, and the run of such
  // blocks after it, up to hi, max_blocks and the end of its chunk.
  const uint32_t nblocks = static_cast<uint32_t>((b.ref.size + kBlockSize - 1) / kBlockSize);
  hi = std::min(hi, nblocks - 1);
  auto missing = [&](uint32_t i) { return !(b.file && b.file->Present(i)) && !CoveringLocked(b, i); };
  uint32_t first = lo;
  while (first <= hi && !missing(first)) first++;
  if (first > hi) return nullptr;
  const uint32_t chunk_last = static_cast<uint32_t>((static_cast<uint64_t>(first) / kBlocksPerChunk + 1) * kBlocksPerChunk - 1);
  uint32_t last = first;
  uint32_t cap = std::min(hi, std::min(chunk_last, first + std::max(1u, max_blocks) - 1));
  // Block 0 while the head fetch has (or brings) its first kHeadBytes: a range of its own, which
  // takes the head's bytes and asks only for the rest (RunFetch); the blocks after it do not wait.
  if (first == 0 && b.head) cap = 0;
  while (last < cap && missing(last + 1)) last++;
  auto f = std::make_shared<Inflight>();
  f->first = first;
  f->last = last;
  f->begin = static_cast<uint64_t>(first) * kBlockSize;
  f->end = std::min<uint64_t>(b.ref.size, static_cast<uint64_t>(last + 1) * kBlockSize);
  b.inflight[first] = f;
  inflight_chunks_++;
  busy_++;
  return f;
}

void DiskBlobStore::Launch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f, bool demand) {
  auto blob = b;
  auto fl = f;
  ThreadPool* pool = demand ? demand_pool_.get() : pool_.get();
  if (!pool->Submit([this, blob, fl] { RunFetch(blob, fl); })) {
    RunFetch(blob, fl);  // shutting down: complete it so no waiter hangs
  }
}

std::shared_ptr<DiskBlobStore::Inflight> DiskBlobStore::FetchBlock(const std::shared_ptr<Blob>& b, uint32_t i,
                                                                   uint32_t last) {
  std::shared_ptr<Inflight> f;
  {
    std::lock_guard<std::mutex> l(b->mu);
    f = CoveringLocked(*b, i);
    if (f) return f;  // being fetched (prefetch or another reader), or spilled: no second request
    // From this block to the end of its chunk (or `last`): the reader's bytes come first, and the
    // chunk's blocks before it are left to whoever needs them.
    f = NewSpanLocked(*b, i, last);
  }
  // Null: the block is on disk after all (stored since the caller's miss).
  if (f) Launch(b, f, /*demand=*/true);
  return f;
}

void DiskBlobStore::RunFetch(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f) {
  const BlobRef ref = b->ref;
  const uint64_t start = f->begin;
  const uint64_t len = f->end - f->begin;
  uint64_t generation;
  bool stream;
  {
    std::lock_guard<std::mutex> l(b->mu);
    generation = b->generation;
    // Bytes are handed over as they land, except where they must be checked first: a blob that
    // fits in one range is verified before any byte of it is returned; under verify before read
    // nothing unverified is returned; and after a hash failure an answer may be fetched again.
    stream = !(start == 0 && len == ref.size) && !opts_.verify_before_read && b->suspected.empty();
  }
  f->pool = buffers_;
  f->data = buffers_->Get();
  char* data = f->data.get();
  std::string served_by;
  Status st;
  bool whole_blob = start == 0 && len == ref.size;
  auto t0 = std::chrono::steady_clock::now();
  bool first_byte = false;
  RangeSource::Progress progress;
  // Block 0 after a head fetch: its first kHeadBytes are in memory already (or on the wire, sent
  // before this range), so only the rest is asked for. A failed head means the whole range.
  uint64_t reuse = 0;
  std::shared_ptr<Inflight> head;
  if (f->first == 0) {
    std::lock_guard<std::mutex> l(b->mu);
    head = b->head;
  }
  if (head && head->end < len && head->WaitFor(head->end)) {
    reuse = head->end;
    memcpy(data, head->data.get(), reuse);
    if (stream) f->Arrived(reuse);
  }
  if (stream) {
    progress = [&](size_t n) {
      if (!first_byte) {
        first_byte = true;
        NoteLatency(std::chrono::steady_clock::now() - t0);
      }
      f->Arrived(reuse + n);
    };
  }
  int distrusted = 0;  // answers refetched because their host is blamed for this blob
  bool untrusted_stream = false;
  for (int attempt = 0;; attempt++) {
    fetches_++;
    st = source_->ReadAtStreaming(ref, start + reuse, len - reuse, data + reuse, &served_by, progress);
    if (st.ok()) fetched_bytes_ += len - reuse;
    // A host blamed for a hash failure of this blob, while another that served it is blamed
    // less: ask again (the source now puts that host last) rather than serve what it sent. Bytes
    // already streamed to readers cannot be asked again: they are just not cached.
    if (st.ok() && Distrusted(b, served_by)) {
      if (stream) {
        untrusted_stream = true;
      } else if (distrusted < kDistrustedRefetches) {
        distrusted++;
        distrusted_refetches_++;
        reuse = 0;  // all of it again: the head came from the same mirrors
        continue;
      } else {
        // Still the blamed host, while a less blamed one serves this blob: what it sent is not
        // served (a whole-file reader could not be stopped at the end: these bytes would never
        // be cached, so never hashed). The reader gets an error and may try again.
        st = Status::Unavailable("only " + served_by + ", which served wrong bytes of " + ref.path +
                                 ", answered for [" + std::to_string(start) + ", +" + std::to_string(len) + ")");
        break;
      }
    }
    // Block 0 reuses the head's bytes: they must come from the host that sent the rest, or a
    // hash failure would blame the wrong one (after a failover the two can differ).
    if (st.ok() && reuse > 0) {
      std::string head_host;
      {
        std::lock_guard<std::mutex> l(head->mu);
        head_host = head->host;
      }
      if (head_host != served_by) {
        if (stream) {
          untrusted_stream = true;  // handed over already: served, not cached; the next fetch
          std::lock_guard<std::mutex> l(b->mu);  // of block 0 asks for all of it
          if (b->head == head) b->head.reset();
        } else {
          reuse = 0;
          continue;
        }
      }
    }
    if (!st.ok() || !whole_blob) break;
    if (HashHex(ref.hash_kind, data, len) == ref.hash) break;
    verify_failures_++;
    MODELFS_LOG(kError, "hash mismatch for %s %s (%s): bytes from %s are wrong; refetching",
                ref.repo.Id().c_str(), ref.path.c_str(), ref.key.c_str(), served_by.c_str());
    if (attempt >= kSmallBlobRetries) {
      st = Status::Corruption("content of " + ref.path + " does not match its hash");
      break;
    }
  }
  if (!first_byte && st.ok()) NoteLatency(std::chrono::steady_clock::now() - t0);
  if (!st.ok()) {
    // A failure is not remembered: out of the map before anyone can see it ended, so the next
    // read of these blocks asks again.
    std::lock_guard<std::mutex> l(b->mu);
    auto it = b->inflight.find(f->first);
    if (it != b->inflight.end() && it->second == f) b->inflight.erase(it);
  }
  // Hand the bytes to waiting readers first: they need not wait for the disk write. The entry
  // stays in the inflight map (done, data readable) until the blocks are on disk, so a reader that
  // arrives meanwhile copies from memory instead of missing on disk and fetching again.
  {
    std::lock_guard<std::mutex> l(f->mu);
    f->status = st;
    if (st.ok()) f->ready.store(len);
    f->done = true;
  }
  f->cv.notify_all();
  bool refused = false;
  if (st.ok()) {
    std::shared_lock<std::shared_mutex> drop(b->drop_mu);
    bool store;
    {
      std::lock_guard<std::mutex> l(b->mu);
      // With verify before read nothing unverified is served, so bytes from a host that failed
      // the hash once may be cached again: the hash judges them (with one mirror, a transient
      // corruption is then survived).
      // A host blamed more than another that serves this blob is not cached from (RunFetch
      // asked again above); when every host is blamed alike (one mirror), its answers are
      // cached and the hash judges them, so a whole-file reader is still stopped at the end.
      bool untrusted = untrusted_stream;
      // With verify before read, bytes of a host still blamed after the refetches above are not
      // cached while a less blamed host serves the blob (the fill asks again). If every host is
      // blamed alike, they get another try: the hash still judges.
      if (opts_.verify_before_read && DistrustedLocked(*b, served_by)) {
        untrusted = true;
        b->untrusted++;
      }
      store = generation == b->generation && !untrusted;
      b->hosts_seen.insert(served_by);
      if (store) {
        b->sources.insert(served_by);
        RecordHostLocked(*b, f->first, f->last, served_by);
      }
    }
    auto t1 = std::chrono::steady_clock::now();
    bool cached = store && StoreRange(b, f->first, data, len);
    if (!cached && !whole_blob) NoteServedUnstored(b, start, data, len);
    if (!store) uncached_bytes_ += len;
    if (store && !cached) Spill(b, f);
    refused = store && !cached;
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    MODELFS_LOG(kDebug, "range %s blocks %u-%u: fetched in %.1f ms, stored in %.1f ms", ref.key.c_str(),
                f->first, f->last, ms(t1 - t0), ms(std::chrono::steady_clock::now() - t1));
  } else {
    MODELFS_LOG(kWarn, "fetch %s %s [%llu, +%llu) failed: %s", ref.repo.Id().c_str(),
                ref.path.c_str(), (unsigned long long)start, (unsigned long long)len,
                st.ToString().c_str());
  }
  {
    std::lock_guard<std::mutex> l(b->mu);
    auto it = b->inflight.find(f->first);
    if (it != b->inflight.end() && it->second == f) b->inflight.erase(it);
    b->progress++;
    if (!st.ok()) {
      b->fetch_failures++;
      b->last_failure = st;
    }
    b->refused += refused;
  }
  b->changed.notify_all();
  if (st.ok()) MaybeScheduleVerify(b);
  inflight_chunks_--;  // before ContinueFill: this range's slot is free for the next
  ContinueFill(b, st.ok() && !refused);
  busy_--;
}

void DiskBlobStore::RecordHostLocked(Blob& b, uint32_t first, uint32_t last, const std::string& host) {
  // Ranges recorded before (e.g. of blocks since evicted) that overlap this one are replaced.
  auto it = b.span_host.upper_bound(last);
  while (it != b.span_host.begin()) {
    auto prev = std::prev(it);
    if (prev->second.first < first) break;
    it = b.span_host.erase(prev);
  }
  b.span_host[first] = {last, host};
}

void DiskBlobStore::NoteLatency(std::chrono::steady_clock::duration d) {
  // Time to a range's first byte, as a moving average (alpha 1/4), in microseconds.
  const uint64_t us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  uint64_t old = latency_us_.load();
  uint64_t next = old == 0 ? us : (3 * old + us) / 4;
  latency_us_.compare_exchange_strong(old, next);  // a lost race loses one sample
}

uint64_t PrefetchStartWindow(uint64_t latency_us, uint64_t initial, uint64_t max) {
  max = std::max(max, initial);
  uint64_t w = initial;
  for (uint64_t t = 10000; t <= latency_us && w < max; t *= 2) w *= 2;
  return std::min(w, max);
}

uint64_t DiskBlobStore::StartWindow() const {
  // Until a range of our own has measured it, the source's latency (its API calls) stands in.
  uint64_t lat = latency_us_.load();
  if (lat == 0) lat = source_->LatencyHintUs();
  return PrefetchStartWindow(lat, opts_.initial_window, opts_.max_window);
}

void DiskBlobStore::Spill(const std::shared_ptr<Blob>& b, const std::shared_ptr<Inflight>& f) {
  std::lock_guard<std::mutex> sl(spill_mu_);
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (!b->spill.emplace(f->first, f).second) return;
  }
  spill_fifo_.emplace_back(b, f->first);
  while (spill_fifo_.size() > std::max(1u, opts_.max_spill_chunks)) {
    auto [wb, oc] = spill_fifo_.front();
    spill_fifo_.pop_front();
    if (auto ob = wb.lock()) {
      std::lock_guard<std::mutex> l(ob->mu);
      ob->spill.erase(oc);
    }
  }
}

bool DiskBlobStore::StoreRange(const std::shared_ptr<Blob>& b, uint32_t first, const char* data,
                               uint64_t len) {
  if (!b->file) {
    uncached_bytes_ += len;
    return false;
  }
  bool all = true;
  uint64_t start = static_cast<uint64_t>(first) * kBlockSize;
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
  // A blob not used in this run has its files unlinked, which frees their charge too. One in
  // blobs_ keeps them (its BlockFile is open, and its Blob holds the stream and blame state that
  // later reads of the file rely on), so one without blocks frees nothing.
  auto detachable = [&](const std::string& k) { return blobs_.find(k) == blobs_.end(); };
  auto frees = [&](const std::string& k, const Usage& u) { return u.bytes + (detachable(k) ? u.files : 0); };
  for (auto& [k, u] : usage_) {
    if (k == key || frees(k, u) == 0 || pinned_.count(k)) continue;
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
    freed += frees(k, usage_[k]);
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
    if (it != blobs_.end()) {
      if (it->second->file) it->second->file->DropAll();
    } else {
      std::string base = BlobDir(k) + "/" + k;
      unlink((base + ".idx").c_str());  // index first: a data file without one is never read
      unlink((base + ".data").c_str());
      overhead_bytes_ -= u.files;
      u.files = 0;
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
  if (!MakeRoomLocked(key, bytes)) return false;
  used_bytes_ += bytes;
  pending_bytes_ += bytes;
  peak_used_bytes_ = std::max(peak_used_bytes_, used_bytes_ + overhead_bytes_);
  usage_[key].bytes += bytes;
  return true;
}

bool DiskBlobStore::MakeRoomLocked(const std::string& key, uint64_t bytes) {
  bool ok = true;
  if (quota_bytes_) {
    // Whatever was charged, block data or not, counts: the quota is the directory's.
    ok = EvictUntil(key, [&](uint64_t freed) {
      return used_bytes_ + overhead_bytes_ - freed + bytes <= quota_bytes_;
    });
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
                  (unsigned long long)(used_bytes_ + overhead_bytes_), (unsigned long long)quota_bytes_,
                  (unsigned long long)min_free_bytes_);
      full_logged_ = true;
    }
    return false;
  }
  full_logged_ = false;
  return true;
}

void DiskBlobStore::MaybeLoadLayout(const std::shared_ptr<Blob>& b) {
  const BlobRef& ref = b->ref;
  std::shared_ptr<Inflight> head;  // the head fetch, or chunk 0 fetched but maybe not on disk yet
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (b->layout_known) return;
    const std::string ext = ".safetensors";
    bool named = ref.path.size() > ext.size() && ref.path.compare(ref.path.size() - ext.size(), ext.size(), ext) == 0;
    if (!b->file || ref.size <= kBlockSize || !named) {
      b->layout_known = true;  // nothing to learn
      return;
    }
    head = b->head;
    if (!head || head->ready.load() < 8) head = CoveringLocked(*b, 0);
  }
  // The head may still be on the wire: what has landed of it is enough once it holds the header.
  const uint64_t landed = head ? head->ready.load() : 0;
  std::unique_ptr<char[]> block;
  const char* first = nullptr;  // the file's first bytes: the head in memory, or block 0 from disk
  uint64_t first_len = 0;
  if (landed >= 8) {
    first = head->data.get();
    first_len = landed;
  } else {
    // The reader that fetched chunk 0 got its bytes before the disk write: learnt on a later read.
    block.reset(new char[kBlockSize]);
    if (!b->file->Present(0) || !b->file->ReadBlock(0, block.get())) return;
    first = block.get();
    first_len = b->file->BlockLen(0);
  }
  std::vector<uint64_t> regions;
  auto n = SafetensorsHeaderLength(first, ref.size);
  if (n.ok()) {
    const uint64_t end = 8 + n.value();
    std::string header;
    if (end <= first_len) {
      header.assign(first + 8, n.value());
    } else {  // a header larger than what is in hand: from the blocks on disk, if they are there
      if (!block) block.reset(new char[kBlockSize]);
      for (uint32_t i = 0; static_cast<uint64_t>(i) * kBlockSize < end; i++) {
        if (!b->file->ReadBlock(i, block.get())) return;  // not cached yet: later
        const uint64_t bstart = static_cast<uint64_t>(i) * kBlockSize;
        const uint64_t from = std::max<uint64_t>(bstart, 8);
        const uint64_t to = std::min<uint64_t>(bstart + b->file->BlockLen(i), end);
        if (to > from) header.append(block.get() + (from - bstart), to - from);
      }
    }
    auto r = SafetensorsRegionEnds(header, n.value(), ref.size);
    if (r.ok()) regions = std::move(r).value();
  }
  std::lock_guard<std::mutex> l(b->mu);
  b->regions = std::move(regions);
  b->layout_known = true;
}

uint64_t DiskBlobStore::ScheduleLocked(Blob& b, uint64_t from, uint64_t to,
                                       std::vector<std::shared_ptr<Inflight>>* todo, uint32_t span_blocks) {
  if (from >= to) return to;
  uint32_t lo = static_cast<uint32_t>(from / kBlockSize);
  const uint32_t hi = static_cast<uint32_t>((to - 1) / kBlockSize);
  while (lo <= hi) {
    if (inflight_chunks_ >= opts_.max_inflight_chunks) {
      return static_cast<uint64_t>(lo) * kBlockSize;  // budget: resume on a later read
    }
    auto f = NewSpanLocked(b, lo, hi, span_blocks);
    if (!f) break;
    todo->push_back(f);
    lo = f->last + 1;
  }
  return to;
}

uint32_t DiskBlobStore::Prefetch(const std::shared_ptr<Blob>& b, uint64_t off, uint64_t len) {
  std::vector<std::shared_ptr<Inflight>> todo;
  bool demand = false;
  uint32_t demand_last = UINT32_MAX;
  uint64_t lookahead = 0;  // > 0: start the next file with this window
  bool fill = false;       // start a background fill of the file
  std::vector<std::shared_ptr<Inflight>> ahead;  // prefetch behind the demand ranges in todo
  MaybeLoadLayout(b);
  {
    std::lock_guard<std::mutex> l(b->mu);
    static std::atomic<uint64_t> tick{0};
    uint64_t now = ++tick;
    Cursor* cur = nullptr;
    for (auto& c : b->cursors) {
      // Behind by up to two kernel readahead windows: the kernel sends a window's requests at
      // once and the FUSE threads deliver them in any order.
      const uint64_t back = std::max(kSeekBackTolerance, 2 * opts_.kernel_readahead);
      if (off + back >= c.next && off <= c.next + kSeekForwardTolerance) {
        cur = &c;
        break;
      }
    }
    // A read that lands inside a tensor, not right after where its stream was, is a loader
    // starting that tensor (a random-order or lazy loader, a loader skipping to the tensor it
    // wants): the header gives the tensor's extent, so all of it (up to max_window) is requested
    // at once, over as many connections as it has ranges, instead of being discovered read by
    // read. "Right after" is within a block: kernel readahead and FUSE threads reorder a little.
    auto region_end = std::upper_bound(b->regions.begin(), b->regions.end(), off);
    // The kernel reads whole pages, and tensors are not page-aligned: a read that begins in the
    // last page before a region's end and runs past it is a read of the next region.
    if (region_end != b->regions.end() && *region_end - off < kPageSize && off + len > *region_end) ++region_end;
    const bool in_tensor = region_end != b->regions.end() && region_end != b->regions.begin();
    // A jump is a read past where the stream was and past what it has scheduled: kernel
    // readahead and FUSE threads deliver a sequential stream a little out of order, but inside
    // its prefetch window.
    bool jumped = !cur || (off > cur->next + kBlockSize && off >= cur->prefetched_to);
    if (jumped && cur) {
      // Not a jump but the kernel's readahead running past the end of the tensor the stream is
      // in (a large read makes it read up to max_readahead further): that must not start a
      // fetch of the next tensor.
      uint64_t cap = RegionCapLocked(*b, *cur);
      if (cap != UINT64_MAX && off >= cap && off <= cap + RegionSlack(*b, cap)) jumped = false;
    }
    // A reader in its own tensor order will read all of this file (kScatterBackJumps): the rest
    // of it streams in the background, in file order, over the fetch pool.
    const uint32_t block = static_cast<uint32_t>(off / kBlockSize);
    // So is a loader of the whole model (HintLoad) whose first read here is past the first tensor.
    const bool own_order =
        (!b->regions.empty() && off + std::max(kSeekBackTolerance, 2 * opts_.kernel_readahead) < b->read_end &&
         b->file && !b->file->Present(block) && !CoveringLocked(*b, block) &&
         ++b->back_jumps >= kScatterBackJumps) ||
        (b->load_expected && !cur && in_tensor && region_end != b->regions.begin() + 1);
    if (own_order && !b->filling && b->file && !b->file->AllPresent()) {
      b->filling = fill = true;
      MODELFS_LOG(kDebug, "%s: read at %llu (%u times back from %llu%s): a reader in its own tensor order, "
                  "filling the rest of the file", b->ref.path.c_str(), (unsigned long long)off, b->back_jumps,
                  (unsigned long long)b->read_end, b->load_expected ? ", after the model's index" : "");
    }
    b->read_end = std::max(b->read_end, off + len);
    const bool cursor_was_new = !cur;
    if (!cur) {
      if (b->cursors.size() >= kMaxCursors) {
        auto lru = std::min_element(b->cursors.begin(), b->cursors.end(),
                                    [](const Cursor& x, const Cursor& y) { return x.last_use < y.last_use; });
        b->cursors.erase(lru);
      }
      b->cursors.push_back(Cursor{off + len, StartWindow(), 0, 0, now, off});
      cur = &b->cursors.back();
      if (!in_tensor) return demand_last;  // a lone read is not a stream yet: fetch only what it needs
    }
    if (in_tensor && jumped) {
      cur->start = std::max(off, *(region_end - 1));  // a new region: its cap applies to this stream now
      cur->next = off + len;
      cur->hits = 0;
      cur->last_use = now;
      uint64_t to = std::min(*region_end, off + std::max(opts_.max_window, opts_.initial_window));
      // Over as many connections as the demand pool has, in ranges of whole blocks: a far link's
      // fresh connections are in slow start, where a range's time grows with its size (200 ms
      // RTT: 1 MiB 1.0 s, 4 MiB 1.5 s), so the tensor comes fastest in the smallest pieces.
      const uint64_t blocks = (to - off / kBlockSize * kBlockSize + kBlockSize - 1) / kBlockSize;
      const uint64_t threads = std::max(1u, opts_.fetch_threads);
      const uint32_t span = static_cast<uint32_t>(std::min<uint64_t>(kBlocksPerChunk, (blocks + threads - 1) / threads));
      MODELFS_LOG(kDebug, "%s: read at %llu+%llu starts a tensor: [%llu, %llu) in ranges of %u blocks (%s)",
                  b->ref.path.c_str(), (unsigned long long)off, (unsigned long long)len, (unsigned long long)off,
                  (unsigned long long)to, span, cursor_was_new ? "new stream" : "jump");
      cur->prefetched_to = ScheduleLocked(*b, off, to, &todo, span);
      demand = true;  // the reader is about to wait for these
      // A new stream that starts at the first tensor (its header came with the open) is a loader
      // in file order, which reads on into the next tensors: it is a whole-file stream at once,
      // not capped at this tensor, so the link is busy with what follows while the first tensor
      // comes (a reader of the first tensor alone pays for a window; a lazy reader's tensor is
      // rarely the first).
      if (cursor_was_new && region_end == b->regions.begin() + 1 && cur->prefetched_to >= to) {
        cur->whole = true;
        const uint64_t ahead_to =
            std::min(b->ref.size, (off + len + cur->window + kChunkSize - 1) / kChunkSize * kChunkSize);
        cur->prefetched_to = ScheduleLocked(*b, to, ahead_to, &ahead);
        if (b->next && cur->prefetched_to >= b->ref.size) lookahead = StartWindow();
      }

      // A loader in its own tensor order (mmap, random) that has half the file already reads all
      // of it: the next file (HintNext) starts now, as for a whole-file stream below.
      if (b->next && b->file && b->file->PresentBytes() >= b->ref.size / 2) lookahead = StartWindow();
    } else {
      cur->hits++;
      // The latency may have been measured since the cursor began (its first fetch gave it).
      cur->window = std::max(cur->window, StartWindow());
      cur->next = std::max(cur->next, off + len);
      cur->last_use = now;
      // From this read's own first block: one request for the rest of its chunk, not one for the
      // block the reader is about to miss on and another for the blocks after it.
      uint64_t from = std::max(cur->prefetched_to, (off / kBlockSize) * kBlockSize);
      // Whole aligned chunks: the same requests on every machine, for a shared cache to reuse.
      uint64_t to = std::min(b->ref.size, (off + len + cur->window + kChunkSize - 1) / kChunkSize * kChunkSize);
      const uint64_t cap = RegionCapLocked(*b, *cur);
      to = std::min(to, cap);
      cur->prefetched_to = std::max(cur->prefetched_to, ScheduleLocked(*b, from, to, &todo));
      // Past the end of the tensor the stream is capped at: the kernel's readahead, which needs
      // this read's blocks but nothing after them.
      if (off >= cap) demand_last = static_cast<uint32_t>((off + len - 1) / kBlockSize);
      // A stream from the file's head (its first chunk or its first tensor) that has scheduled it
      // to its end: a whole-file reader, so the next file (HintNext) starts now and its
      // connections leave slow start meanwhile. As much of it as the link's latency calls for
      // (StartWindow): all of max_window on a far link, two chunks on a near one, where a reader
      // of one shard should not pay for the next.
      const uint64_t head_end = std::max<uint64_t>(kChunkSize, b->regions.size() > 1 ? b->regions[1] : 0);
      if (b->next && cur->start < head_end && cur->prefetched_to >= b->ref.size) lookahead = StartWindow();
    }
  }
  for (auto& f : todo) Launch(b, f, demand);
  for (auto& f : ahead) Launch(b, f, /*demand=*/false);
  if (fill) ScheduleFill(b);
  if (lookahead > 0) Lookahead(b, lookahead);
  return demand_last;
}

uint64_t DiskBlobStore::RegionCapLocked(const Blob& b, const Cursor& cur) const {
  // A stream still inside the region it began in stops at its end. "Inside" allows the kernel's
  // readahead past the end of a tensor (up to kSeekForwardTolerance, the readahead we ask for): a
  // loader reading one tensor makes the kernel read on past it, and that alone must not turn it
  // into a sequential reader whose window runs further still. The header is read with small
  // reads (8 bytes, then the JSON: the kernel reads 16 KiB), so a stream that began there is a
  // sequential reader as soon as it is a little past it: a loader of every tensor, or dd.
  if (b.regions.empty() || cur.whole) return UINT64_MAX;
  auto region_end = std::upper_bound(b.regions.begin(), b.regions.end(), cur.start);
  if (region_end == b.regions.end()) return UINT64_MAX;
  return cur.next <= *region_end + RegionSlack(b, *region_end) ? *region_end : UINT64_MAX;
}

uint64_t DiskBlobStore::RegionSlack(const Blob& b, uint64_t region_end) const {
  // Past a tensor: the readahead we ask the kernel for. Past the header: what the kernel reads
  // ahead of a reader of the header alone (its readahead window grows 4x per step as the JSON is
  // read), but not so much that a sequential reader waits long for its prefetch.
  if (region_end != b.regions.front()) return std::max(kSeekForwardTolerance, 2 * opts_.kernel_readahead);
  return std::min(kSeekForwardTolerance, std::max(kHeaderSlack, 8 * region_end));
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
  if (!b->file || b->file->verified()) return;
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (b->verifying) {
      b->hash_again = true;
      return;
    }
    // Nothing to do unless the block at the hash's frontier landed (or blocks were dropped, and
    // the hash starts over): a range that lands ahead of it waits for the ones before it.
    const uint32_t n = b->file->num_blocks();
    const bool stale = b->hashed_drops != b->file->drops();  // also after a match: blocks evicted
    const bool done = b->matched_drops != UINT64_MAX && b->matched_drops == b->file->drops();
    if (done) return;
    if (!stale && n > 0 && (b->hashed >= n || !b->file->Present(b->hashed))) return;  // (empty: hash it)
    b->verifying = true;
  }
  busy_++;
  auto blob = b;
  if (!verify_pool_->Submit([this, blob] { HashAhead(blob); })) {
    std::lock_guard<std::mutex> l(b->mu);
    b->verifying = false;
    busy_--;
  }
}

void DiskBlobStore::HashAhead(const std::shared_ptr<Blob>& b) {
  const BlobRef ref = b->ref;
  BlockFile* const file = b->file.get();
  const uint32_t n = file->num_blocks();
  thread_local std::unique_ptr<char[]> buf;  // the verify pool's one thread
  if (!buf) buf.reset(new char[kBlockSize]);
  bool mismatch = false, compared = false, ended_complete = false;
  for (;;) {
    std::unique_ptr<FileHasher> hasher;
    uint32_t i;
    uint64_t drops;
    {
      std::lock_guard<std::mutex> l(b->mu);
      b->hash_again = false;
      drops = file->drops();
      if (!b->hasher || b->hashed_drops != drops) {  // first pass, or blocks were dropped since
        b->hasher = std::make_unique<FileHasher>(ref.hash_kind, ref.size);
        b->hashed = 0;
        b->hashed_drops = drops;
      }
      hasher = std::move(b->hasher);
      i = b->hashed;
    }
    ended_complete = file->AllPresent();
    // In file order, as far as the blocks on disk reach. They were written moments ago, so the
    // reads come from the page cache: the file is not read from disk a second time.
    const uint32_t from = i;
    while (i < n && file->ReadBlock(i, buf.get())) {
      hasher->Update(buf.get(), file->BlockLen(i));
      hashed_bytes_ += file->BlockLen(i);
      if (++i - from >= 64 && (i - from) % 64 == 0) {  // a strict reader waiting sees the hash advance
        std::lock_guard<std::mutex> l(b->mu);
        b->progress++;
      }
    }
    MODELFS_LOG(kDebug, "%s: hashed blocks [%u, %u) of %u", ref.path.c_str(), from, i, n);
    if (i < n || file->drops() != drops) {  // not all there yet, or something changed under us
      std::lock_guard<std::mutex> l(b->mu);
      b->hasher = std::move(hasher);
      b->hashed = i;
      if (b->hash_again || file->drops() != drops) continue;
      break;
    }
    compared = true;
    const std::string got = hasher->FinishHex();
    if (got == ref.hash) {
      // No block may be dropped and refetched between the check below and the durable flag.
      std::shared_lock<std::shared_mutex> drop(b->drop_mu);
      {
        std::lock_guard<std::mutex> l(b->mu);
        b->hashed = n;
        if (file->drops() != drops) continue;  // hashed bytes that are gone: once more
        b->matched_drops = drops;
      }
      CheckServedUnstored(b);
      b->changed.notify_all();  // readers at the end of the file go on now, not after the sync
      const auto matched_at = std::chrono::steady_clock::now();
      Status s = file->MarkVerified();
      const double sync_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - matched_at).count();
      if (s.ok()) {
        verified_++;
        {
          std::lock_guard<std::mutex> l(mu_);
          usage_[ref.key].verified = true;
        }
        MODELFS_LOG(kInfo, "verified %s %s (%s); hash matched %.0f ms before (the data's sync)", ref.repo.Id().c_str(),
                    ref.path.c_str(), ref.key.c_str(), sync_ms);
      } else {
        MODELFS_LOG(kWarn, "could not persist verification of %s: %s", ref.key.c_str(), s.ToString().c_str());
      }
    } else {
      std::string sources;
      std::set<std::string> suspects = Blame(b, &sources);
      verify_failures_++;
      mismatch = true;
      {
        std::lock_guard<std::mutex> l(b->mu);
        b->hashed = 0;  // the hasher is spent; the next pass starts over (the drop below forces it)
        // Every reader given bytes of it until now is told by this failure (HashFailures):
        // uncached bytes served before it need no comparison any more.
        b->served_unstored.clear();
        b->served_unstored_overflow = false;
      }
      std::string blamed;
      for (auto& h : suspects) blamed += (blamed.empty() ? "" : ",") + h;
      // Counted before the drop, so a reader that was given any of these bytes sees the failure
      // no later than the bytes are gone (HashFailures).
      b->hash_failures++;
      ForgetBlocks(b, suspects);  // first, so that once the line below is logged the bad bytes are gone
      MODELFS_LOG(kError,
                  "hash mismatch for %s %s: expected %s, got %s; served by %s; dropped %s",
                  ref.repo.Id().c_str(), ref.path.c_str(), ref.hash.c_str(), got.c_str(),
                  sources.empty() ? "(earlier run)" : sources.c_str(),
                  suspects.empty() ? "all its blocks" : ("the chunks served by " + blamed).c_str());
    }
    break;
  }
  {
    std::lock_guard<std::mutex> l(b->mu);
    b->verifying = false;
    b->progress++;
    // A round: the whole-file hash was compared, or a pass over a file that was all on disk
    // stopped at a block that vanished (verify before read counts these).
    if (compared || ended_complete) b->verify_rounds++;
  }
  b->changed.notify_all();
  // Blocks that landed after the last look, once this task had decided to stop.
  if (!mismatch) MaybeScheduleVerify(b);
  busy_--;
}

void DiskBlobStore::NoteServedUnstored(const std::shared_ptr<Blob>& b, uint64_t offset, const char* data,
                                       uint64_t len) {
  const uint64_t sum = XXH3_64bits(data, len);
  std::lock_guard<std::mutex> l(b->mu);
  if (b->file && b->file->verified()) {
    return;  // verified before these bytes came: nothing to judge them by but a block check
  }
  if (b->served_unstored.size() >= kMaxServedUnstored) {
    b->served_unstored_overflow = true;
    return;
  }
  b->served_unstored.emplace_back(offset, len, sum);
}

void DiskBlobStore::CheckServedUnstored(const std::shared_ptr<Blob>& b) {
  // Called by HashAhead when the whole-file hash matched, drop_mu held shared (no block can go
  // while the verified bytes are read back). Readers given bytes that differ from the verified
  // file were given wrong bytes: they are told as if the hash had failed.
  std::vector<std::tuple<uint64_t, uint64_t, uint64_t>> ranges;
  bool overflow;
  {
    std::lock_guard<std::mutex> l(b->mu);
    ranges.swap(b->served_unstored);
    overflow = b->served_unstored_overflow;
    b->served_unstored_overflow = false;
  }
  if (ranges.empty() && !overflow) return;
  BlockFile* const file = b->file.get();
  std::unique_ptr<char[]> block(new char[kBlockSize]);
  uint64_t differ = 0;
  for (const auto& [offset, len, sum] : ranges) {
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    bool readable = true;
    for (uint64_t pos = offset; pos < offset + len && readable;) {
      const uint32_t i = static_cast<uint32_t>(pos / kBlockSize);
      const uint64_t bstart = static_cast<uint64_t>(i) * kBlockSize;
      readable = file->ReadBlock(i, block.get());
      const uint64_t to = std::min(offset + len, bstart + file->BlockLen(i));
      if (readable) XXH3_64bits_update(st, block.get() + (pos - bstart), to - pos);
      pos = to;
    }
    if (!readable || XXH3_64bits_digest(st) != sum) differ++;
    XXH3_freeState(st);
  }
  if (differ == 0 && !overflow) return;
  b->hash_failures++;
  DropKernelPages(b->ref.key);  // the kernel may hold those bytes in its pages: not past this
  MODELFS_LOG(kError, "%s %s: %llu range(s) of bytes served before it was verified (not cached) differ "
              "from the verified file%s; readers given them get EIO", b->ref.repo.Id().c_str(),
              b->ref.path.c_str(), (unsigned long long)differ, overflow ? " (or were too many to keep)" : "");
}

void DiskBlobStore::ContinueFill(const std::shared_ptr<Blob>& b, bool last_ok) {
  // A background fill (fill_on_open) schedules more chunks as each ends, so it streams over the
  // fetch pool; it stops when the blob is complete, or at the first failure or refusal (readers
  // then fetch what they need as usual).
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (!b->filling) return;
    if (!last_ok || !b->file || b->file->AllPresent()) {
      b->filling = false;
      return;
    }
  }
  ScheduleFill(b);
}

void DiskBlobStore::ScheduleFill(const std::shared_ptr<Blob>& b) {
  // Every missing range not in flight, in file order, as far as the global budget allows; the
  // waiting reader calls this again as fetches end, so the file streams over all fetch threads.
  // Spilled ranges are fetched again: only blocks on disk can be verified.
  std::vector<std::shared_ptr<Inflight>> todo;
  {
    std::lock_guard<std::mutex> l(b->mu);
    if (!b->file) return;
    b->spill.clear();
    ScheduleLocked(*b, 0, b->ref.size, &todo);
  }
  for (auto& f : todo) Launch(b, f, /*demand=*/false);
}

Status DiskBlobStore::CompleteForReader(const BlobRef& ref) {
  // Under verify before read every read is judged already; a blob of one chunk is verified
  // before any byte of it is returned.
  if (opts_.verify_before_read || ref.size <= kChunkSize) return Status::Ok();
  auto b = GetBlob(ref);
  if (!b->file || b->file->verified()) return Status::Ok();
  const uint64_t failures0 = b->hash_failures.load();
  Status s = FillAndVerify(b, /*attempts=*/1);
  if (b->hash_failures.load() != failures0 || s.code() == Code::kCorruption) {
    return Status::Corruption(ref.repo.Id() + " " + ref.path +
                              " failed its hash: bytes already read from it may be wrong");
  }
  if (!s.ok()) {
    MODELFS_LOG(kWarn, "%s %s could not be verified before its reader's last bytes: %s", ref.repo.Id().c_str(),
                ref.path.c_str(), s.ToString().c_str());
  }
  return Status::Ok();
}

Status DiskBlobStore::FillAndVerify(const std::shared_ptr<Blob>& b, uint32_t attempts) {
  const BlobRef ref = b->ref;
  if (b->file && b->file->verified()) return Status::Ok();  // the common case: no lock taken
  const std::string what = ref.repo.Id() + " " + ref.path;
  if (!b->file) {
    return Status::IoError(what + ": the cache cannot hold it, and --verify-before-read serves "
                           "only verified cached bytes");
  }
  if (quota_bytes_ && Charge(ref.size) > quota_bytes_) {
    MODELFS_LOG(kError, "%s (%llu bytes) is larger than the cache quota (%llu bytes): with "
                "--verify-before-read it cannot be read", what.c_str(),
                (unsigned long long)ref.size, (unsigned long long)quota_bytes_);
    return Status::IoError(what + " is larger than the cache quota");
  }
  std::unique_lock<std::mutex> l(b->mu);
  const uint64_t chunks = (ref.size + kChunkSize - 1) / kChunkSize;
  const uint64_t failures0 = b->fetch_failures, refused0 = b->refused, untrusted0 = b->untrusted,
                 hash_failures0 = b->hash_failures, rounds0 = b->verify_rounds;
  uint64_t seen = b->progress;
  auto last_progress = std::chrono::steady_clock::now();
  while (!b->file->verified()) {
    // Each way out is a bound: every fetch ends (RangeSource calls have timeouts and retry caps),
    // so a fill either completes, fails a fetch, runs out of room, or fails
    // the hash verify_attempts times. The no-progress timer is a backstop for anything else.
    if (b->fetch_failures != failures0) return b->last_failure;
    if (b->refused != refused0) {
      return Status::IoError("no room in the cache for all of " + what +
                             " (open files fill it), and --verify-before-read needs the whole file");
    }
    if (attempts > 0 && b->matched_drops == b->file->drops()) break;  // matched; the flag follows
    if (b->hash_failures - hash_failures0 >= std::max(1u, attempts > 0 ? attempts : opts_.verify_attempts)) {
      return Status::Corruption(what + " failed its hash " + std::to_string(b->hash_failures - hash_failures0) +
                                " times; no mirror served it intact");
    }
    if (b->verify_rounds - rounds0 > 2ull * std::max(1u, opts_.verify_attempts) + 2) {
      return Status::IoError("could not verify " + what + " (see the log for why)");
    }
    if (b->untrusted - untrusted0 > 2 * chunks + 8) {
      return Status::Corruption("only hosts that served corrupt bytes of " + what + " answer");
    }
    if (b->progress != seen) {
      seen = b->progress;
      last_progress = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - last_progress > std::chrono::seconds(kFillStallSeconds)) {
      return Status::Unavailable("no progress filling " + what + " for " +
                                 std::to_string(kFillStallSeconds) + " s");
    }
    l.unlock();
    if (b->file->AllPresent()) {
      MaybeScheduleVerify(b);
    } else {
      ScheduleFill(b);
    }
    l.lock();
    if (b->file->verified()) break;
    b->changed.wait_for(l, std::chrono::milliseconds(200));
  }
  return Status::Ok();
}

bool DiskBlobStore::DistrustedLocked(const Blob& b, const std::string& host) {
  auto score = [&](const std::string& h) {
    auto it = b.suspected.find(h);
    return (it == b.suspected.end() ? 0 : it->second) + (b.proven_bad.count(h) ? 1000 : 0);
  };
  int mine = score(host);
  if (mine == 0) return false;
  for (const auto& h : b.hosts_seen) {
    if (h != host && score(h) < mine) return true;
  }
  return false;
}

bool DiskBlobStore::Distrusted(const std::shared_ptr<Blob>& b, const std::string& host) {
  std::lock_guard<std::mutex> l(b->mu);
  return DistrustedLocked(*b, host);
}

std::set<std::string> DiskBlobStore::Blame(const std::shared_ptr<Blob>& b, std::string* sources) {
  // Which host lied? The whole-file hash cannot say, but who served each chunk can narrow it:
  //  - one host served every chunk: it is proven bad for this blob;
  //  - several did: blame one of them, the one blamed least so far, then the one that served
  //    fewest chunks (failovers bring a minority of chunks from a second mirror). Only its chunks
  //    are dropped and refetched (from the others: the source is told), so if it was the liar the
  //    next hash matches at the cost of its chunks alone; if not, the next round blames another.
  //    A host proven bad (or blamed) for other files in this run is blamed before a minority one.
  //  - chunks from an earlier run (no record of their host): nothing to narrow, drop everything.
  // Returns the hosts whose chunks to drop; empty = drop all.
  std::lock_guard<std::mutex> l(b->mu);
  std::map<std::string, uint64_t> chunks;  // blocks served, by host
  uint64_t recorded = 0;
  for (const auto& [first, span] : b->span_host) {
    chunks[span.second] += span.first - first + 1;
    recorded += span.first - first + 1;
  }
  for (const auto& [h, n] : chunks) *sources += (sources->empty() ? "" : ",") + h;
  uint64_t total = b->file ? b->file->num_blocks() : 0;
  if (recorded < total || chunks.empty()) return {};
  std::lock_guard<std::mutex> pl(proven_mu_);
  if (chunks.size() == 1) {
    b->proven_bad.insert(chunks.begin()->first);
    b->suspected[chunks.begin()->first]++;
    host_blame_[chunks.begin()->first] += 1000;
    return {};
  }
  // A host proven to have lied about other files in this run goes first, then one blamed for
  // other files (a mirror that corrupts one file often corrupts them all, whether or not it
  // served most of this one).
  auto proven = [&](const std::string& h) {
    auto it = host_blame_.find(h);
    return it == host_blame_.end() ? 0 : it->second;
  };
  std::string pick;
  for (const auto& [h, n] : chunks) {
    if (pick.empty() || b->suspected[h] < b->suspected[pick] ||
        (b->suspected[h] == b->suspected[pick] && proven(h) > proven(pick)) ||
        (b->suspected[h] == b->suspected[pick] && proven(h) == proven(pick) && n < chunks[pick]))
      pick = h;
  }
  b->suspected[pick]++;
  host_blame_[pick]++;
  return {pick};
}

void DiskBlobStore::ForgetBlocks(const std::shared_ptr<Blob>& b, const std::set<std::string>& only) {
  std::set<std::string> bad;
  uint64_t freed = 0;
  {
    std::unique_lock<std::shared_mutex> drop(b->drop_mu);
    std::vector<std::pair<uint32_t, uint32_t>> victims;  // block ranges
    {
      std::lock_guard<std::mutex> l(b->mu);
      b->generation++;
      b->spill.clear();
      b->head.reset();
      for (auto& c : b->cursors) c.prefetched_to = 0;
      if (only.empty()) {
        bad = b->sources;
        b->sources.clear();
        b->span_host.clear();
      } else {
        bad = only;
        for (auto it = b->span_host.begin(); it != b->span_host.end();) {
          if (only.count(it->second.second)) {
            victims.emplace_back(it->first, it->second.first);
            it = b->span_host.erase(it);
          } else {
            ++it;
          }
        }
        for (const auto& h : only) b->sources.erase(h);
      }
    }
    if (only.empty()) {
      b->file->DropAll();
    } else {
      for (auto [first, last] : victims) {
        for (uint32_t i = first; i <= last; i++) {
          if (b->file->Present(i)) freed += Charge(b->file->BlockLen(i));
        }
        b->file->DropBlocks(first, last);
      }
    }
  }
  // Tell the source which hosts served bytes that failed the hash, so that with several mirrors
  // the refetch goes elsewhere (fetch/mirror_set.h).
  for (const auto& host : bad) source_->ReportBadSource(b->ref, host);
  {
    std::lock_guard<std::mutex> l(mu_);
    Usage& u = usage_[b->ref.key];
    if (only.empty()) freed = u.bytes;
    freed = std::min(freed, u.bytes);
    used_bytes_ -= freed;
    u.bytes -= freed;
    u.verified = false;
  }
  // The kernel's cached pages of this content were unverified bytes: have the filesystem drop them.
  // Not on this (verify) thread: invalidating waits for page locks that a pending FUSE read of the
  // same file holds, and that read may be waiting for a verification. With verify before read no
  // page of a failed file was ever served, so there is nothing to drop.
  if (opts_.verify_before_read) return;
  DropKernelPages(b->ref.key);
}

void DiskBlobStore::DropKernelPages(const std::string& key) {
  busy_++;
  bool queued = notify_pool_->Submit([this, key] {
    {
      std::lock_guard<std::mutex> l(cb_mu_);
      if (invalidate_cb_) invalidate_cb_(key);
    }
    busy_--;
  });
  if (!queued) busy_--;
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
  s.overhead_bytes = overhead_bytes_;
  s.quota_bytes = quota_bytes_;
  s.refused_bytes = refused_bytes_;
  s.distrusted_refetches = distrusted_refetches_;
  s.hashed_bytes = hashed_bytes_;
  uint64_t corrupt = 0;
  for (auto& [k, b] : blobs_)
    if (b->file) corrupt += b->file->corrupt_blocks();
  s.corrupt_blocks = corrupt;
  return s;
}

}  // namespace modelfs
