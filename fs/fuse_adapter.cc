// The libfuse edge. Each low-level callback unpacks the request, calls ModelFs, converts the answer
// (attributes to struct stat, Status to errno through ToErrno) and replies; no filesystem logic
// lives here. Requests run on libfuse's worker pool (fuse_session_loop_mt), so every callback may
// run concurrently with every other; ModelFs is thread-safe and the adapter keeps no shared state
// apart from per-opendir listing snapshots owned by their file handle.
//
// Mounting and the session's life are in fs/fuse_mount.cc; fs/fuse_adapter_internal.h holds what
// both share (the API version, Server, the op table).
#include "fs/fuse_adapter_internal.h"

#include "common/log.h"
#include "common/metrics.h"
#include "common/page_buffer.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "fs/errno.h"

namespace modelfs::fuse_edge {

namespace {

// Outstanding background (readahead) requests; 64 as mountpoint-s3 and hf-mount use, with the
// congestion threshold at the kernel's usual 75%.
constexpr unsigned kMaxBackground = 64;
constexpr unsigned kCongestionThreshold = 48;
// statfs block size and longest name, in bytes.
constexpr unsigned kStatfsBlock = 4096;
constexpr unsigned kNameMax = 255;

Server& Srv(fuse_req_t req) { return *static_cast<Server*>(fuse_req_userdata(req)); }
ModelFs& Fs(fuse_req_t req) { return *Srv(req).fs; }

// Times one request from its callback's start to its end (after the reply is sent) into the op's
// histogram: one steady_clock read on each side and three relaxed atomic adds. `req` is not
// touched in the destructor (it is freed by the reply); the histogram is resolved up front.
class OpTimer {
 public:
  OpTimer(fuse_req_t req, FuseOp op) : hist_(op < kOpTimedCount ? Srv(req).latency[op] : nullptr) {
    if (hist_) t0_ = std::chrono::steady_clock::now();
  }
  ~OpTimer() {
    if (hist_) {
      hist_->ObserveNanos(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0_).count()));
    }
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  Histogram* hist_;
  std::chrono::steady_clock::time_point t0_;
};

struct stat ToStat(const FsAttr& a) {
  struct stat st;
  std::memset(&st, 0, sizeof st);
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blocks = static_cast<blkcnt_t>(a.blocks);
  st.st_blksize = a.blksize;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_atim.tv_sec = st.st_mtim.tv_sec = st.st_ctim.tv_sec = a.time_sec;
  st.st_atim.tv_nsec = st.st_mtim.tv_nsec = st.st_ctim.tv_nsec = a.time_nsec;
  return st;
}

fuse_entry_param ToEntry(const FsEntry& e) {
  fuse_entry_param p;
  std::memset(&p, 0, sizeof p);
  p.ino = e.attr.ino;
  p.generation = 0;  // inode numbers are never reused within a mount
  p.attr = ToStat(e.attr);
  p.attr_timeout = e.attr_timeout_s;
  p.entry_timeout = e.entry_timeout_s;
  return p;
}

// Every error answer passes through here: counted by op and errno and, unless it is ordinary
// traffic, logged (rate limited) with the path (`name` in directory `ino` when given, else `ino`
// itself) and the cause. NoteError only reports (a negative lookup entry is a reply, not an
// error); ReplyError reports and sends.
void NoteError(fuse_req_t req, FuseOp op, int err, fuse_ino_t ino, const char* name, const std::string& cause) {
  Server& srv = Srv(req);
  srv.errors.Report(kOpNames[op], err, [&srv, ino, name] {
    // Appended piece by piece: GCC 12 -O3 reports a false -Wrestrict on "literal" + string&&.
    std::string path;
    if (srv.fs) {
      path = srv.fs->PathOf(ino);
    } else {
      path = "<inode ";
      path += std::to_string(ino);
      path += ">";
    }
    if (name != nullptr) {
      if (path != "/") path += "/";
      path += name;
    }
    return path;
  }, cause);
}

void ReplyError(fuse_req_t req, FuseOp op, int err, fuse_ino_t ino, const char* name, const std::string& cause) {
  NoteError(req, op, err, ino, name, cause);
  fuse_reply_err(req, err);
}

void ReplyStatus(fuse_req_t req, FuseOp op, fuse_ino_t ino, const Status& s, const char* name = nullptr) {
  ReplyError(req, op, ToErrno(s), ino, name, s.ToString());
}

// The backstop for write-type requests on a read-only mount.
void RefuseWrite(fuse_req_t req, FuseOp op, fuse_ino_t ino, const char* name = nullptr) {
  ReplyError(req, op, EROFS, ino, name, "read-only filesystem");
}

// ---- callbacks ----

void OpInit(void* userdata, fuse_conn_info* conn) {
  conn->max_write = kMaxIo;
  conn->max_read = kMaxIo;
  // The kernel caps readahead at the mount's bdi read_ahead_kb, which RaiseBdiReadahead lifts to
  // this value when we run as root; otherwise the kernel's 128 KiB default applies.
  conn->max_readahead = static_cast<Server*>(userdata)->max_readahead;
  conn->max_background = kMaxBackground;
  conn->congestion_threshold = kCongestionThreshold;
  // Async reads let the kernel keep several readahead requests in flight per file.
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  // Replies of cache blocks checked in this run are spliced from the cache file to /dev/fuse
  // (OpRead): the bytes never pass through the daemon's memory. Requests are read as usual
  // (no splice read: a read-only mount's requests carry no data), and pages are copied, not moved
  // (they belong to the cache file's page cache).
  Server& srv = *static_cast<Server*>(userdata);
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_SPLICE_WRITE);
  if (srv.splice && !(conn->capable & FUSE_CAP_SPLICE_WRITE)) {
    srv.splice = false;
    srv.splice_note = "the kernel does not offer splice on /dev/fuse";
  }
  if (srv.splice) conn->want |= FUSE_CAP_SPLICE_WRITE;
  MODELFS_LOG(kInfo, "reads of checked cache blocks: %s", srv.splice ? "spliced from the cache file" :
              ("copied through the daemon (" + srv.splice_note + ")").c_str());
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  OpTimer timer(req, kOpLookup);
  ModelFs& fs = Fs(req);
  Result<FsEntry> e = fs.Lookup(parent, name);
  if (e.ok()) {
    fuse_entry_param p = ToEntry(*e);
    fuse_reply_entry(req, &p);
  } else if (e.status().code() == Code::kNotFound) {
    // A negative entry (ino 0) lets the kernel cache the miss, briefly: the repo may appear later.
    fuse_entry_param p;
    std::memset(&p, 0, sizeof p);
    p.entry_timeout = fs.options().negative_timeout_s;
    NoteError(req, kOpLookup, ENOENT, parent, name, e.status().ToString());
    fuse_reply_entry(req, &p);
  } else {
    ReplyStatus(req, kOpLookup, parent, e.status(), name);
  }
}

// Inodes are never freed (see fs/model_fs.h), so lookup counts need no tracking.
void OpForget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }
void OpForgetMulti(fuse_req_t req, size_t, fuse_forget_data*) { fuse_reply_none(req); }

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  OpTimer timer(req, kOpGetattr);
  ModelFs& fs = Fs(req);
  Result<FsAttr> a = fs.GetAttr(ino);
  if (!a.ok()) return ReplyStatus(req, kOpGetattr, ino, a.status());
  struct stat st = ToStat(*a);
  fuse_reply_attr(req, &st, fs.options().attr_timeout_s);
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  OpTimer timer(req, kOpOpendir);
  Result<DirListing> l = Fs(req).ReadDir(ino);
  if (!l.ok()) return ReplyStatus(req, kOpOpendir, ino, l.status());
  auto* snapshot = new DirListing(std::move(*l));  // owned by fi->fh until releasedir
  fi->fh = reinterpret_cast<uint64_t>(snapshot);
  if (snapshot->immutable) {
    fi->cache_readdir = 1;  // a pinned repo's dirs never change: let the kernel keep the listing
    fi->keep_cache = 1;
  }
  if (fuse_reply_open(req, fi) != 0) delete snapshot;  // request was interrupted: no releasedir
}

// Offsets are indexes into the snapshot: the entry at index i is sent with offset i + 1 (the
// position of the next entry), so a later call continues from there.
void ReadDirCommon(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  const auto* snapshot = reinterpret_cast<const DirListing*>(fi->fh);
  const ModelFs& fs = Fs(req);
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(std::max<off_t>(off, 0)); i < snapshot->entries.size(); ++i) {
    const DirEntry& d = snapshot->entries[i];
    size_t need;
    if (plus) {
      FsEntry e{d.attr, fs.options().entry_timeout_s, fs.options().attr_timeout_s};
      fuse_entry_param p = ToEntry(e);
      need = fuse_add_direntry_plus(req, buf.data() + used, size - used, d.name.c_str(), &p,
                                    static_cast<off_t>(i + 1));
    } else {
      struct stat st = ToStat(d.attr);
      need = fuse_add_direntry(req, buf.data() + used, size - used, d.name.c_str(), &st,
                               static_cast<off_t>(i + 1));
    }
    if (need > size - used) break;  // did not fit; the kernel asks again from offset i
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReaddir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  OpTimer timer(req, kOpReaddir);
  ReadDirCommon(req, size, off, fi, /*plus=*/false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  OpTimer timer(req, kOpReaddirplus);
  ReadDirCommon(req, size, off, fi, /*plus=*/true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  OpTimer timer(req, kOpReleasedir);
  delete reinterpret_cast<DirListing*>(fi->fh);
  fuse_reply_err(req, 0);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  OpTimer timer(req, kOpOpen);
  ModelFs& fs = Fs(req);
  uint64_t fh = 0;
  bool keep_cache = true;
  Status s = fs.Open(ino, fi->flags, &fh, &keep_cache);
  if (!s.ok()) return ReplyStatus(req, kOpOpen, ino, s);
  fi->fh = fh;
  // Content at a pinned commit never changes: keep the page cache across opens, once the file is
  // verified (before, an earlier reader's pages are dropped: ModelFs::Open). Never direct_io (it
  // would break mmap, which is how safetensors loads).
  fi->keep_cache = keep_cache ? 1 : 0;
  fi->direct_io = 0;
  fi->noflush = 1;                                     // nothing to flush on close
  if (fuse_reply_open(req, fi) != 0) fs.Release(ino, fh);  // interrupted: no release will follow
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  OpTimer timer(req, kOpRelease);
  Fs(req).Release(ino, fi->fh);
  fuse_reply_err(req, 0);
}

// Read replies are built in buffers of kMaxIo from a pool, most recently used first: the few that
// concurrent reads need stay faulted in, whichever of the workers (up to --threads, started and
// ended by libfuse as load comes and goes) takes a read. A buffer per thread, zeroed when it grew,
// cost a fault and a memset per page for every new worker. At most MountOptions::reply_buffers are
// in use and kept, so that replies stay inside the memory budget whatever the number of workers.
// A read takes its buffer only once its bytes are ready to copy (ReadDest): one waiting for the
// network, answered by splice or from the fetch buffer its bytes arrived in (a FileSpan in
// memory) holds none, so cold reads on a far mirror never make reads of cached bytes wait. A read
// past the cap waits for a buffer holding nothing another read needs.
// The reply is written to /dev/fuse before the buffer goes back.
void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  OpTimer timer(req, kOpRead);
  PageBufferPool* const buffers = Srv(req).replies.get();
  PageBuffer buf;  // taken by the store through dest, if it copies
  ReadDest dest([&buf, buffers, size]() -> char* {
    if (!buf) buf = buffers->Get(size);
    return buf.get();
  });
  size_t n = 0;
  MODELFS_LOG(kDebug, "read ino %lu: %zu bytes at %lld", static_cast<unsigned long>(ino), size,
              static_cast<long long>(off));
  BlobStore::FileSpan span;
  span.fd_ok = Srv(req).splice;
  Status s = Fs(req).Read(ino, static_cast<uint64_t>(std::max<off_t>(off, 0)), size, std::move(dest), &n, fi->fh,
                          &span);
  if (!s.ok()) {
    buffers->Put(std::move(buf));
    return ReplyStatus(req, kOpRead, ino, s);
  }
  if (span.mem != nullptr) {
    // Bytes just fetched, written to /dev/fuse from the fetch buffer itself (span.hold keeps it).
    buffers->Put(std::move(buf));
    fuse_reply_buf(req, span.mem, span.len);
    return;
  }
  if (span.fd >= 0) {
    // The kernel copies the bytes from the cache file (libfuse splices them to /dev/fuse, or
    // reads them into a buffer of its own where a pipe cannot hold the reply). span.hold keeps
    // them in place until the reply is written.
    buffers->Put(std::move(buf));
    fuse_bufvec bv = FUSE_BUFVEC_INIT(span.len);
    bv.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    bv.buf[0].fd = span.fd;
    bv.buf[0].pos = static_cast<off_t>(span.pos);
    fuse_reply_data(req, &bv, static_cast<fuse_buf_copy_flags>(0));
    return;
  }
  fuse_reply_buf(req, n > 0 ? buf.get() : nullptr, n);
  buffers->Put(std::move(buf));
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  OpTimer timer(req, kOpStatfs);
  struct statvfs st;
  std::memset(&st, 0, sizeof st);
  st.f_bsize = kStatfsBlock;
  st.f_frsize = kStatfsBlock;
  st.f_files = Fs(req).InodeCount();
  st.f_namemax = kNameMax;
  st.f_flag = ST_RDONLY;
  fuse_reply_statfs(req, &st);
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char*, size_t) {
  ReplyError(req, kOpGetxattr, ENODATA, ino, nullptr, "no extended attributes");
}

void OpListxattr(fuse_req_t req, fuse_ino_t, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, 0);
  } else {
    fuse_reply_buf(req, nullptr, 0);
  }
}

// Every write-type operation: the mount is read-only (the `ro` mount option makes the VFS refuse
// most of these before they reach us; these replies are the backstop).
void RoSetattr(fuse_req_t req, fuse_ino_t ino, struct stat*, int, fuse_file_info*) {
  RefuseWrite(req, kOpSetattr, ino);
}
void RoMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t, dev_t) {
  RefuseWrite(req, kOpMknod, parent, name);
}
void RoMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t) {
  RefuseWrite(req, kOpMkdir, parent, name);
}
void RoUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) { RefuseWrite(req, kOpUnlink, parent, name); }
void RoRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) { RefuseWrite(req, kOpRmdir, parent, name); }
void RoSymlink(fuse_req_t req, const char*, fuse_ino_t parent, const char* name) {
  RefuseWrite(req, kOpSymlink, parent, name);
}
void RoRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t, const char*, unsigned int) {
  RefuseWrite(req, kOpRename, parent, name);
}
void RoLink(fuse_req_t req, fuse_ino_t, fuse_ino_t parent, const char* name) {
  RefuseWrite(req, kOpLink, parent, name);
}
void RoCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t, fuse_file_info*) {
  RefuseWrite(req, kOpCreate, parent, name);
}
void RoWrite(fuse_req_t req, fuse_ino_t ino, const char*, size_t, off_t, fuse_file_info*) {
  RefuseWrite(req, kOpWrite, ino);
}
void RoSetxattr(fuse_req_t req, fuse_ino_t ino, const char*, const char*, size_t, int) {
  RefuseWrite(req, kOpSetxattr, ino);
}
void RoRemovexattr(fuse_req_t req, fuse_ino_t ino, const char*) { RefuseWrite(req, kOpRemovexattr, ino); }
void RoFallocate(fuse_req_t req, fuse_ino_t ino, int, off_t, off_t, fuse_file_info*) {
  RefuseWrite(req, kOpFallocate, ino);
}

}  // namespace

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.release = OpRelease;
  ops.statfs = OpStatfs;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.setattr = RoSetattr;
  ops.mknod = RoMknod;
  ops.mkdir = RoMkdir;
  ops.unlink = RoUnlink;
  ops.rmdir = RoRmdir;
  ops.symlink = RoSymlink;
  ops.rename = RoRename;
  ops.link = RoLink;
  ops.create = RoCreate;
  ops.write = RoWrite;
  ops.setxattr = RoSetxattr;
  ops.removexattr = RoRemovexattr;
  ops.fallocate = RoFallocate;
  return ops;
}

}  // namespace modelfs::fuse_edge
