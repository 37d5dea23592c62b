#include "attention/cuda/block_plan.h"

#include <algorithm>
#include <iterator>
#include <tuple>

namespace longhaul::cuda {
namespace {

// Stands for "unbounded" in offset arithmetic; far from overflow for any real position.
constexpr int64_t kInf = int64_t(1) << 60;

struct Run {
  int64_t row, len, pos;
};

std::vector<Run> split_runs(const int64_t* pos, int64_t t) {
  std::vector<Run> runs;
  for (int64_t i = 0; i < t; ++i) {
    if (!runs.empty()) {
      Run& r = runs.back();
      if (pos[i] == r.pos + r.len) {
        ++r.len;
        continue;
      }
    }
    runs.push_back({i, 1, pos[i]});
  }
  return runs;
}

// The part of a run whose positions lie in [begin, end); len 0 when none.
Run clip(const Run& r, int64_t begin, int64_t end) {
  const int64_t a = std::max(r.pos, begin), b = std::min(r.pos + r.len, end);
  return b > a ? Run{r.row + (a - r.pos), b - a, a} : Run{r.row, 0, r.pos};
}

// Appends the piece of rows [a_lo, a_hi] of a (q run, k run) pair, trimmed to the rows and keys
// that see something. Row a of the q run sees key b of the k run iff c_lo + a <= b <= a + c_hi
// (and 0 <= b < n).
void rows_piece(const Run& q, const Run& k, int64_t c_lo, int64_t c_hi, int64_t a_lo, int64_t a_hi, int64_t q_run,
                std::vector<Piece>& out) {
  const int64_t n = k.len;
  // Rows that see at least one key form one interval (both bounds rise with slope 1).
  const int64_t a0 = std::max(a_lo, -c_hi), a1 = std::min(a_hi, n - 1 - c_lo);
  if (a0 > a1) return;
  const int64_t k0 = std::max<int64_t>(0, a0 + c_lo), k1 = std::min(n - 1, a1 + c_hi);
  const int64_t mm = a1 - a0 + 1, nn = k1 - k0 + 1;
  // Offsets relative to the trimmed piece, then flash's bottom-right window sizes.
  const int64_t hi = c_hi + a0 - k0, lo = c_lo + a0 - k0;
  int64_t right = c_hi >= kInf / 2 ? -1 : hi - (nn - mm);
  int64_t left = c_lo <= -kInf / 2 ? -1 : (nn - mm) - lo;
  // The bound never cuts a key; a one-row square piece (a document of length 1) stays causal so
  // it joins its neighbours' group instead of costing a launch of its own.
  if (right >= mm - 1 && !(right == 0 && mm == nn)) right = -1;
  if (left >= nn - 1) left = -1;
  const bool local = left != -1;  // causal pieces (left unbounded, right 0) are exact as they are
  if (local && mm > nn) {
    // FlashAttention-2 replaces an unbounded side of a window by seqlen_k (and clamps a side
    // >= seqlen_k to unbounded): with more rows than keys that cuts keys the top rows see.
    // Split into row blocks with no more rows than keys, where those replacements are exact.
    for (int64_t r0 = a0; r0 <= a1;) {
      int64_t r1 = r0;
      auto keys = [&](int64_t e) { return std::min(n - 1, e + c_hi) - std::max<int64_t>(0, r0 + c_lo) + 1; };
      while (r1 + 1 <= a1 && r1 + 2 - r0 <= keys(r1 + 1)) ++r1;
      rows_piece(q, k, c_lo, c_hi, r0, r1, q_run, out);
      r0 = r1 + 1;
    }
    return;
  }
  const Piece base{q.row + a0, mm, k.row + k0, nn, left, right, q_run};
  if (left == -1 && right > 0) {
    // Causal-like: rows [0, s) are a bottom-right diagonal over keys [0, nn − 1), rows [s, mm)
    // see every key.
    const int64_t s = mm - 1 - right;
    out.push_back({base.q_row, s, base.k_row, nn - 1, -1, 0, q_run});
    out.push_back({base.q_row + s, mm - s, base.k_row, nn, -1, -1, q_run});
    return;
  }
  out.push_back(base);
}

// Appends the pieces of one (q run, k run) pair inside one slice (both runs already clipped to
// the slice's ranges).
void pair_pieces(const MaskSlice& s, const Run& q, const Run& k, int64_t q_run, std::vector<Piece>& out) {
  const int64_t delta = q.pos - k.pos;
  const int64_t c_hi = s.hi >= kUnbounded ? kInf : s.hi + delta;
  const int64_t c_lo = s.lo <= -kUnbounded ? -kInf : s.lo + delta;
  rows_piece(q, k, c_lo, c_hi, 0, q.len - 1, q_run, out);
}

// Joins full pieces (no window) that make one rectangle: the same keys over adjacent q rows, or
// the same q rows over adjacent keys. The two halves of a zigzag shard meet a remote shard as
// two such pieces; joined, a ring step is one kernel call and one merge layer, not two.
void join_full_pieces(std::vector<Piece>& list) {
  auto join = [&list](auto key, auto adjacent, auto extend) {
    std::sort(list.begin(), list.end(), [&](const Piece& a, const Piece& b) { return key(a) < key(b); });
    std::vector<Piece> joined;
    for (const Piece& p : list) {
      if (!joined.empty() && adjacent(joined.back(), p)) extend(joined.back(), p);
      else joined.push_back(p);
    }
    list.swap(joined);
  };
  // Same keys, q rows one after the other.
  join([](const Piece& p) { return std::make_tuple(p.k_row, p.n, p.q_row); },
       [](const Piece& a, const Piece& b) { return a.k_row == b.k_row && a.n == b.n && a.q_row + a.m == b.q_row; },
       [](Piece& a, const Piece& b) { a.m += b.m; });
  // Same q rows, keys one after the other.
  join([](const Piece& p) { return std::make_tuple(p.q_row, p.m, p.k_row); },
       [](const Piece& a, const Piece& b) { return a.q_row == b.q_row && a.m == b.m && a.k_row + a.n == b.k_row; },
       [](Piece& a, const Piece& b) { a.n += b.n; });
}

// A group of more pieces than one varlen call takes, as consecutive groups of at most
// kMaxPiecesPerCall pieces (each keeps the layers it cuts, renumbered).
void split_into_calls(PieceGroup g, std::vector<PieceGroup>& out) {
  const size_t n = g.pieces.size(), most = static_cast<size_t>(kMaxPiecesPerCall);
  if (n <= most) {
    out.push_back(std::move(g));
    return;
  }
  for (size_t b = 0; b < n; b += most) {
    const size_t e = std::min(n, b + most);
    PieceGroup c{g.left, g.right, {g.pieces.begin() + b, g.pieces.begin() + e}, {0}};
    for (size_t l : g.layer_begin)
      if (l > b && l < e) c.layer_begin.push_back(l - b);
    c.layer_begin.push_back(e - b);
    out.push_back(std::move(c));
  }
}

}  // namespace

int64_t BlockPlan::num_pieces() const {
  int64_t n = 0;
  for (const auto& g : groups) n += static_cast<int64_t>(g.pieces.size());
  return n;
}

BlockPlan plan_block(const MaskSpec& spec, const int64_t* q_pos, int64_t tq, const int64_t* k_pos, int64_t tk) {
  BlockPlan plan;
  const std::vector<Run> qr = split_runs(q_pos, tq), kr = split_runs(k_pos, tk);
  // Runs shorter than 8 rows on average (striped shards) make varlen calls pointless.
  const auto runs = static_cast<int64_t>(qr.size() + kr.size());
  if (runs > 16 && runs * 8 > tq + tk) {
    plan.fragmented = true;
    return plan;
  }
  // k runs in position order, to find those meeting a slice's key range by binary search.
  std::vector<size_t> k_order(kr.size());
  for (size_t j = 0; j < kr.size(); ++j) k_order[j] = j;
  std::sort(k_order.begin(), k_order.end(), [&](size_t a, size_t b) { return kr[a].pos < kr[b].pos; });

  std::vector<Piece> pieces;
  int64_t pairs = 0;
  // Beyond this the block is not run-structured (pieces of a few rows on average). A shard of many
  // short documents has one pair per document, so the bound grows with the rows.
  const int64_t max_pairs = 8 * runs + 256 + (tq + tk) / 8;
  std::vector<size_t> slices;
  for (size_t i = 0; i < qr.size(); ++i) {
    spec.slices_meeting_rows(qr[i].pos, qr[i].pos + qr[i].len - 1, slices);
    for (size_t si : slices) {
      const MaskSlice& s = spec.slices()[si];
      const Run q = clip(qr[i], s.q_begin, s.q_end);
      if (q.len == 0) continue;
      // k runs are disjoint in positions: those meeting [k_begin, k_end) are consecutive here.
      auto first = std::partition_point(k_order.begin(), k_order.end(),
                                        [&](size_t j) { return kr[j].pos + kr[j].len <= s.k_begin; });
      for (auto it = first; it != k_order.end() && kr[*it].pos < s.k_end; ++it) {
        const Run k = clip(kr[*it], s.k_begin, s.k_end);
        if (k.len == 0) continue;
        if (++pairs > max_pairs) {
          plan.fragmented = true;
          return plan;
        }
        pair_pieces(s, q, k, static_cast<int64_t>(i), pieces);
      }
    }
  }

  std::map<std::pair<int64_t, int64_t>, std::vector<Piece>> by_window;
  for (const Piece& p : pieces) by_window[{p.left, p.right}].push_back(p);
  for (auto& [window, list] : by_window) {
    if (window.first == -1 && window.second == -1) join_full_pieces(list);
    // Layer of a piece = the first layer none of whose pieces shares a q row with it (documents
    // of one shard land in one layer, the two parts of a split causal piece in two).
    std::vector<std::map<int64_t, int64_t>> layers;  // per layer: q_row -> end of its pieces
    std::vector<std::pair<int64_t, size_t>> order;
    for (size_t i = 0; i < list.size(); ++i) {
      const int64_t b = list[i].q_row, e = b + list[i].m;
      size_t l = 0;
      for (; l < layers.size(); ++l) {
        auto it = layers[l].lower_bound(b);  // first piece starting at or after b
        const bool hits_next = it != layers[l].end() && it->first < e;
        const bool hits_prev = it != layers[l].begin() && std::prev(it)->second > b;
        if (!hits_next && !hits_prev) break;
      }
      if (l == layers.size()) layers.emplace_back();
      layers[l][b] = e;
      order.push_back({static_cast<int64_t>(l), i});
    }
    std::stable_sort(order.begin(), order.end(),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    PieceGroup g{window.first, window.second, {}, {}};
    for (size_t i = 0; i < order.size(); ++i) {
      if (i == 0 || order[i].first != order[i - 1].first) g.layer_begin.push_back(i);
      g.pieces.push_back(list[order[i].second]);
    }
    g.layer_begin.push_back(g.pieces.size());
    split_into_calls(std::move(g), plan.groups);
  }
  return plan;
}

}  // namespace longhaul::cuda
