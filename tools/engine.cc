#include "tools/engine.h"

namespace modelfs::cli {

Result<std::unique_ptr<Engine>> OpenEngine(const FetchOptions& fetch, const CacheOptions& cache) {
  auto e = std::make_unique<Engine>();
  HubApi* hub_inner;
  RangeSource* source;
  if (cache.offline) {
    // --offline / HF_HUB_OFFLINE: no mirrors, no HTTP client, no socket; stored answers only.
    e->offline_hub = std::make_unique<OfflineHubApi>();
    e->offline_source = std::make_unique<OfflineRangeSource>();
    hub_inner = e->offline_hub.get();
    source = e->offline_source.get();
  } else {
    e->mirrors = std::make_unique<MirrorSet>(fetch);
    e->client = e->mirrors->client(0);
    hub_inner = e->mirrors.get();
    source = e->mirrors.get();
  }
  e->hub = std::make_unique<PersistentHubApi>(hub_inner, cache.dir, cache.revision_ttl_s);
  auto store = DiskBlobStore::Open(cache, source);
  if (!store.ok()) return store.status();
  e->store = std::move(store).value();
  // The quota covers the stored metadata too (docs/ARCHITECTURE.md, "Quota and eviction").
  e->hub->SetSpaceCharge([s = e->store.get()](uint64_t bytes) { return s->ChargeOther(bytes); });
  return e;
}

}  // namespace modelfs::cli
