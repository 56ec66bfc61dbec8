#include "cache/disk_blob_store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>

#include "cache/pins.h"
#include "common/file_util.h"
#include "common/log.h"

namespace modelfs {
namespace {

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

}  // namespace modelfs
