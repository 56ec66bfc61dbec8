// DiskBlobStore, what the space manager (cache/space_manager.h) is told and asks: the blobs left
// on disk by earlier runs and the rest of the directory (charged at open), the cache directory as
// its Disk (statvfs, the pins, unlinking a blob's files), and each Blob as its Resident (whether
// it is in use, dropping its blocks). The accounts and every decision are the manager's.
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
        space_->AddExisting(key, 0, false, files, mtime);
        continue;
      }
      // Older runs sort before anything touched now.
      space_->AddExisting(key, Charge(sum.present_bytes), sum.verified && sum.present_blocks == sum.num_blocks,
                          FilesCharge(sum.size), mtime);
    }
    closedir(dd);
  }
  closedir(top);
  // Logical clock starts above every mtime so blobs used in this run are newer.
  space_->StartClock(static_cast<uint64_t>(time(nullptr)) + 1);
}

uint64_t DiskBlobStore::MeasureOther() const {
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

bool DiskBlobStore::ChargeOther(uint64_t bytes) { return space_->ChargeOther(bytes); }

bool DiskBlobStore::CacheDirDisk::FreeBytes(uint64_t* bytes) {
  struct statvfs vfs;
  if (statvfs(store_->opts_.dir.c_str(), &vfs) != 0) return false;
  *bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  return true;
}

int64_t DiskBlobStore::CacheDirDisk::PinsStamp() {
  struct stat st;
  if (stat((store_->opts_.dir + "/pins").c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

std::set<std::string> DiskBlobStore::CacheDirDisk::PinnedKeys() {
  std::set<std::string> keys;
  for (const auto& p : ListPins(store_->opts_.dir)) keys.insert(p.keys.begin(), p.keys.end());
  return keys;
}

void DiskBlobStore::CacheDirDisk::RemoveFiles(const std::string& key) {
  const std::string base = store_->BlobDir(key) + "/" + key;
  unlink((base + ".idx").c_str());  // index first: a data file without one is never read
  unlink((base + ".data").c_str());
}

bool DiskBlobStore::Blob::InUse() {
  std::lock_guard<std::mutex> l(mu);
  return opens > 0 || !inflight.empty() || verifying;
}

void DiskBlobStore::Blob::DropBlocks() {
  if (file) file->DropAll();
}

}  // namespace modelfs
