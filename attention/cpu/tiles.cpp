#include <algorithm>

#include "attention/cpu/params.h"

namespace longhaul::cpu {

std::vector<RowRange> tile_ranges(const int64_t* pos, const int64_t* doc, int64_t rows, int64_t block) {
  std::vector<RowRange> tiles;
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t r1 = std::min(rows, r0 + block);
    RowRange t{pos[r0], pos[r0], doc[r0], doc[r0]};
    for (int64_t r = r0 + 1; r < r1; ++r) {
      t.pos_min = std::min(t.pos_min, pos[r]);
      t.pos_max = std::max(t.pos_max, pos[r]);
      t.doc_min = std::min(t.doc_min, doc[r]);
      t.doc_max = std::max(t.doc_max, doc[r]);
    }
    tiles.push_back(t);
  }
  return tiles;
}

}  // namespace longhaul::cpu
