// BlockFile: one blob's bytes on disk, as two files named by its content key:
//   <key>.data  sparse file of the blob's size; block i lives at offset i * kBlockSize.
//   <key>.idx   a 64-byte header (magic, size, block size, flags) then one 16-byte entry per block:
//               the block's XXH3-64 checksum (0 = block absent) and its length.
//
// Crash safety without fsync on the hot path: a block is published by writing its data first and
// its index entry second. After a crash either may be missing or stale; every read re-checks the
// block's XXH3 against the entry, so a torn or unwritten block is a miss, never wrong bytes. The
// "verified" flag is written only after both files are fdatasync'd, so a verified blob's blocks
// are durable. A block is checked the first time each run reads it (or writes it); from then on
// the store may hand it to the kernel to copy itself (DiskBlobStore::ReadOrSpan), unchecked until the
// next run: so a block torn by a crash, or damaged on disk while the daemon was down, is always
// caught by its first read.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace modelfs {

// Cache block: unit of presence, checksum and eviction. 1 MiB matches FUSE's largest read
// (max_pages 256 x 4 KiB), so an aligned kernel read is exactly one block and one checksum.
constexpr uint32_t kBlockSize = 1u << 20;

// What an index file says about its blob, read without opening the blob (cache scans, tools).
struct BlockFileSummary {
  uint64_t size = 0;           // blob size from the header
  uint64_t present_bytes = 0;  // sum of the lengths of blocks whose entry says present
  uint32_t present_blocks = 0;
  uint32_t num_blocks = 0;
  bool verified = false;       // the durable "whole-file hash matched" flag
};

class BlockFile {
 public:
  // Opens (creating if needed) the block files for `key` under `dir`. An index whose header does
  // not match (other size, other block size, bad magic, short) is reset: its blocks are dropped.
  // On a read-only cache the files are opened read-only if they exist: present blocks read, every
  // write fails with an error.
  static Result<std::unique_ptr<BlockFile>> Open(const std::string& dir, const std::string& key,
                                                 uint64_t size);
  // Reads the header and entries of `idx_path` only. False if it is missing or not an index.
  // Entries are not checked against data (reads do that), so present_bytes may overstate after a
  // crash; it is what the cache charges against its quota until the blob is opened.
  static bool Peek(const std::string& idx_path, BlockFileSummary* out);
  ~BlockFile();
  BlockFile(const BlockFile&) = delete;
  BlockFile& operator=(const BlockFile&) = delete;

  uint64_t size() const { return size_; }
  uint32_t num_blocks() const { return static_cast<uint32_t>(entries_.size()); }
  uint32_t BlockLen(uint32_t i) const;

  bool Present(uint32_t i) const;
  // Whether blocks [first, last] are all present and were checked (read and their XXH3 matched,
  // or written) since this BlockFile was opened.
  bool Checked(uint32_t first, uint32_t last) const;
  // The data file, for a reader that copies checked blocks out of it itself (splice).
  int data_fd() const { return data_fd_; }
  bool AllPresent() const;
  uint64_t PresentBytes() const;
  bool verified() const;

  // Reads block i into buf (room for BlockLen(i)). Returns true on a hit whose checksum matched.
  // False on a miss: absent, unreadable, or corrupt; a corrupt block's entry is cleared (and counted
  // in corrupt_blocks()) so it will be refetched, and every block counts as unchecked (Checked)
  // until read whole again: the file changed under us. Thread-safe.
  bool ReadBlock(uint32_t i, char* buf);
  // ReadBlock for a reader that judges the bytes itself (the whole-file hash): a block checked
  // since open is read without its XXH3 (a short read is still a miss). Bytes changed on disk
  // since then are caught by that reader, which must then ReadBlock every block to find them.
  bool ReadBlockUnchecked(uint32_t i, char* buf);
  // Writes block i (BlockLen(i) bytes) and publishes it. Thread-safe; concurrent writers of the
  // same block must write identical bytes (the caller single-flights fetches). On an error the
  // block is absent and its range holds no disk space: the charge of a failed write can be given
  // back (a write failing part way, ENOSPC or EFBIG, has allocated pages already).
  Status WriteBlock(uint32_t i, const char* data);
  // Makes every present block durable, then sets the verified flag durably.
  Status MarkVerified();
  // Forgets every block (entries cleared, data space released) and the verified flag. The cleared
  // flag is made durable before any space is released, so a crash can never leave a "verified"
  // blob whose data was punched out.
  void DropAll();
  // Forgets blocks [first, last] the same way (and the verified flag). Returns the bytes of the
  // blocks that were present.
  uint64_t DropBlocks(uint32_t first, uint32_t last);
  // Corrupt blocks found by ReadBlock since open.
  uint64_t corrupt_blocks() const;
  // Counts every event that took blocks away since open (DropAll, DropBlocks, a corrupt block
  // found by ReadBlock): a reader of the blocks (the running whole-file hash) that saw the same
  // count before and after knows every block it read is still the one on disk.
  uint64_t drops() const;

 private:
  BlockFile(std::string base, uint64_t size, int data_fd, int idx_fd);
  Status WriteEntry(uint32_t i);  // requires mu_
  // Requires mu_: releases the disk space of blocks [first, last] (their entries untouched).
  void PunchLocked(uint32_t first, uint32_t last);

  struct Entry {
    uint64_t checksum = 0;
    uint32_t len = 0;
    uint32_t reserved = 0;
  };
  const std::string base_;  // path without .data/.idx
  const uint64_t size_;
  const int data_fd_;
  const int idx_fd_;
  mutable std::mutex mu_;   // guards entries_, checked_, flags_, corrupt_
  std::vector<Entry> entries_;
  std::vector<uint8_t> checked_;  // per block: checked since open (in memory only)
  uint32_t flags_ = 0;
  uint64_t corrupt_ = 0;
  uint64_t drops_ = 0;
};

}  // namespace modelfs
