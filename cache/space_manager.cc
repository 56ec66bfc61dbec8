#include "cache/space_manager.h"

#include <algorithm>
#include <tuple>

#include "cache/block_file.h"
#include "common/log.h"

namespace modelfs {
namespace {

// An ext4 inode holds 4 extents; more need a 4 KiB leaf of 340. A sparse data file has at most
// one extent per present block (1 MiB, under ext4's 128 MiB extent limit), so a leaf page per
// 340 blocks bounds its extent tree (a file that big has a page for its index node too).
constexpr uint64_t kExtentsPerPage = 340;

}  // namespace

uint64_t FilesCharge(uint64_t size) {
  const uint64_t blocks = (size + kBlockSize - 1) / kBlockSize;
  return Charge(64 + 16 * blocks) + kDiskPage * ((blocks + kExtentsPerPage - 1) / kExtentsPerPage);
}

SpaceManager::SpaceManager(Limits limits, Disk* disk) : limits_(limits), disk_(disk) {}

void SpaceManager::AddExisting(const std::string& key, uint64_t bytes, bool verified, uint64_t files,
                               uint64_t last_access) {
  std::lock_guard<std::mutex> l(mu_);
  Usage& u = usage_[key];
  used_ = used_ - u.bytes + bytes;
  overhead_ = overhead_ - u.files + files;
  u.bytes = bytes;
  u.verified = verified;
  u.files = files;
  u.last_access = last_access;
}

void SpaceManager::AddOverhead(uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  overhead_ += bytes;
}

void SpaceManager::StartClock(uint64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  clock_ = now;
}

bool SpaceManager::Admit(const std::string& key, uint64_t bytes) {
  std::unique_lock<std::mutex> l(mu_);
  uint64_t b;
  if (!MakeRoomLocked(l, key, [bytes] { return bytes; }, &b)) return false;
  used_ += b;
  pending_ += b;
  usage_[key].bytes += b;
  NotePeakLocked();
  return true;
}

void SpaceManager::Commit(const std::string& key, uint64_t bytes, bool written) {
  std::lock_guard<std::mutex> l(mu_);
  pending_ -= bytes;  // written (or failed): the filesystem counts it now
  if (!written) {
    usage_[key].bytes -= bytes;
    used_ -= bytes;
  }
}

bool SpaceManager::ChargeFiles(const std::string& key, uint64_t size, bool new_dir) {
  std::unique_lock<std::mutex> l(mu_);
  // What is charged already (files found on disk at open) counts; an index of another size is
  // reset on open to this size's.
  const uint64_t files = FilesCharge(size);
  auto need = [&] {
    const uint64_t have = usage_[key].files;
    return files - std::min(have, files) + (new_dir ? kDiskPage : 0);
  };
  uint64_t bytes;
  const bool ok = MakeRoomLocked(l, key, need, &bytes);
  // From here on the blob is the store's (Attach follows): never evicted as one it does not use,
  // whose files would be unlinked under it.
  Usage& u = usage_[key];
  u.attached = true;
  if (!ok) return false;
  overhead_ += bytes;
  u.files = std::max(u.files, files);
  NotePeakLocked();
  return true;
}

void SpaceManager::RefundFiles(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  Usage& u = usage_[key];
  overhead_ -= u.files;
  u.files = 0;
}

bool SpaceManager::ChargeOther(uint64_t bytes) {
  std::unique_lock<std::mutex> l(mu_);
  uint64_t b;
  if (!MakeRoomLocked(l, "", [bytes] { return bytes; }, &b)) return false;
  overhead_ += b;
  NotePeakLocked();
  return true;
}

void SpaceManager::Attach(const std::string& key, std::weak_ptr<Resident> resident, uint64_t present,
                          bool verified) {
  std::lock_guard<std::mutex> l(mu_);
  Usage& u = usage_[key];
  u.resident = std::move(resident);
  u.attached = true;
  u.last_access = ++clock_;
  used_ = used_ - u.bytes + present;  // the index may have been reset on open
  u.bytes = present;
  u.verified = verified;
}

void SpaceManager::Touch(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  usage_[key].last_access = ++clock_;
}

void SpaceManager::Release(const std::string& key, uint64_t bytes, bool all) {
  std::lock_guard<std::mutex> l(mu_);
  Usage& u = usage_[key];
  const uint64_t freed = all ? u.bytes : std::min(bytes, u.bytes);
  used_ -= freed;
  u.bytes -= freed;
  u.verified = false;
}

void SpaceManager::MarkVerified(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  usage_[key].verified = true;
}

bool SpaceManager::IsVerified(const std::string& key) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = usage_.find(key);
  return it != usage_.end() && it->second.verified;
}

uint64_t SpaceManager::FreeRoom() const {
  if (limits_.quota_bytes == 0) return 0;
  std::lock_guard<std::mutex> l(mu_);
  const uint64_t used = OccupiedLocked() + pending_;
  return used < limits_.quota_bytes ? limits_.quota_bytes - used : 0;
}

SpaceManager::Totals SpaceManager::totals() const {
  std::lock_guard<std::mutex> l(mu_);
  return Totals{used_, overhead_, peak_, evicted_, releasing_};
}

void SpaceManager::NotePeakLocked() { peak_ = std::max(peak_, used_ + overhead_ + releasing_); }

bool SpaceManager::FitsLocked(uint64_t bytes) {
  // Whatever was charged, block data or not, counts: the quota is the directory's. Victims being
  // dropped are still on disk, and the room held for an evicting caller is its.
  if (limits_.quota_bytes && OccupiedLocked() + bytes > limits_.quota_bytes) return false;
  if (limits_.min_free_bytes) {
    uint64_t avail;
    // Writes admitted but not yet done are not in the filesystem's answer yet: count them, so
    // concurrent writers cannot each see the same free space.
    if (disk_->FreeBytes(&avail) && avail < bytes + limits_.min_free_bytes + pending_ + claimed_) return false;
  }
  return true;
}

bool SpaceManager::MakeRoomLocked(std::unique_lock<std::mutex>& l, const std::string& key,
                                  const std::function<uint64_t()>& need, uint64_t* bytes) {
  for (;;) {
    // The blob's own files being unlinked, or its blocks dropped: after that, not under it.
    if (dropping_.count(key)) {
      changed_.wait(l);
      continue;
    }
    *bytes = need();
    if (*bytes == 0 || FitsLocked(*bytes)) {
      full_logged_ = false;
      return true;
    }
    if (evicting_) {  // judged again once that eviction's room shows
      changed_.wait(l);
      continue;
    }
    evicting_ = true;
    const bool ok = EvictForLocked(l, key, *bytes);
    evicting_ = false;
    claimed_ = 0;  // the caller charges *bytes under this hold of the lock
    changed_.notify_all();
    if (ok) {
      full_logged_ = false;
      return true;
    }
    if (!full_logged_) {
      MODELFS_LOG(kWarn,
                  "cache full (%llu of %llu bytes used, everything else in use or the filesystem "
                  "below its free-space floor of %llu bytes): serving uncached",
                  (unsigned long long)(used_ + overhead_), (unsigned long long)limits_.quota_bytes,
                  (unsigned long long)limits_.min_free_bytes);
      full_logged_ = true;
    }
    return false;
  }
}

bool SpaceManager::EvictForLocked(std::unique_lock<std::mutex>& l, const std::string& key, uint64_t bytes) {
  std::vector<Victim> victims;
  uint64_t freed = 0;
  if (limits_.quota_bytes) {
    const uint64_t q = limits_.quota_bytes;
    if (!ChooseLocked(key, [&](uint64_t f) { return OccupiedLocked() - f + bytes <= q; }, &victims, &freed)) {
      return false;
    }
    // The room that is free already is this caller's from now on, the rest once the victims
    // are dropped: the occupied total never passes the quota.
    const uint64_t claim = bytes > freed ? bytes - freed : 0;
    claimed_ += claim;
    Drop(l, victims, freed);
    claimed_ += bytes - claim;
  } else {
    claimed_ += bytes;
  }
  if (limits_.min_free_bytes) {
    uint64_t avail;
    if (disk_->FreeBytes(&avail)) {
      // claimed_ is this caller's own `bytes` (one eviction at a time): not counted twice.
      const uint64_t need = bytes + limits_.min_free_bytes + pending_;
      victims.clear();
      if (!ChooseLocked(key, [&](uint64_t f) { return avail + f >= need; }, &victims, &freed)) return false;
      Drop(l, victims, freed);
    }
  }
  return true;
}

bool SpaceManager::ChooseLocked(const std::string& key, const std::function<bool(uint64_t freed)>& fits,
                                std::vector<Victim>* victims, uint64_t* freed) {
  *freed = 0;
  if (fits(0)) return true;
  RefreshPinsLocked();
  // Candidates: blobs with charged bytes that nobody has open, is fetching or verifying. Whole
  // verified files go first (a partial file is likely being filled and would be fetched again at
  // once), least recently used first within each class.
  // A blob the store does not use has its files unlinked, which frees their charge too. One it
  // uses keeps them (its BlockFile is open, and its Blob holds the stream and blame state that
  // later reads of the file rely on), so one without blocks frees nothing.
  auto frees = [](const Usage& u) { return u.bytes + (u.attached ? 0 : u.files); };
  std::vector<std::tuple<bool, uint64_t, std::string>> lru;
  for (auto& [k, u] : usage_) {
    if (k == key || frees(u) == 0 || pinned_.count(k)) continue;
    if (u.attached) {
      auto r = u.resident.lock();
      if (!r || r->InUse()) continue;  // (no resident yet: the store is opening it)
    }
    lru.emplace_back(!u.verified, u.last_access, k);
  }
  std::sort(lru.begin(), lru.end());
  std::vector<std::string> chosen;
  uint64_t f = 0;
  for (auto& [partial, t, k] : lru) {
    if (fits(f)) break;
    f += frees(usage_[k]);
    chosen.push_back(k);
  }
  if (!fits(f)) return false;
  for (auto& k : chosen) {
    Usage& u = usage_[k];
    MODELFS_LOG(kDebug, "evicting %s (%llu bytes, %s)", k.c_str(), (unsigned long long)u.bytes,
                u.verified ? "verified" : "partial");
    // Still on disk until dropped: the charge moves to releasing_.
    used_ -= u.bytes;
    evicted_ += u.bytes;
    u.bytes = 0;
    u.verified = false;
    if (!u.attached) {
      overhead_ -= u.files;
      u.files = 0;
    }
    victims->push_back(Victim{k, u.attached ? u.resident.lock() : nullptr});
    dropping_.insert(k);
  }
  releasing_ += f;
  *freed = f;
  return true;
}

void SpaceManager::Drop(std::unique_lock<std::mutex>& l, const std::vector<Victim>& victims, uint64_t freed) {
  if (victims.empty()) return;
  // Before returning: the caller writes only after the space is really released.
  l.unlock();
  for (const auto& v : victims) {
    if (v.resident) {
      v.resident->DropBlocks();
    } else {
      disk_->RemoveFiles(v.key);
    }
  }
  l.lock();
  releasing_ -= freed;
  for (const auto& v : victims) dropping_.erase(v.key);
  changed_.notify_all();
}

void SpaceManager::RefreshPinsLocked() {
  // One stat per eviction; the pins are read again only when they changed.
  const int64_t stamp = disk_->PinsStamp();
  if (stamp == pins_stamp_) return;
  pins_stamp_ = stamp;
  pinned_ = disk_->PinnedKeys();
}

}  // namespace modelfs
