// SpaceManager: the cache directory's space, decided in one place. It keeps the accounts (block
// data charged per blob, the files and metadata charged besides it, bytes admitted but not yet
// written), admits a write only if it fits within the quota and above the free-space floor, and
// chooses what to evict to make room for it: whole blobs, verified complete files before partial
// ones, least recently used first within each class, never a pinned one, one in use, nor the blob
// the room is for.
//
// Admission before the write: space is reserved (Admit) before a block is written and committed
// (Commit) once the write ended, so the cache's data never exceeds the quota, not even briefly.
// Victims are chosen under the manager's lock and dropped (their blocks punched out, or their
// files unlinked) outside it; while they are dropped their charge still counts (`releasing`), and
// the room they free is held for the caller that evicted them (`claimed`), so no other writer can
// take it and nothing on disk ever passes the quota. One eviction runs at a time: a caller that
// needs room while another evicts waits for it to end and judges again (that drop may have made
// the room), as when the whole eviction ran under the lock.
//
// The floor: a write is admitted only if the filesystem keeps min_free_bytes free after it and
// after every write admitted and not yet done (the filesystem does not count those yet). What
// the filesystem has free comes from Disk::FreeBytes (statvfs), so other processes filling the
// disk are seen too.
//
// No I/O of its own: the filesystem is reached through Disk (the store's is the cache directory,
// tests pass a fake), and a blob in use through its Resident.
//
// Lock: mu_ guards every member below it. It is taken after the store's own lock (DiskBlobStore
// calls ChargeFiles holding it) and before any Blob::mu (Resident::InUse takes it, with mu_
// held). Disk::FreeBytes, Disk::PinsStamp and Disk::PinnedKeys are called with mu_ held (a
// statvfs, a stat, and reading the pins only when they changed); Resident::DropBlocks and
// Disk::RemoveFiles never are.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace modelfs {

// Filesystems allocate whole pages: a 100-byte last block still takes 4 KiB of disk. Charging
// pages makes the quota a bound on real disk use. Only a blob's last block can be unaligned, so
// the charge of a blob's present bytes is the page-rounded sum.
constexpr uint64_t kDiskPage = 4096;
inline uint64_t Charge(uint64_t bytes) { return (bytes + kDiskPage - 1) / kDiskPage * kDiskPage; }
// The disk a blob's files take besides block data: its index (64-byte header, 16 bytes per
// block) and its data file's extent pages.
uint64_t FilesCharge(uint64_t size);

class SpaceManager {
 public:
  // A blob the store has in use (see Attach): what eviction asks of it.
  class Resident {
   public:
    virtual ~Resident() = default;
    // True while it must not be evicted (open, a fetch in flight, being verified). Called with
    // the manager's lock held: takes only locks ordered after it.
    virtual bool InUse() = 0;
    // Drops every block it has on disk (the verified flag off durably, then the hole punched);
    // its files stay. Called without the manager's lock.
    virtual void DropBlocks() = 0;
  };

  // The cache filesystem, as the manager sees it.
  class Disk {
   public:
    virtual ~Disk() = default;
    // Bytes free for the cache (statvfs: f_bavail * f_frsize); false if unknown (no floor is
    // checked then). Called with the manager's lock held, at each admission while a floor is set.
    virtual bool FreeBytes(uint64_t* bytes) = 0;
    // Changes whenever the pins change (the pins directory's mtime in ns; 0: no pins). Called
    // with the lock held, once per eviction.
    virtual int64_t PinsStamp() = 0;
    // The content keys of every pinned blob; called with the lock held when the stamp changed.
    virtual std::set<std::string> PinnedKeys() = 0;
    // Unlinks the files of a blob the store does not use (its index first: a data file without
    // one is never read). Called without the lock.
    virtual void RemoveFiles(const std::string& key) = 0;
  };

  struct Limits {
    uint64_t quota_bytes = 0;     // the whole directory's; 0 = no limit
    uint64_t min_free_bytes = 0;  // the filesystem's free-space floor; 0 = none
  };

  struct Totals {
    uint64_t used = 0;       // block data charged (present blocks and admitted ones)
    uint64_t overhead = 0;   // charged besides block data: files, directories, metadata, reserve
    uint64_t peak = 0;       // the most used + overhead + releasing since open (<= quota)
    uint64_t evicted = 0;    // block data evicted since open (counted when chosen)
    uint64_t releasing = 0;  // charge of victims chosen and not yet dropped (still on disk)
  };

  // `disk` must outlive the manager.
  SpaceManager(Limits limits, Disk* disk);
  SpaceManager(const SpaceManager&) = delete;
  SpaceManager& operator=(const SpaceManager&) = delete;

  uint64_t quota() const { return limits_.quota_bytes; }
  uint64_t min_free() const { return limits_.min_free_bytes; }

  // At open, before any admission: a blob found on disk (block data charge, its files' charge,
  // last use as a clock value), and what the directory holds besides blobs (no room is made).
  // StartClock sets the LRU clock above every last use found.
  void AddExisting(const std::string& key, uint64_t bytes, bool verified, uint64_t files, uint64_t last_access);
  void AddOverhead(uint64_t bytes);
  void StartClock(uint64_t now);

  // Reserves `bytes` of block data of `key` (evicting other blobs if needed); false if no room
  // can be made (a log line says so, once until the next success). Commit follows the write.
  bool Admit(const std::string& key, uint64_t bytes);
  // The write of `bytes` admitted for `key` ended: the filesystem counts them now; if it failed
  // (`written` false) their charge is given back.
  void Commit(const std::string& key, uint64_t bytes, bool written);
  // Charges the files of `key` (FilesCharge(size), less what is charged already) and a page for
  // its fan-out directory if `new_dir`, before the store creates them; false if no room.
  bool ChargeFiles(const std::string& key, uint64_t size, bool new_dir);
  // Gives back the charge of the files of `key` (they were never created).
  void RefundFiles(const std::string& key);
  // Charges `bytes` of another file the caller is about to write into the directory; never
  // given back. False (nothing charged) if no room can be made.
  bool ChargeOther(uint64_t bytes);
  // The store uses `key` from now on: its blocks are dropped through `resident` when it is
  // evicted (its files then stay, and their charge with them), and it is asked whether it is in
  // use. `present` is the charge of the blocks its files hold (their index may have been reset).
  void Attach(const std::string& key, std::weak_ptr<Resident> resident, uint64_t present, bool verified);
  // A use of `key`, for the LRU order.
  void Touch(const std::string& key);
  // Blocks of `key` were dropped (after a hash failure): `bytes` of charge (all of it if `all`)
  // is given back, and the blob is not verified any more.
  void Release(const std::string& key, uint64_t bytes, bool all);
  void MarkVerified(const std::string& key);
  bool IsVerified(const std::string& key) const;
  // The room left under the quota, counting admitted writes twice (what a lookahead may take
  // half of); 0 with no quota.
  uint64_t FreeRoom() const;
  Totals totals() const;

 private:
  struct Usage {
    uint64_t bytes = 0;        // charged bytes (pages) of present blocks
    uint64_t last_access = 0;  // LRU clock
    bool verified = false;     // whole file present and hash matched: evicted before partial ones
    uint64_t files = 0;        // FilesCharge of its .idx/.data (in overhead_); 0 = none
    std::weak_ptr<Resident> resident;  // set by Attach: the store uses it
    bool attached = false;
  };
  struct Victim {
    std::string key;
    std::shared_ptr<Resident> resident;  // null: detached, its files are unlinked
  };

  // Requires mu_ (held by l; released and taken again while victims are dropped or another
  // eviction runs): makes room for need() bytes for `key`, need() being evaluated under the
  // lock. True (and *bytes = need()) if they fit now, under this hold of the lock; false if
  // no room can be made.
  bool MakeRoomLocked(std::unique_lock<std::mutex>& l, const std::string& key,
                      const std::function<uint64_t()>& need, uint64_t* bytes);
  // Requires mu_: whether `bytes` fit now, within the quota and above the floor.
  bool FitsLocked(uint64_t bytes);
  // Requires mu_ and the eviction turn (evicting_): evicts until `bytes` fit, the quota first and
  // then the floor, each eviction's drop outside the lock; holds the room in claimed_.
  bool EvictForLocked(std::unique_lock<std::mutex>& l, const std::string& key, uint64_t bytes);
  // Requires mu_: the blobs to evict, least valuable first, until fits(freed) holds; false (and
  // nothing chosen) if it cannot. The chosen blobs' charge moves to releasing_.
  bool ChooseLocked(const std::string& key, const std::function<bool(uint64_t freed)>& fits,
                    std::vector<Victim>* victims, uint64_t* freed);
  // Drops victims, without mu_ (l is released and taken again).
  void Drop(std::unique_lock<std::mutex>& l, const std::vector<Victim>& victims, uint64_t freed);
  void RefreshPinsLocked();
  uint64_t OccupiedLocked() const { return used_ + overhead_ + releasing_ + claimed_; }
  void NotePeakLocked();

  const Limits limits_;
  Disk* const disk_;

  mutable std::mutex mu_;
  std::condition_variable changed_;     // an eviction ended (evicting_ false, dropping_ empty)
  std::map<std::string, Usage> usage_;  // every blob on disk
  uint64_t used_ = 0;
  uint64_t overhead_ = 0;
  uint64_t pending_ = 0;     // admitted, not yet written (the filesystem does not count them)
  uint64_t releasing_ = 0;   // charge of victims being dropped (still on disk)
  uint64_t claimed_ = 0;     // room held for the evicting caller until it charges
  uint64_t peak_ = 0;
  uint64_t evicted_ = 0;
  uint64_t clock_ = 0;       // logical time for LRU
  bool evicting_ = false;    // a caller is evicting (one at a time)
  std::set<std::string> dropping_;  // keys of the victims being dropped
  bool full_logged_ = false;        // "cache full" logged since the last successful admission
  std::set<std::string> pinned_;    // content keys of pinned repos: never evicted
  int64_t pins_stamp_ = -1;         // Disk::PinsStamp() when pinned_ was loaded
};

}  // namespace modelfs
