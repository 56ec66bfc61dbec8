#include "cache/block_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "cache/hash.h"
#include "common/log.h"

namespace modelfs {
namespace {

constexpr char kMagic[8] = {'M', 'F', 'S', 'I', 'D', 'X', '1', '\0'};
constexpr uint32_t kFlagVerified = 1;
constexpr size_t kHeaderSize = 64;
constexpr size_t kEntrySize = 16;

struct Header {
  char magic[8];
  uint64_t size;
  uint32_t block_size;
  uint32_t flags;
  uint64_t reserved[5];
};
static_assert(sizeof(Header) == kHeaderSize);

// pread or pwrite of all `len` bytes at `off`, through EINTR and short transfers; false on an
// error or at EOF.
template <typename Char, typename Io>
bool FullIo(Io io, int fd, Char* p, size_t len, off_t off) {
  while (len > 0) {
    ssize_t n = io(fd, p, len, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
    off += n;
  }
  return true;
}

bool PreadFull(int fd, void* buf, size_t len, off_t off) {
  return FullIo(pread, fd, static_cast<char*>(buf), len, off);
}

bool PwriteFull(int fd, const void* buf, size_t len, off_t off) {
  return FullIo(pwrite, fd, static_cast<const char*>(buf), len, off);
}

}  // namespace

Result<std::unique_ptr<BlockFile>> BlockFile::Open(const std::string& dir, const std::string& key,
                                                   uint64_t size) {
  std::string base = dir + "/" + key;
  int data_fd = open((base + ".data").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  int mode = O_RDWR | O_CREAT;
  if (data_fd < 0 && (errno == EROFS || errno == EACCES)) {
    // Read-only cache: the blocks already there are still served (and checked); writes fail,
    // which the store turns into uncached reads.
    data_fd = open((base + ".data").c_str(), O_RDONLY | O_CLOEXEC);
    mode = O_RDONLY;
  }
  if (data_fd < 0) return Status::IoError("open " + base + ".data: " + strerror(errno));
  int idx_fd = open((base + ".idx").c_str(), mode | O_CLOEXEC, 0600);
  if (idx_fd < 0) {
    close(data_fd);
    return Status::IoError("open " + base + ".idx: " + strerror(errno));
  }
  std::unique_ptr<BlockFile> f(new BlockFile(base, size, data_fd, idx_fd));
  uint64_t n = (size + kBlockSize - 1) / kBlockSize;
  f->entries_.resize(n);
  f->checked_.assign(n, 0);

  Header h{};
  bool valid = PreadFull(idx_fd, &h, sizeof h, 0) && memcmp(h.magic, kMagic, 8) == 0 &&
               h.size == size && h.block_size == kBlockSize;
  std::vector<char> raw(n * kEntrySize);
  if (valid && n > 0) valid = PreadFull(idx_fd, raw.data(), raw.size(), kHeaderSize);
  if (valid) {
    f->flags_ = h.flags;
    for (uint64_t i = 0; i < n; i++) {
      memcpy(&f->entries_[i], raw.data() + i * kEntrySize, kEntrySize);
      // An entry whose length is wrong is garbage from a torn write: treat as absent.
      if (f->entries_[i].len != f->BlockLen(static_cast<uint32_t>(i))) f->entries_[i] = Entry{};
    }
  } else {
    // New or unusable index: start empty. Truncating the data file releases stale space.
    if (ftruncate(data_fd, 0) != 0 || ftruncate(data_fd, static_cast<off_t>(size)) != 0 ||
        ftruncate(idx_fd, 0) != 0) {
      return Status::IoError("reset " + base + ": " + strerror(errno));
    }
    Header nh{};
    memcpy(nh.magic, kMagic, 8);
    nh.size = size;
    nh.block_size = kBlockSize;
    std::vector<char> zeros(n * kEntrySize, 0);
    if (!PwriteFull(idx_fd, &nh, sizeof nh, 0) ||
        (n > 0 && !PwriteFull(idx_fd, zeros.data(), zeros.size(), kHeaderSize))) {
      return Status::IoError("write " + base + ".idx: " + strerror(errno));
    }
  }
  return f;
}

bool BlockFile::Peek(const std::string& idx_path, BlockFileSummary* out) {
  int fd = open(idx_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  Header h{};
  bool ok = PreadFull(fd, &h, sizeof h, 0) && memcmp(h.magic, kMagic, 8) == 0 &&
            h.block_size == kBlockSize;
  if (ok) {
    *out = BlockFileSummary{};
    out->size = h.size;
    out->verified = h.flags & kFlagVerified;
    uint64_t n = (h.size + kBlockSize - 1) / kBlockSize;
    out->num_blocks = static_cast<uint32_t>(n);
    std::vector<char> raw(n * kEntrySize);
    if (n > 0 && !PreadFull(fd, raw.data(), raw.size(), kHeaderSize)) {
      out->verified = false;  // short index: Open will reset it
      n = 0;
    }
    for (uint64_t i = 0; i < n; i++) {
      Entry e;
      memcpy(&e, raw.data() + i * kEntrySize, kEntrySize);
      uint64_t want = std::min<uint64_t>(kBlockSize, h.size - i * kBlockSize);
      if (e.checksum != 0 && e.len == want) {
        out->present_bytes += e.len;
        out->present_blocks++;
      }
    }
  }
  close(fd);
  return ok;
}

BlockFile::BlockFile(std::string base, uint64_t size, int data_fd, int idx_fd)
    : base_(std::move(base)), size_(size), data_fd_(data_fd), idx_fd_(idx_fd) {}

BlockFile::~BlockFile() {
  close(data_fd_);
  close(idx_fd_);
}

uint32_t BlockFile::BlockLen(uint32_t i) const {
  uint64_t start = static_cast<uint64_t>(i) * kBlockSize;
  uint64_t end = std::min<uint64_t>(start + kBlockSize, size_);
  return static_cast<uint32_t>(end - start);
}

bool BlockFile::Present(uint32_t i) const {
  std::lock_guard<std::mutex> l(mu_);
  return i < entries_.size() && entries_[i].checksum != 0;
}

bool BlockFile::Checked(uint32_t first, uint32_t last) const {
  std::lock_guard<std::mutex> l(mu_);
  if (last >= entries_.size() || first > last) return false;
  for (uint32_t i = first; i <= last; i++) {
    if (entries_[i].checksum == 0 || !checked_[i]) return false;
  }
  return true;
}

bool BlockFile::AllPresent() const {
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& e : entries_)
    if (e.checksum == 0) return false;
  return true;
}

uint64_t BlockFile::PresentBytes() const {
  std::lock_guard<std::mutex> l(mu_);
  uint64_t total = 0;
  for (const auto& e : entries_) total += e.checksum ? e.len : 0;
  return total;
}

bool BlockFile::verified() const {
  std::lock_guard<std::mutex> l(mu_);
  return flags_ & kFlagVerified;
}

uint64_t BlockFile::corrupt_blocks() const {
  std::lock_guard<std::mutex> l(mu_);
  return corrupt_;
}

uint64_t BlockFile::drops() const {
  std::lock_guard<std::mutex> l(mu_);
  return drops_;
}

bool BlockFile::ReadBlock(uint32_t i, char* buf) {
  uint64_t want;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (i >= entries_.size() || entries_[i].checksum == 0) return false;
    want = entries_[i].checksum;
  }
  uint32_t len = BlockLen(i);
  bool ok = PreadFull(data_fd_, buf, len, static_cast<off_t>(i) * kBlockSize);
  if (ok && BlockChecksum(buf, len) == want) {
    std::lock_guard<std::mutex> l(mu_);
    if (entries_[i].checksum == want) checked_[i] = 1;
    return true;
  }
  std::lock_guard<std::mutex> l(mu_);
  if (entries_[i].checksum == want) {  // not rewritten meanwhile: this block is bad
    entries_[i] = Entry{};
    // The file changed under us (truncated, overwritten, a torn write): no block of it is trusted
    // unchecked any more. A span (the splice path) serves only checked blocks; a truncated file
    // that a refetch extends again holds zeros where its other blocks were, and the size check
    // alone would let them through.
    std::fill(checked_.begin(), checked_.end(), 0);
    if (flags_ & kFlagVerified) {  // the blob is no longer whole: clear the flag on disk too
      flags_ &= ~kFlagVerified;
      PwriteFull(idx_fd_, &flags_, sizeof flags_, offsetof(Header, flags));
    }
    corrupt_++;
    drops_++;
    // Clearing the entry on disk only saves the next open a re-hash: if the write fails, the
    // stale entry still mismatches the block's bytes, so the block reads as the same miss.
    if (!WriteEntry(i).ok()) MODELFS_LOG(kDebug, "cannot clear the index entry of corrupt block %u", i);
  }
  return false;
}

bool BlockFile::ReadBlockUnchecked(uint32_t i, char* buf) {
  bool checked;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (i >= entries_.size() || entries_[i].checksum == 0) return false;
    checked = checked_[i] != 0;
  }
  if (!checked) return ReadBlock(i, buf);
  return PreadFull(data_fd_, buf, BlockLen(i), static_cast<off_t>(i) * kBlockSize);
}

Status BlockFile::WriteBlock(uint32_t i, const char* data) {
  uint32_t len = BlockLen(i);
  Status s;
  if (PwriteFull(data_fd_, data, len, static_cast<off_t>(i) * kBlockSize)) {
    uint64_t sum = BlockChecksum(data, len);
    std::lock_guard<std::mutex> l(mu_);
    entries_[i].checksum = sum;
    entries_[i].len = len;
    checked_[i] = 1;
    s = WriteEntry(i);
    if (s.ok()) return s;
  } else {
    s = Status::IoError("write " + base_ + ".data: " + strerror(errno));
  }
  // A write can fail part way (ENOSPC, EFBIG) with pages already allocated, and the caller gives
  // the block's charge back: nothing of it may stay on disk outside the quota. The block is
  // absent (an entry that reached the index half written mismatches the hole: a miss).
  std::lock_guard<std::mutex> l(mu_);
  if (entries_[i].checksum != 0) drops_++;
  entries_[i] = Entry{};
  checked_[i] = 0;
  PunchLocked(i, i);
  return s;
}

void BlockFile::PunchLocked(uint32_t first, uint32_t last) {
  // Blocks are page-aligned; the last block of the file runs to the page boundary past EOF
  // (punching only to EOF zeroes a partial last page but keeps it allocated: tmpfs, ext4).
  const off_t page = static_cast<off_t>(sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096);
  const off_t start = static_cast<off_t>(first) * static_cast<off_t>(kBlockSize);
  off_t end = std::min<off_t>(static_cast<off_t>(last + 1) * static_cast<off_t>(kBlockSize), static_cast<off_t>(size_));
  end = (end + page - 1) / page * page;
  if (end > start) fallocate(data_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, start, end - start);
}

Status BlockFile::WriteEntry(uint32_t i) {
  if (!PwriteFull(idx_fd_, &entries_[i], kEntrySize, kHeaderSize + static_cast<off_t>(i) * kEntrySize)) {
    return Status::IoError("write " + base_ + ".idx: " + strerror(errno));
  }
  return Status::Ok();
}

Status BlockFile::MarkVerified() {
  if (fdatasync(data_fd_) != 0 || fdatasync(idx_fd_) != 0) {
    return Status::IoError("fdatasync " + base_ + ": " + strerror(errno));
  }
  std::lock_guard<std::mutex> l(mu_);
  flags_ |= kFlagVerified;
  if (!PwriteFull(idx_fd_, &flags_, sizeof flags_, offsetof(Header, flags)) || fdatasync(idx_fd_) != 0) {
    return Status::IoError("write " + base_ + ".idx: " + strerror(errno));
  }
  return Status::Ok();
}

void BlockFile::DropAll() {
  std::lock_guard<std::mutex> l(mu_);
  drops_++;
  for (auto& e : entries_) e = Entry{};
  checked_.assign(checked_.size(), 0);
  bool was_verified = flags_ & kFlagVerified;
  flags_ = 0;
  std::vector<char> zeros(entries_.size() * kEntrySize, 0);
  PwriteFull(idx_fd_, &flags_, sizeof flags_, offsetof(Header, flags));
  if (was_verified) fdatasync(idx_fd_);  // see the contract: flag off durably before the punch
  if (!zeros.empty()) PwriteFull(idx_fd_, zeros.data(), zeros.size(), kHeaderSize);
  // Release the space; the file keeps its size so offsets stay valid. The hole runs to the next
  // page boundary past EOF: punching only [0, size) zeroes a partial last page but keeps it
  // allocated (tmpfs, ext4), which leaked one page per dropped blob past the quota's accounting.
  if (!entries_.empty()) PunchLocked(0, static_cast<uint32_t>(entries_.size()) - 1);
}

uint64_t BlockFile::DropBlocks(uint32_t first, uint32_t last) {
  std::lock_guard<std::mutex> l(mu_);
  if (entries_.empty() || first > last) return 0;
  drops_++;
  last = std::min<uint32_t>(last, static_cast<uint32_t>(entries_.size()) - 1);
  bool was_verified = flags_ & kFlagVerified;
  flags_ = 0;
  PwriteFull(idx_fd_, &flags_, sizeof flags_, offsetof(Header, flags));
  if (was_verified) fdatasync(idx_fd_);  // as DropAll: flag off durably before the punch
  uint64_t dropped = 0;
  for (uint32_t i = first; i <= last; i++) {
    if (entries_[i].checksum != 0) dropped += BlockLen(i);
    entries_[i] = Entry{};
    checked_[i] = 0;
  }
  std::vector<char> zeros(static_cast<size_t>(last - first + 1) * kEntrySize, 0);
  PwriteFull(idx_fd_, zeros.data(), zeros.size(), kHeaderSize + static_cast<off_t>(first) * kEntrySize);
  PunchLocked(first, last);
  return dropped;
}

}  // namespace modelfs
