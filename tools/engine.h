// Engine: the fetch -> cache stack that every command builds the same way (mount, and the commands
// that fill or export the cache without mounting). Owns the objects; members are destroyed in
// reverse order, so the store goes before the sources it reads from.
#pragma once

#include <memory>

#include "cache/disk_blob_store.h"
#include "cache/meta_store.h"
#include "cache/offline.h"
#include "common/status.h"
#include "fetch/fetch_options.h"
#include "fetch/http_client.h"
#include "fetch/http_hub_api.h"
#include "fetch/http_range_source.h"
#include "fetch/mirror_set.h"

namespace modelfs::cli {

struct Engine {
  // Every configured endpoint (fetch.endpoints, else fetch.endpoint), each with its own
  // HttpClient, HttpHubApi and HttpRangeSource; the HubApi and RangeSource the layers above use.
  std::unique_ptr<MirrorSet> mirrors;
  std::shared_ptr<http::HttpClient> client;  // the first mirror's connection pool and counters
  // Used instead of `mirrors` with CacheOptions::offline (then mirrors and client are null).
  std::unique_ptr<OfflineHubApi> offline_hub;
  std::unique_ptr<OfflineRangeSource> offline_source;
  std::unique_ptr<PersistentHubApi> hub;     // what callers use: remembers answers for offline
  std::unique_ptr<DiskBlobStore> store;      // what callers read through
};

// Builds the stack. Threads and sockets start here, so a daemon calls this after it forks.
Result<std::unique_ptr<Engine>> OpenEngine(const FetchOptions& fetch, const CacheOptions& cache);

}  // namespace modelfs::cli
