#include "attention/simulated.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "attention/cpu/params.h"
#include "core/dtypes.h"
#include "core/virtual_clock.h"

namespace longhaul::simulated {
namespace {

struct Run {
  int64_t begin, end;  // positions [begin, end)
};

// Maximal runs of consecutive increasing positions.
std::vector<Run> runs_of(const at::Tensor& pos) {
  std::vector<Run> runs;
  const int64_t n = pos.numel();
  const int64_t* p = pos.data_ptr<int64_t>();
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1;
    while (j < n && p[j] == p[j - 1] + 1) ++j;
    runs.push_back({p[i], p[j - 1] + 1});
    i = j;
  }
  return runs;
}

// Above this many run pairs, rows are counted one by one against the sorted keys.
constexpr size_t kMaxRunPairs = 1 << 14;

int64_t area_by_rows(const at::Tensor& q_pos, const at::Tensor& k_pos, const Mask& mask) {
  std::vector<int64_t> keys(k_pos.data_ptr<int64_t>(), k_pos.data_ptr<int64_t>() + k_pos.numel());
  std::sort(keys.begin(), keys.end());
  const RowKeys rk = mask.spec().keys_of_rows(q_pos.data_ptr<int64_t>(), q_pos.numel());
  int64_t area = 0;
  for (int64_t r = 0; r < q_pos.numel(); ++r)
    for (int64_t i = rk.ptr[r]; i < rk.ptr[r + 1]; ++i) {
      const auto lo = std::lower_bound(keys.begin(), keys.end(), rk.iv[i].lo);
      const auto hi = std::upper_bound(keys.begin(), keys.end(), rk.iv[i].hi);
      if (hi > lo) area += hi - lo;
    }
  return area;
}

double flops(double area, const at::Tensor& q) { return 4.0 * area * double(q.size(1)) * double(q.size(2)); }

// The area the rank's kernel model pays for this block: its tiles with a visible pair, and the
// start-up and finish of each working tile (query tiles forward, key tiles backward) as that many
// tiles' area, in proportion to the tile's rows.
double paid_area(const BlockView& view, const Mask& mask, bool backward) {
  const auto* clock = virtual_clock::current();
  if (!clock) return double(block_area(view, mask));
  const auto& k = clock->kernel;
  const double setup = backward ? k.backward_setup_tiles : k.forward_setup_tiles;
  // The tiles and the working rows in one pass over the block (a short tile, a run's last, pays
  // its share, as if packed with the next run's rows).
  const TiledWork w = tiled_work(view, mask, k.tile_q, k.tile_k, k.tiles_of_local_rows, k.partial_slice_rows,
                                 setup > 0 ? std::optional<bool>(backward) : std::nullopt);
  return double(w.area) + setup * double(backward ? k.tile_q : k.tile_k) * double(w.working_rows);
}

void charge(double flops, bool backward) {
  auto* clock = virtual_clock::current();
  if (!clock) return;
  const double rate = backward ? clock->kernel.backward_flops_per_s : clock->kernel.forward_flops_per_s;
  virtual_clock::charge_compute(clock->kernel.per_call_s + (flops > 0 ? flops / rate : 0.0));
}

}  // namespace

int64_t block_area(const BlockView& view, const Mask& mask) {
  const at::Tensor q_pos = view.q_pos.contiguous(), k_pos = view.k_pos.contiguous();
  const auto qr = runs_of(q_pos), kr = runs_of(k_pos);
  if (qr.size() * kr.size() > kMaxRunPairs) return area_by_rows(q_pos, k_pos, mask);
  int64_t area = 0;
  for (const Run& a : qr)
    for (const Run& b : kr) area += mask.area(a.begin, a.end, b.begin, b.end);
  return area;
}

namespace {

// The tiled area of [qa, qe) × [ka, ke), tiles counted from qa and ka: a part that is wholly
// visible or wholly masked is settled at once, a partial part split in two along its longer side
// at a tile boundary until it is one tile (which then pays whole). O(tiles on the mask's edges).
int64_t tiled_area_of(const Mask& mask, int64_t qa, int64_t qe, int64_t ka, int64_t ke, int64_t tq, int64_t tk) {
  const BlockClass c = mask.classify(RowRange{qa, qe - 1}, RowRange{ka, ke - 1});
  if (c == BlockClass::Empty) return 0;
  const int64_t nq = (qe - qa + tq - 1) / tq, nk = (ke - ka + tk - 1) / tk;
  if (c == BlockClass::Full || (nq == 1 && nk == 1)) return (qe - qa) * (ke - ka);
  if (nq >= nk) {
    const int64_t mid = qa + (nq / 2) * tq;
    return tiled_area_of(mask, qa, mid, ka, ke, tq, tk) + tiled_area_of(mask, mid, qe, ka, ke, tq, tk);
  }
  const int64_t mid = ka + (nk / 2) * tk;
  return tiled_area_of(mask, qa, qe, ka, mid, tq, tk) + tiled_area_of(mask, qa, qe, mid, ke, tq, tk);
}

// Runs with the local row each starts at, for tiles of consecutive local rows that may span runs.
class LocalRuns {
 public:
  explicit LocalRuns(std::vector<Run> runs) : runs_(std::move(runs)) {
    int64_t row = 0;
    for (const Run& r : runs_) start_.push_back(row), row += r.end - r.begin;
    start_.push_back(row);
  }
  // The positions of local rows [a, e), in row order.
  void positions(int64_t a, int64_t e, std::vector<int64_t>& out) const {
    out.clear();
    pieces(a, e, [&](int64_t pa, int64_t pe) {
      for (int64_t p = pa; p < pe; ++p) out.push_back(p);
    });
  }
  // Calls f(first position, end position) for each run's part within local rows [a, e).
  template <typename F>
  void pieces(int64_t a, int64_t e, F&& f) const {
    size_t i = std::upper_bound(start_.begin(), start_.end() - 1, a) - start_.begin() - 1;
    for (; i < runs_.size() && start_[i] < e; ++i)
      f(runs_[i].begin + std::max(a, start_[i]) - start_[i], runs_[i].begin + std::min(e, start_[i + 1]) - start_[i]);
  }

 private:
  std::vector<Run> runs_;
  std::vector<int64_t> start_;
};

// The class of local rows [qa, qe) × [ka, ke): Empty or Full when every run piece pair is.
BlockClass classify_local(const LocalRuns& q, const LocalRuns& k, const Mask& mask, int64_t qa, int64_t qe, int64_t ka,
                          int64_t ke) {
  bool empty = false, full = false;
  q.pieces(qa, qe, [&](int64_t pa, int64_t pe) {
    k.pieces(ka, ke, [&](int64_t ka2, int64_t ke2) {
      if (empty && full) return;
      const BlockClass c = mask.classify(RowRange{pa, pe - 1}, RowRange{ka2, ke2 - 1});
      empty |= c != BlockClass::Full;
      full |= c != BlockClass::Empty;
    });
  });
  return empty && full ? BlockClass::Partial : full ? BlockClass::Full : BlockClass::Empty;
}

// The area the CPU kernel works in one partial tile, local rows [qa, qe) × [ka, ke): the pieces
// its own cutting gives (cpu::partial_pieces: slices of `sub` query rows, each trimmed to the
// rows that see the tile's keys and to the keys they see).
int64_t trimmed_tile_area(const LocalRuns& q, const LocalRuns& k, const Mask& mask, int64_t qa, int64_t qe, int64_t ka,
                          int64_t ke, int64_t sub) {
  std::vector<int64_t> qp, kp;
  q.positions(qa, qe, qp);
  k.positions(ka, ke, kp);
  const auto [kmin, kmax] = std::minmax_element(kp.begin(), kp.end());
  const RowKeys q_keys = mask.spec().keys_of_rows(qp.data(), int64_t(qp.size()));
  std::vector<cpu::TilePiece> pieces;
  cpu::partial_pieces(mask.spec(), q_keys, qp.data(), 0, int64_t(qp.size()), RowRange{*kmin, *kmax}, kp.data(),
                      int64_t(kp.size()), sub, pieces);
  int64_t area = 0;
  for (const cpu::TilePiece& piece : pieces) area += piece.nr * piece.nc;
  return area;
}

// tiled_area_of in local rows: tiles of tq × tk consecutive local rows counted from row 0, as the
// CPU kernel cuts a block, whatever positions the rows hold; a partial tile pays whole, or its
// trimmed slices of `sub` rows (sub > 0).
int64_t local_tiled_area_of(const LocalRuns& q, const LocalRuns& k, const Mask& mask, int64_t qa, int64_t qe, int64_t ka,
                            int64_t ke, int64_t tq, int64_t tk, int64_t sub) {
  const BlockClass c = classify_local(q, k, mask, qa, qe, ka, ke);
  if (c == BlockClass::Empty) return 0;
  const int64_t nq = (qe - 1) / tq - qa / tq + 1, nk = (ke - 1) / tk - ka / tk + 1;
  if (c == BlockClass::Full) return (qe - qa) * (ke - ka);
  if (nq == 1 && nk == 1) return sub > 0 ? trimmed_tile_area(q, k, mask, qa, qe, ka, ke, sub) : (qe - qa) * (ke - ka);
  if (nq >= nk) {
    const int64_t mid = (qa / tq + nq / 2) * tq;
    return local_tiled_area_of(q, k, mask, qa, mid, ka, ke, tq, tk, sub) +
           local_tiled_area_of(q, k, mask, mid, qe, ka, ke, tq, tk, sub);
  }
  const int64_t mid = (ka / tk + nk / 2) * tk;
  return local_tiled_area_of(q, k, mask, qa, qe, ka, mid, tq, tk, sub) +
         local_tiled_area_of(q, k, mask, qa, qe, mid, ke, tq, tk, sub);
}

// A stretch of rows (a run of consecutive positions, or a tile of scattered rows) and the
// positions [lo, hi] it spans.
struct Segment {
  int64_t lo, hi;
  int64_t begin, end;  // runs: the positions [begin, end); tiles: rows = end − begin
  int64_t first_tile;  // the index of its first tile among its side's tiles
};

// The key segments, sorted by lo with the running maximum of hi (the MaskSpec trick): the ones
// whose span meets [a, b] are found by a binary search and a scan while lo <= b.
class SegmentIndex {
 public:
  explicit SegmentIndex(std::vector<Segment> segs) : segs_(std::move(segs)) {
    std::sort(segs_.begin(), segs_.end(), [](const Segment& x, const Segment& y) { return x.lo < y.lo; });
    hi_max_.reserve(segs_.size());
    for (const Segment& g : segs_) hi_max_.push_back(std::max(hi_max_.empty() ? g.hi : hi_max_.back(), g.hi));
  }
  // Calls f(segment) once for each segment meeting one of `want` (sorted, disjoint intervals).
  template <typename F>
  void for_meeting(const std::vector<PosInterval>& want, std::vector<size_t>& seen, F&& f) const {
    seen.clear();
    for (const PosInterval& w : want) {
      size_t i = std::lower_bound(hi_max_.begin(), hi_max_.end(), w.lo) - hi_max_.begin();
      for (; i < segs_.size() && segs_[i].lo <= w.hi; ++i)
        if (segs_[i].hi >= w.lo) seen.push_back(i);
    }
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (size_t i : seen) f(segs_[i]);
  }

 private:
  std::vector<Segment> segs_;
  std::vector<int64_t> hi_max_;
};

// A block cut as a tiled GPU kernel cuts it (tiles restart at each run of consecutive positions;
// scattered rows in tiles of consecutive local rows), and the segment pairs worth trying.
struct TiledBlock {
  std::vector<Segment> q, k;
  int64_t q_tiles = 0, k_tiles = 0;
  bool scattered = false;  // segments are tiles of local rows, taken as their positions' range
  bool all_pairs = false;  // few segments: every pair is tried; else only those that can meet

  TiledBlock(const std::vector<Run>& qr, const std::vector<Run>& kr, const at::Tensor& q_pos, const at::Tensor& k_pos,
             int64_t tile_q, int64_t tile_k) {
    all_pairs = qr.size() * kr.size() <= kMaxRunPairs;
    const int64_t rows = q_pos.numel() + k_pos.numel(), run_count = int64_t(qr.size() + kr.size());
    // Many runs shorter than a tile on average (striped): tiles of scattered rows instead.
    scattered = !all_pairs && rows < run_count * std::min(tile_q, tile_k);
    q_tiles = scattered ? tiles(q_pos, tile_q, q) : runs(qr, tile_q, q);
    k_tiles = scattered ? tiles(k_pos, tile_k, k) : runs(kr, tile_k, k);
  }

  // Calls f(q segment, k segment) for every pair that may hold a visible pair: each query
  // segment with only the key segments meeting the keys its rows may see when the pairs are many,
  // so documents cut into zigzag chunks or scattered tiles never cost a try of every pair.
  template <typename F>
  void for_pairs(const Mask& mask, F&& f) const {
    if (all_pairs) {
      for (const Segment& a : q)
        for (const Segment& b : k) f(a, b);
      return;
    }
    const SegmentIndex index(k);
    std::vector<size_t> seen;
    std::vector<PosInterval> want;
    for (const Segment& a : q) {
      mask.spec().keys_of_rows_in(a.lo, a.hi, want);
      index.for_meeting(want, seen, [&](const Segment& b) { f(a, b); });
    }
  }

 private:
  static int64_t runs(const std::vector<Run>& rs, int64_t tile, std::vector<Segment>& out) {
    int64_t n = 0;
    out.reserve(rs.size());
    for (const Run& r : rs) {
      out.push_back({r.begin, r.end - 1, r.begin, r.end, n});
      n += (r.end - r.begin + tile - 1) / tile;
    }
    return n;
  }
  static int64_t tiles(const at::Tensor& pos, int64_t tile, std::vector<Segment>& out) {
    const int64_t* p = pos.data_ptr<int64_t>();
    const int64_t n = pos.numel();
    for (int64_t i = 0; i < n; i += tile) {
      const int64_t e = std::min(n, i + tile);
      const auto [lo, hi] = std::minmax_element(p + i, p + e);
      out.push_back({*lo, *hi, i, e, int64_t(out.size())});
    }
    return int64_t(out.size());
  }
};

// Marks the tiles of one side's run part [ca, ce) (tiles of `t` rows from the run's start
// `start`, the first being tile `first`) that hold a visible pair with the other side's
// [oa, oe): a part wholly visible or wholly masked is settled at once, a partial one split at a
// tile boundary until it is one tile.
void mark_working(const Mask& mask, bool of_keys, int64_t ca, int64_t ce, int64_t start, int64_t t, int64_t first,
                  int64_t oa, int64_t oe, std::vector<char>& marks) {
  const RowRange c{ca, ce - 1}, o{oa, oe - 1};
  const BlockClass cls = of_keys ? mask.classify(o, c) : mask.classify(c, o);
  if (cls == BlockClass::Empty) return;
  const int64_t lo = (ca - start) / t, hi = (ce - 1 - start) / t;
  if (cls == BlockClass::Full || lo == hi) {
    std::fill(marks.begin() + first + lo, marks.begin() + first + hi + 1, char(1));
    return;
  }
  const int64_t mid = start + (lo + (hi - lo + 1) / 2) * t;
  mark_working(mask, of_keys, ca, mid, start, t, first, oa, oe, marks);
  mark_working(mask, of_keys, mid, ce, start, t, first, oa, oe, marks);
}

}  // namespace

TiledWork tiled_work(const BlockView& view, const Mask& mask, int64_t tile_q, int64_t tile_k, bool local_rows,
                     int64_t slice_rows, std::optional<bool> rows_of_keys) {
  if (tile_q <= 0 || tile_k <= 0) return {block_area(view, mask), 0};
  const at::Tensor q_pos = view.q_pos.contiguous(), k_pos = view.k_pos.contiguous();
  const auto qr = runs_of(q_pos), kr = runs_of(k_pos);
  TiledWork w;
  const bool local = local_rows && qr.size() * kr.size() <= kMaxRunPairs;
  if (local && q_pos.numel() > 0 && k_pos.numel() > 0)
    w.area = local_tiled_area_of(LocalRuns(qr), LocalRuns(kr), mask, 0, q_pos.numel(), 0, k_pos.numel(), tile_q,
                                 tile_k, slice_rows);
  if (local && !rows_of_keys) return w;
  // One pass over the pairs worth trying: the per-run area (unless the local tiling gave it) and
  // the working tiles of the asked side.
  const TiledBlock block(qr, kr, q_pos, k_pos, tile_q, tile_k);
  const bool of_keys = rows_of_keys.value_or(false);
  std::vector<char> marks(rows_of_keys ? (of_keys ? block.k_tiles : block.q_tiles) : 0, 0);
  const int64_t t = of_keys ? tile_k : tile_q;
  block.for_pairs(mask, [&](const Segment& a, const Segment& b) {
    const Segment& c = of_keys ? b : a;
    const Segment& o = of_keys ? a : b;
    if (!block.scattered) {
      if (!local) w.area += tiled_area_of(mask, a.begin, a.end, b.begin, b.end, tile_q, tile_k);
      if (rows_of_keys) mark_working(mask, of_keys, c.begin, c.end, c.begin, t, c.first_tile, o.begin, o.end, marks);
    } else if (mask.classify(RowRange{a.lo, a.hi}, RowRange{b.lo, b.hi}) != BlockClass::Empty) {
      // A tile pair with a visible pair pays both tiles' rows.
      if (!local) w.area += (a.end - a.begin) * (b.end - b.begin);
      if (rows_of_keys) marks[c.first_tile] = 1;
    }
  });
  if (!rows_of_keys) return w;
  // A run's tiles are whole but its last; a scattered tile is one.
  for (const Segment& g : of_keys ? block.k : block.q) {
    const int64_t n = block.scattered ? 1 : (g.end - g.begin + t - 1) / t;
    for (int64_t i = 0; i < n; ++i)
      if (marks[g.first_tile + i])
        w.working_rows += block.scattered ? g.end - g.begin : std::min(t, g.end - g.begin - i * t);
  }
  return w;
}

int64_t tiled_area(const BlockView& view, const Mask& mask, int64_t tile_q, int64_t tile_k, bool local_rows,
                   int64_t slice_rows) {
  return tiled_work(view, mask, tile_q, tile_k, local_rows, slice_rows, std::nullopt).area;
}

int64_t working_rows(const BlockView& view, const Mask& mask, int64_t tile_q, int64_t tile_k, bool of_keys) {
  if (tile_q <= 0 || tile_k <= 0) return 0;
  return tiled_work(view, mask, tile_q, tile_k, false, 0, of_keys).working_rows;
}

AttentionOutput forward(const at::Tensor& q, const at::Tensor& /*k*/, const at::Tensor& /*v*/, const BlockView& view,
                        const Mask& mask) {
  charge(flops(paid_area(view, mask, false), q), false);
  const auto acc = accumulate_type(q);
  return {at::empty(q.sizes(), q.options().dtype(acc)), at::empty({q.size(1), q.size(0)}, q.options().dtype(acc))};
}

AttentionGrads backward(const BackwardInputs& in, const BlockView& view, const Mask& mask) {
  charge(2.5 * flops(paid_area(view, mask, true), in.q), true);
  const auto acc = accumulate_type(in.q);
  return {at::empty(in.q.sizes(), in.q.options().dtype(acc)), at::empty(in.k.sizes(), in.k.options().dtype(acc)),
          at::empty(in.v.sizes(), in.v.options().dtype(acc))};
}

void merge(const at::Tensor& out_acc, const at::Tensor& lse_acc, const at::Tensor& out_b, const at::Tensor& lse_b) {
  auto bytes = [](const at::Tensor& t) { return double(t.numel()) * double(t.element_size()); };
  virtual_clock::charge_dense(0, 2 * bytes(out_acc) + 2 * bytes(lse_acc) + bytes(out_b) + bytes(lse_b));
}

}  // namespace longhaul::simulated
