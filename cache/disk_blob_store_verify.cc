// DiskBlobStore, what the whole-file hash decides for readers: fail closed at the end of a file
// (WaitForHashAtEnd), verify before read and a whole-file reader's completion (FillAndVerify,
// CompleteForReader), bytes served but never stored (compared once the hash matched), and after
// a mismatch the blame (Provenance, cache/provenance.h) and the drop of the blamed host's blocks
// (ForgetBlocks). The hash itself runs in the Verifier (cache/verifier.h).
#include "cache/disk_blob_store_internal.h"

#include <xxhash.h>

#include <algorithm>
#include <chrono>

#include "common/log.h"

namespace modelfs {
namespace {

// A reader waiting for a whole-file fill (verify before read) gives up after this long without
// any chunk ending or any hashing progress: a backstop, as every fetch is bounded by itself.
constexpr int kFillStallSeconds = 300;

}  // namespace

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
    // A reader in its own tensor order reads the last tensor mid-load: not the end of its reading.
    if (b->own_order) return Status::Ok();
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
      verifier_->Schedule(b);
      l.lock();
    }
    b->changed.wait_for(l, std::chrono::milliseconds(200));
  }
}

uint64_t DiskBlobStore::HashFailures(const BlobRef& ref) {
  return GetBlob(ref)->hash_failures.load();
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
  // Called by the Verifier when the whole-file hash matched, drop_mu held shared (no block can go
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
  if (space_->quota() && Charge(ref.size) > space_->quota()) {
    MODELFS_LOG(kError, "%s (%llu bytes) is larger than the cache quota (%llu bytes): with "
                "--verify-before-read it cannot be read", what.c_str(),
                (unsigned long long)ref.size, (unsigned long long)space_->quota());
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
      verifier_->Schedule(b);
    } else {
      ScheduleFill(b);
    }
    l.lock();
    if (b->file->verified()) break;
    b->changed.wait_for(l, std::chrono::milliseconds(200));
  }
  return Status::Ok();
}

bool DiskBlobStore::Distrusted(const std::shared_ptr<Blob>& b, const std::string& host) {
  std::lock_guard<std::mutex> l(b->mu);
  return b->prov.Distrusted(host);
}

std::set<std::string> DiskBlobStore::Blame(const std::shared_ptr<Blob>& b, std::string* sources) {
  // The decision is Provenance's (cache/provenance.h); the blame across files is the store's.
  std::lock_guard<std::mutex> l(b->mu);
  std::lock_guard<std::mutex> pl(proven_mu_);
  return b->prov.Blame(b->file ? b->file->num_blocks() : 0, &host_blame_, sources);
}

void DiskBlobStore::ForgetBlocks(const std::shared_ptr<Blob>& b, const std::set<std::string>& only) {
  Provenance::Dropped dropped;  // the hosts to report, the block ranges to drop
  uint64_t freed = 0;
  {
    std::unique_lock<std::shared_mutex> drop(b->drop_mu);
    {
      std::lock_guard<std::mutex> l(b->mu);
      b->generation++;
      b->spill.clear();
      b->head.reset();
      b->streams.Rewind();
      dropped = b->prov.Drop(only);
    }
    if (only.empty()) {
      b->file->DropAll();
    } else {
      for (auto [first, last] : dropped.ranges) {
        for (uint32_t i = first; i <= last; i++) {
          if (b->file->Present(i)) freed += Charge(b->file->BlockLen(i));
        }
        b->file->DropBlocks(first, last);
      }
    }
    // Still holding drop_mu: once it is let go, a fetch may admit and write a block of this blob
    // again, and a release after that ("all" of the blob's charge) would take that block's
    // charge too, leaving it on disk outside the quota.
    space_->Release(b->ref.key, freed, /*all=*/only.empty());
  }
  // Tell the source which hosts served bytes that failed the hash, so that with several mirrors
  // the refetch goes elsewhere (fetch/mirror_set.h).
  for (const auto& host : dropped.hosts) source_->ReportBadSource(b->ref, host);
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

}  // namespace modelfs
