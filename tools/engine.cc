#include "tools/engine.h"

namespace modelfs::cli {

Result<std::unique_ptr<Engine>> OpenEngine(const FetchOptions& fetch, const CacheOptions& cache) {
  auto e = std::make_unique<Engine>();
  e->client = std::make_shared<http::HttpClient>(fetch);
  e->http_hub = std::make_unique<HttpHubApi>(e->client);
  e->source = std::make_unique<HttpRangeSource>(e->client);
  e->hub = std::make_unique<PersistentHubApi>(e->http_hub.get(), cache.dir);
  auto store = DiskBlobStore::Open(cache, e->source.get());
  if (!store.ok()) return store.status();
  e->store = std::move(store).value();
  return e;
}

}  // namespace modelfs::cli
