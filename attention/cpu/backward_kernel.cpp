// Backward: work items are (KV head, key tile); an item owns its dK/dV rows outright and loops
// over the query heads of its group and the non-empty query tiles:
//   P = exp(S − lse), dV += Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP − D), dQ += scale·dS K, dK += scale·dSᵀ Q.
// dQ rows are shared between items, so each of a fixed number of virtual workers (a contiguous
// range of key tiles with an equal share of the work, params.h BackwardSplit) accumulates its own
// dQ partial over the query rows it touches, and the partials are summed in worker order at the
// end: bitwise the same for any thread count, and it scales with a single head because key
// tiles, not heads, carry the parallelism.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "attention/cpu/gemm.h"
#include "attention/cpu/params.h"
#include "attention/cpu/tile_ops.h"

namespace longhaul::cpu {

template <typename T>
void backward_kernel(const BackwardParams<T>& p) {
  const int64_t bq = p.block_q, bk = p.block_k, d = p.d;
  const Tiling& tiles = *p.tiles;
  const auto& q_tiles = tiles.q;
  const auto& k_tiles = tiles.k;
  const int64_t nqt = tiles.nq, group = tiles.group;
  const BackwardSplit& split = *p.split;
  const int64_t workers = split.workers(), row_elems = p.h * d;
  const PartialTiles partial = cut_partial_tiles(p, tiles);

  at::parallel_for(0, workers, 1, [&](int64_t wbegin, int64_t wend) {
    SingleThreadedBlas blas_on_this_thread;
    std::vector<T> s(bq * bk), dp(bq * bk), dk(bk * d), dv(bk * d);
    for (int64_t w = wbegin; w < wend; ++w) {
      // This worker's dQ rows [lo, hi): dq[(i - lo) · h · d + ...] holds row i.
      const int64_t lo = split.row_lo[w], hi = split.row_hi[w];
      T* dq = workers == 1 ? p.dq : p.dq_partials + split.slab_row[w] * row_elems;
      std::fill(dq, dq + (hi - lo) * row_elems, T(0));
      for (int64_t item = split.tile_begin[w] * p.hkv; item < split.tile_begin[w + 1] * p.hkv; ++item) {
        const int64_t kt = item / p.hkv, hk = item % p.hkv;
        const int64_t j0 = kt * bk, nk = std::min(bk, p.tk - j0);
        const T* k = p.k + (j0 * p.hkv + hk) * d;
        const T* v = p.v + (j0 * p.hkv + hk) * d;
        std::fill(dk.begin(), dk.begin() + nk * d, T(0));
        std::fill(dv.begin(), dv.begin() + nk * d, T(0));
        for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
          for (int64_t qt = 0; qt < nqt; ++qt) {
            const BlockClass cls = p.mask->classify(q_tiles[qt], k_tiles[kt]);
            if (cls == BlockClass::Empty) continue;
            const int64_t t0 = qt * bq, tn = std::min(bq, p.tq - t0);
            // One piece of the tile pair: query rows i0 .. i0 + nq against key columns c0 .. c0 + nc.
            auto step = [&](int64_t i0, int64_t nq, int64_t c0, int64_t nc, bool masked) {
              const T* q = p.q + (i0 * p.h + h) * d;
              const T* dout = p.dout + (i0 * p.h + h) * d;
              const T* kc = k + c0 * p.hkv * d;
              const T* vc = v + c0 * p.hkv * d;
              gemm_rm<T>(false, true, nq, nc, d, p.scale, q, p.h * d, kc, p.hkv * d, T(0), s.data(), nc);
              if (masked) mask_tile(s.data(), nq, nc, *p.q_keys, i0, p.k_pos + j0 + c0);
              exp_minus_rows(s.data(), nq, nc, p.lse + h * p.tq + i0, int64_t(1));
              gemm_rm<T>(true, false, nc, d, nq, T(1), s.data(), nc, dout, p.h * d, T(1), dv.data() + c0 * d, d);
              gemm_rm<T>(false, true, nq, nc, d, T(1), dout, p.h * d, vc, p.hkv * d, T(0), dp.data(), nc);
              for (int64_t r = 0; r < nq; ++r) {
                const T di = p.row_sums[h * p.tq + i0 + r];
                T* prow = s.data() + r * nc;
                T* dprow = dp.data() + r * nc;
                for (int64_t c = 0; c < nc; ++c) dprow[c] = prow[c] * (dprow[c] - di);
              }
              gemm_rm<T>(false, false, nq, d, nc, p.scale, dp.data(), nc, kc, p.hkv * d, T(1),
                         dq + (i0 - lo) * row_elems + h * d, row_elems);
              gemm_rm<T>(true, false, nc, d, nq, p.scale, dp.data(), nc, q, p.h * d, T(1), dk.data() + c0 * d, d);
            };
            if (cls == BlockClass::Full) {
              step(t0, tn, 0, nk, false);
              continue;
            }
            for (const TilePiece* x = partial.begin(qt, kt); x != partial.end(qt, kt); ++x)
              step(t0 + x->r0, x->nr, x->c0, x->nc, x->partial);
          }
        }
        for (int64_t c = 0; c < nk; ++c) {
          std::copy(dk.data() + c * d, dk.data() + (c + 1) * d, p.dk + ((j0 + c) * p.hkv + hk) * d);
          std::copy(dv.data() + c * d, dv.data() + (c + 1) * d, p.dv + ((j0 + c) * p.hkv + hk) * d);
        }
      }
    }
  });

  if (workers > 1) {  // dQ row i = Σ of the slabs holding row i, always in worker order (none: 0)
    at::parallel_for(0, p.tq, 64, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        T* out = p.dq + i * row_elems;
        bool first = true;
        for (int64_t w = 0; w < workers; ++w) {
          if (i < split.row_lo[w] || i >= split.row_hi[w]) continue;
          const T* src = p.dq_partials + (split.slab_row[w] + i - split.row_lo[w]) * row_elems;
          if (first) std::copy(src, src + row_elems, out);
          else
            for (int64_t c = 0; c < row_elems; ++c) out[c] += src[c];
          first = false;
        }
        if (first) std::fill(out, out + row_elems, T(0));
      }
    });
  }
}

template void backward_kernel<float>(const BackwardParams<float>&);
template void backward_kernel<double>(const BackwardParams<double>&);

}  // namespace longhaul::cpu
