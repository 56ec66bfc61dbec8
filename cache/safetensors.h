// The layout of a safetensors file, for prefetching along tensor boundaries: an 8-byte
// little-endian header length N, N bytes of JSON ({"name": {"dtype", "shape", "data_offsets":
// [begin, end]}, "__metadata__": {...}}), then the tensors' bytes, offsets relative to 8 + N.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace modelfs {

// Largest header read to learn the layout (the format allows 100 MB; real ones are well under 1 MB).
constexpr uint64_t kMaxSafetensorsHeader = 16ull << 20;

// Header length from the first 8 bytes; an error if absent, zero or too large for the file.
Result<uint64_t> SafetensorsHeaderLength(const char* first8, uint64_t file_size);

// Region ends of the file, sorted and unique, absolute offsets: the header's end (8 + N), then
// each tensor's end; the last is the file's size. Gaps between tensors fold into the next region.
// An error for JSON that is not a safetensors header (bad offsets, past the file's end...).
Result<std::vector<uint64_t>> SafetensorsRegionEnds(const std::string& header_json,
                                                    uint64_t header_len, uint64_t file_size);

}  // namespace modelfs
