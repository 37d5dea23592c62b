// Helpers shared by the data/ unit tests.
#pragma once

#include <cstdint>
#include <vector>

namespace longhaul::data::testing {

// Document offsets (0, l0, l0+l1, …) of a list of document lengths, as a token store holds them.
inline std::vector<uint64_t> offsets_of(const std::vector<int64_t>& lengths) {
  std::vector<uint64_t> o{0};
  for (int64_t l : lengths) o.push_back(o.back() + uint64_t(l));
  return o;
}

}  // namespace longhaul::data::testing
