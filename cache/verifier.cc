#include "cache/verifier.h"

#include <chrono>
#include <shared_mutex>

#include "cache/disk_blob_store_internal.h"
#include "common/log.h"

namespace modelfs {

DiskBlobStore::Verifier::Verifier(DiskBlobStore* store) : store_(store) {}

void DiskBlobStore::Verifier::Schedule(const std::shared_ptr<Blob>& b) {
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
  store_->busy_++;
  auto blob = b;
  if (!pool_.Submit([this, blob] { HashAhead(blob); })) {
    std::lock_guard<std::mutex> l(b->mu);
    b->verifying = false;
    store_->busy_--;
  }
}

namespace {
// Checks every block present against its XXH3 (ReadBlock drops the ones that fail). Returns
// whether any failed.
bool FindChangedBlocks(BlockFile* file, char* buf) {
  const uint64_t drops = file->drops();
  for (uint32_t i = 0; i < file->num_blocks(); i++) file->ReadBlock(i, buf);
  return file->drops() != drops;
}
}  // namespace

void DiskBlobStore::Verifier::HashAhead(const std::shared_ptr<Blob>& b) {
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
    // reads come from the page cache: the file is not read from disk a second time. Blocks
    // written or checked in this run are not checked again: the hash judges their bytes, and a
    // mismatch checks every block before it blames a mirror.
    const uint32_t from = i;
    while (i < n && file->ReadBlockUnchecked(i, buf.get())) {
      hasher->Update(buf.get(), file->BlockLen(i));
      store_->hashed_bytes_ += file->BlockLen(i);
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
      store_->CheckServedUnstored(b);
      b->changed.notify_all();  // readers at the end of the file go on now, not after the sync
      const auto matched_at = std::chrono::steady_clock::now();
      Status s = file->MarkVerified();
      const double sync_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - matched_at).count();
      if (s.ok()) {
        store_->verified_++;
        store_->space_->MarkVerified(ref.key);
        MODELFS_LOG(kInfo, "verified %s %s (%s); hash matched %.0f ms before (the data's sync)", ref.repo.Id().c_str(),
                    ref.path.c_str(), ref.key.c_str(), sync_ms);
      } else {
        MODELFS_LOG(kWarn, "could not persist verification of %s: %s", ref.key.c_str(), s.ToString().c_str());
      }
    } else if (FindChangedBlocks(file, buf.get())) {
      // Bytes changed on disk since they were written (the blocks found are dropped and will
      // be fetched again): the mirrors are not to blame. Hash again, as far as the blocks reach.
      MODELFS_LOG(kWarn, "%s %s: hash mismatch from blocks that changed on disk since written; "
                  "fetching them again", ref.repo.Id().c_str(), ref.path.c_str());
      continue;
    } else {
      std::string sources;
      std::set<std::string> suspects = store_->Blame(b, &sources);
      store_->verify_failures_++;
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
      store_->ForgetBlocks(b, suspects);  // first, so that once the line below is logged the bad bytes are gone
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
  if (!mismatch) Schedule(b);
  store_->busy_--;
}

}  // namespace modelfs
