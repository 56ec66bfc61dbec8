// RAII over libcurl: the one-time global init, easy handles, a share handle, and a pool of easy
// handles. fetch/-internal: this is the only header that includes <curl/curl.h>; everything above
// fetch/ sees HttpClient (http_client.h) instead.
//
// Connection reuse: libcurl keeps live connections in each easy handle's connection cache, and
// curl_easy_reset() keeps that cache. So a request borrows a handle from the pool, resets and
// configures it, and gives it back; the next request to the same host:port reuses the keep-alive
// connection. The DNS cache and TLS sessions are shared across all handles through one CURLSH.
// Connection caches are deliberately not shared (CURL_LOCK_DATA_CONNECT): a per-handle cache needs
// no lock on the hot path and libcurl's shared connection cache serialises all transfers on it.
#pragma once

#include <curl/curl.h>

#include <memory>
#include <mutex>
#include <vector>

namespace modelfs::http {

// curl_global_init(CURL_GLOBAL_DEFAULT) exactly once per process (std::call_once). Called by every
// constructor below, so it runs before any worker thread touches libcurl.
void EnsureCurlGlobalInit();

// One CURL easy handle. Non-copyable; movable.
class EasyHandle {
 public:
  EasyHandle();  // aborts on allocation failure (libcurl out of memory)
  ~EasyHandle();
  EasyHandle(EasyHandle&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
  EasyHandle& operator=(EasyHandle&& o) noexcept;
  EasyHandle(const EasyHandle&) = delete;
  EasyHandle& operator=(const EasyHandle&) = delete;
  CURL* get() const { return h_; }

 private:
  CURL* h_;
};

// A CURLSH sharing the DNS cache and TLS session ids, with one mutex per lock_data kind.
class ShareHandle {
 public:
  ShareHandle();
  ~ShareHandle();
  ShareHandle(const ShareHandle&) = delete;
  ShareHandle& operator=(const ShareHandle&) = delete;
  CURLSH* get() const { return sh_; }

 private:
  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* self);
  static void Unlock(CURL*, curl_lock_data data, void* self);
  CURLSH* sh_;
  std::mutex mu_[CURL_LOCK_DATA_LAST];  // mu_[d] guards libcurl's shared data of kind d
};

// Pool of idle easy handles (and so of their keep-alive connections). Thread-safe.
class EasyPool {
 public:
  // Handles beyond max_idle are closed when returned (a burst of threads does not keep sockets
  // open forever).
  explicit EasyPool(size_t max_idle);
  EasyPool(const EasyPool&) = delete;
  EasyPool& operator=(const EasyPool&) = delete;

  // A borrowed handle, returned to the pool on destruction. Call Discard() after a transfer that
  // left the handle in an unknown state (it is then closed instead of reused).
  class Lease {
   public:
    Lease(EasyPool* pool, EasyHandle h) : pool_(pool), h_(std::move(h)) {}
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    CURL* get() const { return h_.get(); }
    void Discard() { discard_ = true; }

   private:
    EasyPool* pool_;
    EasyHandle h_;
    bool discard_ = false;
  };

  // An idle handle (reset to defaults, share attached by the caller) or a fresh one.
  std::unique_ptr<Lease> Acquire();
  CURLSH* share() const { return share_.get(); }

 private:
  void Release(EasyHandle h);
  ShareHandle share_;
  size_t max_idle_;
  std::mutex mu_;  // guards idle_
  std::vector<EasyHandle> idle_;
};

}  // namespace modelfs::http
