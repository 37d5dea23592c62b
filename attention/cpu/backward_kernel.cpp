// Backward: work items are (KV head, key tile); an item owns its dK/dV rows outright and loops
// over the query heads of its group and the non-empty query tiles:
//   P = exp(S − lse), dV += Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP − D), dQ += scale·dS K, dK += scale·dSᵀ Q.
// dQ rows are shared between items, so each of a fixed number of virtual workers accumulates its
// own dQ partial (items are dealt round-robin, which balances causal masks) and the partials are
// summed in worker order at the end: bitwise the same for any thread count, and it scales with a
// single head because key tiles, not heads, carry the parallelism.
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
  const Tiling tiles = make_tiling(p);
  const auto& q_tiles = tiles.q;
  const auto& k_tiles = tiles.k;
  const int64_t nqt = tiles.nq, nkt = tiles.nk, group = tiles.group;
  const int64_t items = p.hkv * nkt, workers = p.workers;
  const int64_t dq_size = p.tq * p.h * d;

  at::parallel_for(0, workers, 1, [&](int64_t wbegin, int64_t wend) {
    SingleThreadedBlas blas_on_this_thread;
    std::vector<T> s(bq * bk), dp(bq * bk), dk(bk * d), dv(bk * d);
    for (int64_t w = wbegin; w < wend; ++w) {
      T* dq = workers == 1 ? p.dq : p.dq_partials + w * dq_size;
      std::fill(dq, dq + dq_size, T(0));
      for (int64_t item = w; item < items; item += workers) {
        const int64_t hk = item / nkt, kt = item % nkt;
        const int64_t j0 = kt * bk, nk = std::min(bk, p.tk - j0);
        const T* k = p.k + (j0 * p.hkv + hk) * d;
        const T* v = p.v + (j0 * p.hkv + hk) * d;
        std::fill(dk.begin(), dk.begin() + nk * d, T(0));
        std::fill(dv.begin(), dv.begin() + nk * d, T(0));
        for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
          for (int64_t qt = 0; qt < nqt; ++qt) {
            const BlockClass cls = p.mask.classify(q_tiles[qt], k_tiles[kt]);
            if (cls == BlockClass::Empty) continue;
            int64_t i0 = qt * bq, nq = std::min(bq, p.tq - i0);
            if (cls == BlockClass::Partial) {  // only the tile's rows that see some key
              const auto [first, last] = rows_seeing(p.mask, p.q_pos + i0, p.q_doc + i0, nq, k_tiles[kt]);
              if (first == last) continue;
              i0 += first, nq = last - first;
            }
            const T* q = p.q + (i0 * p.h + h) * d;
            const T* dout = p.dout + (i0 * p.h + h) * d;
            gemm_rm<T>(false, true, nq, nk, d, p.scale, q, p.h * d, k, p.hkv * d, T(0), s.data(), nk);
            if (cls == BlockClass::Partial)
              mask_tile(s.data(), nq, nk, p.q_pos + i0, p.q_doc + i0, p.k_pos + j0, p.k_doc + j0, p.mask);
            exp_minus_rows(s.data(), nq, nk, p.lse + h * p.tq + i0, int64_t(1));
            gemm_rm<T>(true, false, nk, d, nq, T(1), s.data(), nk, dout, p.h * d, T(1), dv.data(), d);
            gemm_rm<T>(false, true, nq, nk, d, T(1), dout, p.h * d, v, p.hkv * d, T(0), dp.data(), nk);
            for (int64_t r = 0; r < nq; ++r) {
              const T di = p.row_sums[h * p.tq + i0 + r];
              T* prow = s.data() + r * nk;
              T* dprow = dp.data() + r * nk;
              for (int64_t c = 0; c < nk; ++c) dprow[c] = prow[c] * (dprow[c] - di);
            }
            gemm_rm<T>(false, false, nq, d, nk, p.scale, dp.data(), nk, k, p.hkv * d, T(1), dq + (i0 * p.h + h) * d,
                       p.h * d);
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

  if (workers > 1) {  // dQ = Σ_w partial_w, always in worker order
    at::parallel_for(0, dq_size, 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        T acc = p.dq_partials[i];
        for (int64_t w = 1; w < workers; ++w) acc += p.dq_partials[w * dq_size + i];
        p.dq[i] = acc;
      }
    });
  }
}

template void backward_kernel<float>(const BackwardParams<float>&);
template void backward_kernel<double>(const BackwardParams<double>&);

}  // namespace longhaul::cpu
