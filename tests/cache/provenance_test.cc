// Provenance alone: who served which blocks, whom a failed hash blames, who is distrusted after,
// and what a drop takes away. No store, no threads, no source.
#include "cache/provenance.h"

#include <gtest/gtest.h>

namespace modelfs {
namespace {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

TEST(ProvenanceTest, TheOnlyHostThatServedAFileThatFailedIsProvenBadAndEverythingGoes) {
  Provenance p;
  p.Saw("a");
  p.Stored(0, 3, "a");
  p.Stored(4, 7, "a");
  HostBlame across;
  std::string sources;
  EXPECT_TRUE(p.Blame(8, &across, &sources).empty());  // empty: drop every block
  EXPECT_EQ(sources, "a");
  EXPECT_EQ(across["a"], 1000u);
  EXPECT_TRUE(p.AnyBlamed());
  // With one mirror it is blamed alike with every host that answers: not distrusted.
  EXPECT_FALSE(p.Distrusted("a"));
  p.Saw("b");  // a second mirror answers: the proven liar is now distrusted, the other not
  EXPECT_TRUE(p.Distrusted("a"));
  EXPECT_FALSE(p.Distrusted("b"));
}

TEST(ProvenanceTest, AmongSeveralHostsTheMinorityIsBlamedAndOnlyItsRangesGo) {
  Provenance p;
  for (auto h : {"a", "b"}) p.Saw(h);
  p.Stored(0, 3, "a");
  p.Stored(4, 7, "a");
  p.Stored(8, 11, "b");
  p.Stored(12, 12, "a");
  HostBlame across;
  std::string sources;
  EXPECT_EQ(p.Blame(13, &across, &sources), (std::set<std::string>{"b"}));
  EXPECT_EQ(sources, "a,b");
  EXPECT_EQ(across["b"], 1u);
  EXPECT_TRUE(p.Distrusted("b"));
  EXPECT_FALSE(p.Distrusted("a"));

  const Provenance::Dropped d = p.Drop({"b"});
  EXPECT_EQ(d.hosts, (std::set<std::string>{"b"}));
  EXPECT_EQ(d.ranges, (Ranges{{8, 11}}));
  // Refetched from a: a served every block now, so the next failure proves it bad.
  p.Stored(8, 11, "a");
  sources.clear();
  EXPECT_TRUE(p.Blame(13, &across, &sources).empty());
  EXPECT_EQ(sources, "a");
  EXPECT_EQ(across["a"], 1000u);
}

TEST(ProvenanceTest, TheHostBlamedLeastForThisFileIsBlamedNextThenTheOneBlamedAcrossFiles) {
  Provenance p;
  for (auto h : {"a", "b", "c"}) p.Saw(h);
  p.Stored(0, 5, "a");
  p.Stored(6, 7, "b");
  p.Stored(8, 9, "c");
  HostBlame across{{"c", 1000}};  // c lied about another file in this run
  std::string sources;
  EXPECT_EQ(p.Blame(10, &across, &sources), (std::set<std::string>{"c"}));  // before b's minority
  sources.clear();
  EXPECT_EQ(p.Blame(10, &across, &sources), (std::set<std::string>{"b"}));  // c blamed once here
  sources.clear();
  EXPECT_EQ(p.Blame(10, &across, &sources), (std::set<std::string>{"a"}));
}

TEST(ProvenanceTest, BlocksOfUnknownOriginBlameNobodyAndDropEverything) {
  Provenance p;
  p.Saw("a");
  p.Stored(4, 7, "a");  // blocks 0-3 came from an earlier run
  HostBlame across;
  std::string sources;
  EXPECT_TRUE(p.Blame(8, &across, &sources).empty());
  EXPECT_EQ(sources, "a");
  EXPECT_TRUE(across.empty());
  EXPECT_FALSE(p.AnyBlamed());
  const Provenance::Dropped d = p.Drop({});
  EXPECT_EQ(d.hosts, (std::set<std::string>{"a"}));
  EXPECT_TRUE(d.ranges.empty());
  sources.clear();
  p.Blame(8, &across, &sources);
  EXPECT_EQ(sources, "") << "records survived a drop of everything";
}

TEST(ProvenanceTest, ARangeStoredAgainReplacesTheRecordsItOverlaps) {
  Provenance p;
  p.Stored(0, 3, "a");
  p.Stored(4, 7, "a");
  p.Stored(2, 5, "b");  // (overlapping records go whole: their blocks were dropped before)
  p.Stored(0, 1, "b");
  p.Stored(6, 7, "b");
  HostBlame across;
  std::string sources;
  p.Saw("a");
  p.Saw("b");
  EXPECT_TRUE(p.Blame(8, &across, &sources).empty());  // b alone covers them: proven
  EXPECT_EQ(sources, "b");
  EXPECT_EQ(across["b"], 1000u);
  EXPECT_TRUE(p.Distrusted("b"));
}

}  // namespace
}  // namespace modelfs
