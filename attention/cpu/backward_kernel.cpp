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
            int64_t i0 = qt * bq, nq = std::min(bq, p.tq - i0);
            if (cls == BlockClass::Partial) {  // only the tile's rows that see some key
              const auto [first, last] = rows_seeing(*p.q_keys, i0, nq, k_tiles[kt]);
              if (first == last) continue;
              i0 += first, nq = last - first;
            }
            const T* q = p.q + (i0 * p.h + h) * d;
            const T* dout = p.dout + (i0 * p.h + h) * d;
            gemm_rm<T>(false, true, nq, nk, d, p.scale, q, p.h * d, k, p.hkv * d, T(0), s.data(), nk);
            if (cls == BlockClass::Partial)
              mask_tile(s.data(), nq, nk, *p.q_keys, i0, p.k_pos + j0);
            exp_minus_rows(s.data(), nq, nk, p.lse + h * p.tq + i0, int64_t(1));
            gemm_rm<T>(true, false, nk, d, nq, T(1), s.data(), nk, dout, p.h * d, T(1), dv.data(), d);
            gemm_rm<T>(false, true, nq, nk, d, T(1), dout, p.h * d, v, p.hkv * d, T(0), dp.data(), nk);
            for (int64_t r = 0; r < nq; ++r) {
              const T di = p.row_sums[h * p.tq + i0 + r];
              T* prow = s.data() + r * nk;
              T* dprow = dp.data() + r * nk;
              for (int64_t c = 0; c < nk; ++c) dprow[c] = prow[c] * (dprow[c] - di);
            }
            gemm_rm<T>(false, false, nq, d, nk, p.scale, dp.data(), nk, k, p.hkv * d, T(1),
                       dq + (i0 - lo) * row_elems + h * d, row_elems);
            gemm_rm<T>(true, false, nk, d, nq, p.scale, dp.data(), nk, q, p.h * d, T(1), dk.data(), d);
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
