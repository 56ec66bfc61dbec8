#include "cache/safetensors.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

namespace modelfs {

Result<uint64_t> SafetensorsHeaderLength(const char* first8, uint64_t file_size) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | static_cast<unsigned char>(first8[i]);
  if (n == 0 || n > kMaxSafetensorsHeader || file_size < 8 || n > file_size - 8) {
    return Status::InvalidArgument("not a safetensors header length: " + std::to_string(n));
  }
  return n;
}

Result<std::vector<uint64_t>> SafetensorsRegionEnds(const std::string& header_json,
                                                    uint64_t header_len, uint64_t file_size) {
  // A hostile header is just a file: its size is capped (kMaxSafetensorsHeader), nlohmann's parser
  // keeps its own stack (deep nesting cannot overflow ours), and any error means "no layout".
  nlohmann::json j = nlohmann::json::parse(header_json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::InvalidArgument("safetensors header is not a JSON object");
  const uint64_t base = 8 + header_len;
  std::vector<uint64_t> ends = {base};
  for (const auto& [name, t] : j.items()) {
    if (name == "__metadata__") continue;
    if (!t.is_object() || !t.contains("data_offsets")) return Status::InvalidArgument("tensor " + name + " has no data_offsets");
    const auto& off = t["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return Status::InvalidArgument("tensor " + name + ": bad data_offsets");
    }
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > file_size - base) return Status::InvalidArgument("tensor " + name + ": offsets past the file");
    ends.push_back(base + e);
  }
  ends.push_back(file_size);
  std::sort(ends.begin(), ends.end());
  ends.erase(std::unique(ends.begin(), ends.end()), ends.end());
  return ends;
}

}  // namespace modelfs
