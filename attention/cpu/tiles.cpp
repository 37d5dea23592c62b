#include <algorithm>

#include "attention/cpu/params.h"

namespace longhaul::cpu {

std::vector<RowRange> tile_ranges(const int64_t* pos, int64_t rows, int64_t block) {
  std::vector<RowRange> tiles;
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t r1 = std::min(rows, r0 + block);
    RowRange t{pos[r0], pos[r0]};
    for (int64_t r = r0 + 1; r < r1; ++r) {
      t.pos_min = std::min(t.pos_min, pos[r]);
      t.pos_max = std::max(t.pos_max, pos[r]);
    }
    tiles.push_back(t);
  }
  return tiles;
}

BackwardSplit split_backward(const Tiling& tiles, const MaskSpec& mask, int64_t tq, int64_t block_q,
                             int64_t max_workers, int64_t max_slab_rows) {
  // Per key tile: the query rows of its non-empty tile pairs (its share of the work) and the
  // span of query rows they lie in.
  const int64_t nk = tiles.nk;
  std::vector<int64_t> work(nk, 0), lo(nk, tq), hi(nk, 0);
  int64_t total = 0;
  for (int64_t kt = 0; kt < nk; ++kt) {
    for (int64_t qt = 0; qt < tiles.nq; ++qt) {
      if (mask.classify(tiles.q[qt], tiles.k[kt]) == BlockClass::Empty) continue;
      const int64_t r0 = qt * block_q, r1 = std::min(tq, r0 + block_q);
      work[kt] += r1 - r0;
      lo[kt] = std::min(lo[kt], r0);
      hi[kt] = std::max(hi[kt], r1);
    }
    total += work[kt];
  }
  for (int64_t workers = std::max<int64_t>(1, std::min(max_workers, nk)); workers >= 1; --workers) {
    BackwardSplit split;
    split.tile_begin.assign(1, 0);
    if (workers == 1) {
      split.tile_begin.push_back(nk);
      split.row_lo = {0};
      split.row_hi = {tq};
      split.slab_row = {0};
      return split;
    }
    int64_t acc = 0;
    for (int64_t kt = 0; kt < nk; ++kt) {  // cut where the running share passes w/workers
      acc += work[kt];
      const int64_t w = static_cast<int64_t>(split.tile_begin.size());
      if (w < workers && acc * workers >= w * total && kt + 1 < nk) split.tile_begin.push_back(kt + 1);
    }
    while (static_cast<int64_t>(split.tile_begin.size()) <= workers) split.tile_begin.push_back(nk);
    for (int64_t w = 0; w < workers; ++w) {
      int64_t r_lo = tq, r_hi = 0;
      for (int64_t kt = split.tile_begin[w]; kt < split.tile_begin[w + 1]; ++kt)
        if (work[kt] > 0) r_lo = std::min(r_lo, lo[kt]), r_hi = std::max(r_hi, hi[kt]);
      if (r_hi <= r_lo) r_lo = r_hi = 0;  // a worker whose tiles see no query
      split.row_lo.push_back(r_lo);
      split.row_hi.push_back(r_hi);
      split.slab_row.push_back(split.slab_rows);
      split.slab_rows += r_hi - r_lo;
    }
    if (split.slab_rows <= max_slab_rows) return split;
  }
  return {};  // unreachable: one worker always fits
}

}  // namespace longhaul::cpu
