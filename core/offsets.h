// Exclusive prefix sums of per-rank (or per-piece) counts: offsets [0, c0, c0+c1, ..., total].
#pragma once

#include <cstdint>
#include <numeric>
#include <vector>

namespace longhaul {

inline std::vector<int64_t> offsets_of(const std::vector<int64_t>& counts) {
  std::vector<int64_t> off(counts.size() + 1, 0);
  std::partial_sum(counts.begin(), counts.end(), off.begin() + 1);
  return off;
}

}  // namespace longhaul
