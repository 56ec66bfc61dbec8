#include "cache/safetensors.h"

#include <gtest/gtest.h>

namespace modelfs {
namespace {

std::string Le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; i++) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

TEST(SafetensorsTest, RegionEndsAreTheHeaderThenEachTensorSorted) {
  std::string h = R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[4],"data_offsets":[100,116]},)"
                  R"("a":{"dtype":"F32","shape":[25],"data_offsets":[0,100]}})";
  const uint64_t size = 8 + h.size() + 116;
  ASSERT_EQ(SafetensorsHeaderLength(Le64(h.size()).data(), size).value(), h.size());
  auto r = SafetensorsRegionEnds(h, h.size(), size);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const uint64_t base = 8 + h.size();
  EXPECT_EQ(r.value(), (std::vector<uint64_t>{base, base + 100, base + 116}));
}

TEST(SafetensorsTest, BrokenHeadersAreErrorsNotCrashes) {
  EXPECT_FALSE(SafetensorsHeaderLength(Le64(0).data(), 100).ok());
  EXPECT_FALSE(SafetensorsHeaderLength(Le64(93).data(), 100).ok());  // past the file
  EXPECT_FALSE(SafetensorsHeaderLength(Le64(1ull << 40).data(), 1ull << 41).ok());  // too large
  EXPECT_FALSE(SafetensorsRegionEnds("not json", 8, 100).ok());
  EXPECT_FALSE(SafetensorsRegionEnds("[1,2]", 5, 100).ok());
  EXPECT_FALSE(SafetensorsRegionEnds(R"({"a":{"data_offsets":[10,5]}})", 30, 100).ok());
  EXPECT_FALSE(SafetensorsRegionEnds(R"({"a":{"data_offsets":[0,1000]}})", 30, 100).ok());
  EXPECT_FALSE(SafetensorsRegionEnds(R"({"a":{"data_offsets":[-1,5]}})", 30, 100).ok());
  EXPECT_FALSE(SafetensorsRegionEnds(R"({"a":{"dtype":"F32"}})", 30, 100).ok());
  std::string deep(100000, '[');
  EXPECT_FALSE(SafetensorsRegionEnds(deep, deep.size(), deep.size() + 8).ok());
}

}  // namespace
}  // namespace modelfs
