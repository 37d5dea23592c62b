// Plain parameter structs of the CPU attention kernels (no ATen): pointers into contiguous
// [T, H, D] buffers, the per-row global positions, the mask (its slices, and each query row's
// visible keys as intervals) and the tiling.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "attention/mask_spec.h"

namespace longhaul::cpu {

template <typename T>
struct AttentionParams {
  const T* q = nullptr;  // [tq, h, d]
  const T* k = nullptr;  // [tk, hkv, d]
  const T* v = nullptr;  // [tk, hkv, d]
  int64_t tq = 0, tk = 0, h = 0, hkv = 0, d = 0;
  T scale = 1;
  const int64_t* q_pos = nullptr;  // global position of each query row
  const int64_t* k_pos = nullptr;
  const MaskSpec* mask = nullptr;   // tile classification
  const RowKeys* q_keys = nullptr;  // visible keys of each query row (mask.keys_of_rows(q_pos))
  int64_t block_q = 128;  // query rows per tile
  int64_t block_k = 128;  // key rows per tile (the granularity of skipping and masking)
  // Forward: a run of consecutive full key tiles is one step of up to this many key rows (fewer,
  // larger BLAS calls); partial tiles stay block_k wide.
  int64_t run_k = 128;
  // A partial tile is worked in slices of this many query rows, each trimmed to what it sees.
  int64_t sub_q = 64;
};

template <typename T>
struct ForwardParams : AttentionParams<T> {
  T* out = nullptr;  // [tq, h, d]
  T* lse = nullptr;  // [h, tq]
};

// The backward's split of its work among a fixed number of virtual workers (independent of the
// thread count, so results are bitwise equal for any number of threads). Worker w owns the key
// tiles [tile_begin[w], tile_begin[w+1]) of every KV head: a contiguous range, cut so that the
// workers' shares of the tile pairs are about equal. It accumulates dQ for the query rows its
// tiles touch, [row_lo[w], row_hi[w]), in its own slab of a partial buffer starting at row
// slab_row[w]; the slabs are summed in worker order at the end. Contiguous key ranges keep the
// slabs short where the mask is banded (a window touches about T/workers + window rows each),
// so the partials cost far less than one full dQ per worker.
struct BackwardSplit {
  std::vector<int64_t> tile_begin;           // workers + 1 entries
  std::vector<int64_t> row_lo, row_hi, slab_row;  // one entry per worker
  int64_t slab_rows = 0;                     // rows of the partial buffer (0 with one worker)
  int64_t workers() const { return static_cast<int64_t>(row_lo.size()); }
};

struct Tiling;

template <typename T>
struct BackwardParams : AttentionParams<T> {
  const T* dout = nullptr;     // [tq, h, d]
  const T* lse = nullptr;      // [h, tq], the global one
  const T* row_sums = nullptr; // [h, tq], D_i = Σ dO·O
  T* dq = nullptr;             // [tq, h, d]
  T* dk = nullptr;             // [tk, hkv, d]
  T* dv = nullptr;             // [tk, hkv, d]
  const Tiling* tiles = nullptr;         // make_tiling of these params (the split is made from it)
  const BackwardSplit* split = nullptr;
  T* dq_partials = nullptr;  // [split->slab_rows, h, d]; unused with one worker (dq directly)
};

template <typename T>
struct MergeParams {
  T* out_acc = nullptr;        // [t, h, d]
  T* lse_acc = nullptr;        // [h, t]
  const T* out_b = nullptr;    // [t, h, d]
  const T* lse_b = nullptr;    // [h, t]
  int64_t t = 0, h = 0, d = 0;
};

// Position ranges of consecutive row tiles (tile i = rows [i·block, (i+1)·block)).
std::vector<RowRange> tile_ranges(const int64_t* pos, int64_t rows, int64_t block);

// The query and key tiles of a call and their position ranges.
struct Tiling {
  std::vector<RowRange> q, k;
  int64_t nq = 0, nk = 0;  // tile counts
  int64_t group = 1;       // query heads per KV head
};
template <typename T>
Tiling make_tiling(const AttentionParams<T>& p) {
  Tiling t{tile_ranges(p.q_pos, p.tq, p.block_q), tile_ranges(p.k_pos, p.tk, p.block_k)};
  t.nq = static_cast<int64_t>(t.q.size());
  t.nk = static_cast<int64_t>(t.k.size());
  t.group = p.h / p.hkv;
  return t;
}

// Splits the backward's key tiles among at most max_workers workers (fewer where the partial
// slabs would pass max_slab_rows rows, down to one worker, which writes dq directly).
BackwardSplit split_backward(const Tiling& tiles, const MaskSpec& mask, int64_t tq, int64_t block_q,
                             int64_t max_workers, int64_t max_slab_rows);

// The rows [first, last) of query rows [row0, row0 + nq) that may see some key of a key tile
// (positions within `keys`): leading and trailing rows the mask hides from every key of the tile
// are left out of a partial tile's work (under a causal mask, the rows of a diagonal tile above
// its first key). Rows in between are kept even if empty (mask_tile hides them).
inline std::pair<int64_t, int64_t> rows_seeing(const RowKeys& q_keys, int64_t row0, int64_t nq,
                                               const RowRange& keys) {
  auto sees = [&](int64_t r) {
    for (int64_t e = q_keys.ptr[row0 + r]; e < q_keys.ptr[row0 + r + 1]; ++e)
      if (q_keys.iv[e].lo <= keys.pos_max && q_keys.iv[e].hi >= keys.pos_min) return true;
    return false;
  };
  int64_t first = 0, last = nq;
  while (first < last && !sees(first)) ++first;
  while (last > first && !sees(last - 1)) --last;
  return {first, last};
}

// A piece of a partial tile: its rows [r0, r0 + nr) and columns [c0, c0 + nc), and whether the
// mask hides some of its entries (false: the piece is full and needs no masking).
struct TilePiece {
  int64_t r0, nr, c0, nc;
  bool partial;
};

// Cuts a partial tile — query rows [row0, row0 + nq) at positions q_pos[row0 ..], keys at
// kp[0 .. nk) within `keys` — into slices of `sub` rows, each trimmed to its rows that see a key
// of the tile and to the columns between the first and the last key any of them sees, and
// classified again on its own ranges. A document or block edge inside a 512-row tile then costs
// the few slices it crosses instead of the whole tile (less masked-out work in the GEMMs and the
// exponentials). Pieces are in row order; slices that see nothing are left out.
inline void partial_pieces(const MaskSpec& mask, const RowKeys& q_keys, const int64_t* q_pos, int64_t row0,
                           int64_t nq, const RowRange& keys, const int64_t* kp, int64_t nk, int64_t sub,
                           std::vector<TilePiece>& out) {
  out.clear();
  for (int64_t a = 0; a < nq; a += sub) {
    const int64_t b = std::min(nq, a + sub);
    const auto [first, last] = rows_seeing(q_keys, row0 + a, b - a, keys);
    if (first == last) continue;
    int64_t lo = keys.pos_max + 1, hi = keys.pos_min - 1;  // the keys the rows see, clipped to the tile
    RowRange rows{q_pos[row0 + a + first], q_pos[row0 + a + first]};
    for (int64_t r = row0 + a + first; r < row0 + a + last; ++r) {
      rows.pos_min = std::min(rows.pos_min, q_pos[r]);
      rows.pos_max = std::max(rows.pos_max, q_pos[r]);
      for (int64_t e = q_keys.ptr[r]; e < q_keys.ptr[r + 1]; ++e) {
        const PosInterval& x = q_keys.iv[e];
        if (x.lo > keys.pos_max || x.hi < keys.pos_min) continue;
        lo = std::min(lo, std::max(x.lo, keys.pos_min));
        hi = std::max(hi, std::min(x.hi, keys.pos_max));
      }
    }
    int64_t c0 = 0, c1 = nk;
    while (c0 < c1 && (kp[c0] < lo || kp[c0] > hi)) ++c0;
    while (c1 > c0 && (kp[c1 - 1] < lo || kp[c1 - 1] > hi)) --c1;
    if (c0 == c1) continue;
    RowRange cols{kp[c0], kp[c0]};
    for (int64_t c = c0 + 1; c < c1; ++c) cols.pos_min = std::min(cols.pos_min, kp[c]), cols.pos_max = std::max(cols.pos_max, kp[c]);
    const bool partial = mask.classify(rows, cols) != BlockClass::Full;
    out.push_back({a + first, last - first, c0, c1 - c0, partial});
  }
}

// The pieces of every partial tile pair of a call, cut once and shared by all heads (the forward's
// items are heads × query tiles, the backward's KV heads × key tiles with the group's query heads
// inside): pair (qt, kt)'s pieces are pieces[ptr[qt · nk + kt], ptr[qt · nk + kt + 1]).
struct PartialTiles {
  std::vector<int64_t> ptr;
  std::vector<TilePiece> pieces;
  int64_t nk = 0;
  const TilePiece* begin(int64_t qt, int64_t kt) const { return pieces.data() + ptr[qt * nk + kt]; }
  const TilePiece* end(int64_t qt, int64_t kt) const { return pieces.data() + ptr[qt * nk + kt + 1]; }
};
template <typename T>
PartialTiles cut_partial_tiles(const AttentionParams<T>& p, const Tiling& tiles) {
  PartialTiles out;
  out.nk = tiles.nk;
  out.ptr.reserve(static_cast<size_t>(tiles.nq * tiles.nk + 1));
  out.ptr.push_back(0);
  std::vector<TilePiece> one;
  for (int64_t qt = 0; qt < tiles.nq; ++qt)
    for (int64_t kt = 0; kt < tiles.nk; ++kt) {
      if (p.mask->classify(tiles.q[qt], tiles.k[kt]) == BlockClass::Partial) {
        const int64_t i0 = qt * p.block_q, j0 = kt * p.block_k;
        partial_pieces(*p.mask, *p.q_keys, p.q_pos, i0, std::min(p.block_q, p.tq - i0), tiles.k[kt], p.k_pos + j0,
                       std::min(p.block_k, p.tk - j0), p.sub_q, one);
        out.pieces.insert(out.pieces.end(), one.begin(), one.end());
      }
      out.ptr.push_back(static_cast<int64_t>(out.pieces.size()));
    }
  return out;
}

template <typename T>
void forward_kernel(const ForwardParams<T>& p);
template <typename T>
void backward_kernel(const BackwardParams<T>& p);
template <typename T>
void merge_kernel(const MergeParams<T>& p);

}  // namespace longhaul::cpu
