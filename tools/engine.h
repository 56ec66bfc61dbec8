// Engine: the fetch -> cache stack that every command builds the same way (mount, and the commands
// that fill or export the cache without mounting). Owns the objects; members are destroyed in
// reverse order, so the store goes before the sources it reads from.
#pragma once

#include <memory>

#include "cache/disk_blob_store.h"
#include "cache/meta_store.h"
#include "common/status.h"
#include "fetch/fetch_options.h"
#include "fetch/http_client.h"
#include "fetch/http_hub_api.h"
#include "fetch/http_range_source.h"

namespace modelfs::cli {

struct Engine {
  std::shared_ptr<http::HttpClient> client;  // one connection pool for API calls and downloads
  std::unique_ptr<HttpHubApi> http_hub;
  std::unique_ptr<HttpRangeSource> source;
  std::unique_ptr<PersistentHubApi> hub;     // what callers use: remembers answers for offline
  std::unique_ptr<DiskBlobStore> store;      // what callers read through
};

// Builds the stack. Threads and sockets start here, so a daemon calls this after it forks.
Result<std::unique_ptr<Engine>> OpenEngine(const FetchOptions& fetch, const CacheOptions& cache);

}  // namespace modelfs::cli
