#include "fetch/curl_pool.h"

#include <cstdio>
#include <cstdlib>

namespace modelfs::http {

void EnsureCurlGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      fprintf(stderr, "modelfs: curl_global_init failed\n");
      abort();
    }
  });
}

EasyHandle::EasyHandle() : h_(curl_easy_init()) {
  if (h_ == nullptr) {
    fprintf(stderr, "modelfs: curl_easy_init failed\n");
    abort();
  }
}

EasyHandle::~EasyHandle() {
  if (h_) curl_easy_cleanup(h_);
}

EasyHandle& EasyHandle::operator=(EasyHandle&& o) noexcept {
  if (this != &o) {
    if (h_) curl_easy_cleanup(h_);
    h_ = o.h_;
    o.h_ = nullptr;
  }
  return *this;
}

ShareHandle::ShareHandle() {
  EnsureCurlGlobalInit();
  sh_ = curl_share_init();
  if (sh_ == nullptr) {
    fprintf(stderr, "modelfs: curl_share_init failed\n");
    abort();
  }
  curl_share_setopt(sh_, CURLSHOPT_LOCKFUNC, &ShareHandle::Lock);
  curl_share_setopt(sh_, CURLSHOPT_UNLOCKFUNC, &ShareHandle::Unlock);
  curl_share_setopt(sh_, CURLSHOPT_USERDATA, this);
  curl_share_setopt(sh_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(sh_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

ShareHandle::~ShareHandle() { curl_share_cleanup(sh_); }

void ShareHandle::Lock(CURL*, curl_lock_data data, curl_lock_access, void* self) {
  static_cast<ShareHandle*>(self)->mu_[data].lock();
}

void ShareHandle::Unlock(CURL*, curl_lock_data data, void* self) {
  static_cast<ShareHandle*>(self)->mu_[data].unlock();
}

EasyPool::EasyPool(size_t max_idle) : max_idle_(max_idle) { EnsureCurlGlobalInit(); }

EasyPool::Lease::~Lease() {
  if (!discard_) pool_->Release(std::move(h_));
}

std::unique_ptr<EasyPool::Lease> EasyPool::Acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      EasyHandle h = std::move(idle_.back());
      idle_.pop_back();
      return std::make_unique<Lease>(this, std::move(h));
    }
  }
  return std::make_unique<Lease>(this, EasyHandle());
}

void EasyPool::Release(EasyHandle h) {
  // Detach from the share and drop per-request options now, outside the transfer path of the next
  // borrower; live connections stay in the handle's cache.
  curl_easy_reset(h.get());
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(h));
  // else: h is destroyed here, closing its connections.
}

}  // namespace modelfs::http
