// SpaceManager alone: no disk, no store. A fake Disk stands in for the cache filesystem (its free
// space, its pins, unlinking a blob's files) and fake Residents for the blobs the store uses, so
// the quota, the free-space floor, pins and eviction order are driven and observed directly.
#include "cache/space_manager.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace modelfs {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

// The cache filesystem: `free` bytes free (what statvfs would say), given back as the manager
// removes files or drops blocks (`on_drop` runs then too, with the manager's lock released).
class FakeDisk : public SpaceManager::Disk {
 public:
  bool FreeBytes(uint64_t* bytes) override {
    std::lock_guard<std::mutex> l(mu);
    *bytes = free;
    return true;
  }
  int64_t PinsStamp() override {
    std::lock_guard<std::mutex> l(mu);
    return pins_stamp;
  }
  std::set<std::string> PinnedKeys() override {
    std::lock_guard<std::mutex> l(mu);
    return pinned;
  }
  void RemoveFiles(const std::string& key) override {
    {
      std::lock_guard<std::mutex> l(mu);
      removed.push_back(key);
      free += sizes[key];
    }
    if (on_drop) on_drop(key);
  }
  void Pin(std::set<std::string> keys) {
    std::lock_guard<std::mutex> l(mu);
    pinned = std::move(keys);
    pins_stamp++;
  }
  std::vector<std::string> Removed() {
    std::lock_guard<std::mutex> l(mu);
    return removed;
  }

  std::mutex mu;
  uint64_t free = 0;
  int64_t pins_stamp = 0;
  std::set<std::string> pinned;
  std::map<std::string, uint64_t> sizes;  // what removing a blob gives back to `free`
  std::vector<std::string> removed;
  std::function<void(const std::string&)> on_drop;
};

// A blob the store uses: in use or not, and its blocks dropped through DropBlocks.
class FakeResident : public SpaceManager::Resident {
 public:
  FakeResident(FakeDisk* disk, std::string key) : disk_(disk), key_(std::move(key)) {}
  bool InUse() override { return in_use; }
  void DropBlocks() override {
    dropped++;
    disk_->RemoveFiles(key_);  // (counted as a removal, for the order of victims)
  }
  bool in_use = false;
  int dropped = 0;

 private:
  FakeDisk* disk_;
  std::string key_;
};

class SpaceManagerTest : public ::testing::Test {
 protected:
  std::unique_ptr<SpaceManager> New(uint64_t quota, uint64_t min_free) {
    return std::make_unique<SpaceManager>(SpaceManager::Limits{quota, min_free}, &disk_);
  }
  // A verified (or partial) blob of `bytes` left on disk by an earlier run, used at `t`.
  void AddOld(SpaceManager* m, const std::string& key, uint64_t bytes, bool verified, uint64_t t) {
    m->AddExisting(key, bytes, verified, 0, t);
    disk_.sizes[key] = bytes;
  }
  // A blob the store uses, with no block yet (in use: being written).
  std::shared_ptr<FakeResident> Use(SpaceManager* m, const std::string& key, bool in_use = true) {
    auto r = std::make_shared<FakeResident>(&disk_, key);
    r->in_use = in_use;
    m->Attach(key, r, 0, false);
    residents_.push_back(r);
    return r;
  }
  std::vector<std::shared_ptr<FakeResident>> residents_;
  FakeDisk disk_;
};

TEST_F(SpaceManagerTest, AdmitsWithinTheQuotaAndEvictsLeastRecentlyUsedVerifiedFilesFirst) {
  auto m = New(10 * kMiB, 0);
  AddOld(m.get(), "partial-old", 2 * kMiB, false, 1);
  AddOld(m.get(), "verified-new", 2 * kMiB, true, 3);
  AddOld(m.get(), "verified-old", 2 * kMiB, true, 2);
  m->StartClock(10);
  EXPECT_TRUE(m->Admit("x", 4 * kMiB));  // 10 MiB: fits exactly
  EXPECT_TRUE(disk_.Removed().empty());
  EXPECT_TRUE(m->Admit("x", 3 * kMiB));  // two victims: verified ones first, the older first
  EXPECT_EQ(disk_.Removed(), (std::vector<std::string>{"verified-old", "verified-new"}));
  EXPECT_FALSE(m->IsVerified("verified-old"));
  const auto t = m->totals();
  EXPECT_EQ(t.used, 9 * kMiB);
  EXPECT_EQ(t.evicted, 4 * kMiB);
  EXPECT_LE(t.peak, 10 * kMiB);

  // The blob the room is for is never its own victim.
  auto m2 = New(4 * kMiB, 0);
  AddOld(m2.get(), "only", 4 * kMiB, true, 1);
  EXPECT_FALSE(m2->Admit("only", 1 * kMiB));
  EXPECT_EQ(disk_.Removed().size(), 2u);
}

TEST_F(SpaceManagerTest, TheFreeSpaceFloorRefusesAdmissionWhenNothingCanGo) {
  auto m = New(0, 100 * kMiB);  // no quota, only the floor
  Use(m.get(), "a");
  Use(m.get(), "b");
  disk_.free = 110 * kMiB;
  EXPECT_TRUE(m->Admit("a", 6 * kMiB));   // 104 left after it
  // Admitted but not written yet: the filesystem does not count it, the manager does.
  EXPECT_FALSE(m->Admit("b", 6 * kMiB));  // 98 left after both: below the floor
  m->Commit("a", 6 * kMiB, /*written=*/true);
  disk_.free -= 6 * kMiB;  // the write landed
  EXPECT_FALSE(m->Admit("b", 6 * kMiB));
  EXPECT_TRUE(m->Admit("b", 4 * kMiB));  // exactly at the floor
  EXPECT_TRUE(disk_.Removed().empty());
  // Another process fills the disk: nothing more is admitted.
  disk_.free = 50 * kMiB;
  EXPECT_FALSE(m->Admit("c", 4096));
}

TEST_F(SpaceManagerTest, TheFreeSpaceFloorEvictsUntilTheWriteLeavesItFree) {
  auto m = New(0, 100 * kMiB);
  AddOld(m.get(), "old1", 4 * kMiB, true, 1);
  AddOld(m.get(), "old2", 4 * kMiB, true, 2);
  AddOld(m.get(), "old3", 4 * kMiB, true, 3);
  m->StartClock(10);
  disk_.free = 101 * kMiB;
  EXPECT_TRUE(m->Admit("new", 6 * kMiB));  // needs 5 MiB more: two victims, the oldest first
  EXPECT_EQ(disk_.Removed(), (std::vector<std::string>{"old1", "old2"}));
  EXPECT_EQ(disk_.free, 109 * kMiB);  // 103 once "new" is written: above the floor
  EXPECT_EQ(m->totals().evicted, 8 * kMiB);
  // A write the floor cannot take even with every other blob gone is refused, nothing evicted.
  EXPECT_FALSE(m->Admit("huge", 20 * kMiB));
  EXPECT_EQ(disk_.Removed().size(), 2u);
}

TEST_F(SpaceManagerTest, PinnedAndInUseBlobsAreNeverEvicted) {
  auto m = New(8 * kMiB, 0);
  AddOld(m.get(), "pinned", 4 * kMiB, true, 1);
  disk_.Pin({"pinned"});
  auto open = std::make_shared<FakeResident>(&disk_, "open");
  ASSERT_TRUE(m->ChargeFiles("open", 0, false));
  m->Attach("open", open, 4 * kMiB, true);
  open->in_use = true;
  EXPECT_FALSE(m->Admit("x", 1 * kMiB));  // full, and neither may go
  EXPECT_TRUE(disk_.Removed().empty());
  EXPECT_EQ(open->dropped, 0);

  open->in_use = false;  // closed: its blocks go, its files stay
  EXPECT_TRUE(m->Admit("x", 1 * kMiB));
  EXPECT_EQ(open->dropped, 1);
  EXPECT_TRUE(m->IsVerified("pinned"));

  disk_.Pin({});  // unpinned: it goes at the next eviction
  EXPECT_TRUE(m->Admit("x", 4 * kMiB));
  EXPECT_FALSE(m->IsVerified("pinned"));
  EXPECT_EQ(disk_.Removed().back(), "pinned");
}

TEST_F(SpaceManagerTest, ABlobTheStoreIsOpeningIsNotEvictedBeforeItIsAttached) {
  auto m = New(4 * kMiB, 0);
  ASSERT_TRUE(m->ChargeFiles("opening", 4 * kMiB, /*new_dir=*/true));  // files and a directory
  EXPECT_EQ(m->totals().overhead, FilesCharge(4 * kMiB) + kDiskPage);
  EXPECT_FALSE(m->Admit("x", 4 * kMiB));  // its files' charge cannot be taken back
  EXPECT_TRUE(disk_.Removed().empty());
  m->RefundFiles("opening");  // never created (the directory's page stays: it may exist now)
  EXPECT_EQ(m->totals().overhead, kDiskPage);
}

TEST_F(SpaceManagerTest, VictimsAreDroppedOutsideTheLockAndTheQuotaHoldsMeanwhile) {
  auto m = New(10 * kMiB, 0);
  AddOld(m.get(), "old", 6 * kMiB, true, 1);
  Use(m.get(), "a");
  Use(m.get(), "b");
  ASSERT_TRUE(m->Admit("a", 2 * kMiB));  // 8 MiB used, 2 free
  bool lock_free = false, small_admitted = false, big_admitted_early = true;
  std::promise<bool> big;
  auto big_done = big.get_future();
  std::thread big_writer;
  disk_.on_drop = [&](const std::string&) {
    // While "old" is dropped the manager answers (its lock is not held): a write that fits in
    // the room not needed by the evicting caller is admitted at once...
    std::promise<bool> small;
    auto f = small.get_future();
    std::thread t([&] { small.set_value(m->Admit("b", 1 * kMiB)); });
    lock_free = f.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    t.join();
    small_admitted = lock_free && f.get();
    // ...but one that needs the room being freed waits: it is held for the caller that evicted.
    big_writer = std::thread([&] { big.set_value(m->Admit("b", 2 * kMiB)); });
    big_admitted_early = big_done.wait_for(std::chrono::milliseconds(200)) == std::future_status::ready;
  };
  EXPECT_TRUE(m->Admit("a", 5 * kMiB));  // evicts "old"
  big_writer.join();
  EXPECT_TRUE(lock_free) << "a victim was dropped with the manager's lock held";
  EXPECT_TRUE(small_admitted);
  EXPECT_FALSE(big_admitted_early) << "another writer took the room held for the evicting one";
  EXPECT_TRUE(big_done.get());  // judged again after the drop: 2 + 5 + 1 + 2 = 10 MiB
  EXPECT_EQ(m->totals().used, 10 * kMiB);
  EXPECT_LE(m->totals().peak, 10 * kMiB);
}

TEST_F(SpaceManagerTest, AFailedWriteGivesItsChargeBackAndDroppedBlocksAreReleased) {
  auto m = New(10 * kMiB, 0);
  Use(m.get(), "a");
  Use(m.get(), "b");
  ASSERT_TRUE(m->Admit("a", 4 * kMiB));
  m->Commit("a", 1 * kMiB, /*written=*/false);
  m->Commit("a", 3 * kMiB, /*written=*/true);
  EXPECT_EQ(m->totals().used, 3 * kMiB);
  m->MarkVerified("a");
  EXPECT_TRUE(m->IsVerified("a"));
  m->Release("a", 1 * kMiB, /*all=*/false);  // a host's chunks after a hash failure
  EXPECT_FALSE(m->IsVerified("a"));
  EXPECT_EQ(m->totals().used, 2 * kMiB);
  m->Release("a", 0, /*all=*/true);
  EXPECT_EQ(m->totals().used, 0u);
  ASSERT_TRUE(m->Admit("b", 2 * kMiB));
  EXPECT_EQ(m->FreeRoom(), 6 * kMiB);  // a write admitted and not done counts twice
  EXPECT_TRUE(m->ChargeOther(8 * kMiB));
  EXPECT_FALSE(m->ChargeOther(1 * kMiB));  // nothing can go: b is in use
  EXPECT_EQ(m->totals().overhead, 8 * kMiB);
}

}  // namespace
}  // namespace modelfs
